"""The campaign page in a real browser (Debian's chromium driven by Playwright, headless)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from labeling.models import Campaign, EmbeddingJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page(live_server: Any, annotator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # in between are still synchronous (Django's documented switch for this case).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed; `make test` installs it (apt-get)")
    from playwright.sync_api import sync_playwright

    client = Client()
    client.force_login(annotator)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies(
            [
                {
                    "name": django_settings.SESSION_COOKIE_NAME,
                    "value": session,
                    "url": live_server.url,
                }
            ]
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def test_the_progress_bar_follows_the_job_without_reloading_the_page(
    page: Any, live_server: Any, campaign: Campaign
) -> None:
    job = EmbeddingJob.objects.create(
        campaign=campaign,
        model_name="fake-32",
        status="running",
        n_total=200,
        n_done=20,
        heartbeat_at=None,
    )
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    bar = page.locator("#embedding-status progress")
    assert bar.get_attribute("value") == "10"
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    EmbeddingJob.objects.filter(pk=job.pk).update(n_done=150)
    page.wait_for_function("document.querySelector('#embedding-status progress').value === 75")
    EmbeddingJob.objects.filter(pk=job.pk).update(status="done", n_done=200, dim=32)
    page.locator("[data-status='done']").wait_for()

    assert page.evaluate("window.__sameDocument") is True
    assert "200 / 200 items" in page.locator("#embedding-status").inner_text()
    # Done: the part no longer asks to be reloaded, so polling has stopped.
    assert page.locator("#embedding-status").get_attribute("hx-trigger") is None
