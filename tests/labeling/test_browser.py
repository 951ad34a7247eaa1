"""The campaign page in a real browser (Debian's chromium driven by Playwright, headless)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from labeling.imports.write import import_file
from labeling.models import Campaign, EmbeddingJob, Label

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def db(fn: Callable[[], T]) -> T:
    """Run ORM code in a thread of its own and close its connection.

    Playwright's sync API keeps an event loop running in the test's thread, where Django
    refuses ORM calls; a connection opened there anyway would outlive the test (PostgreSQL
    then refuses to drop the test database).
    """
    result: list[T] = []

    def run() -> None:
        try:
            result.append(fn())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert result, "the database call failed (see the traceback above)"
    return result[0]


def until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Wait until ``expression`` is true in the page. (Playwright's wait_for_function
    evaluates a string with eval, which the pages' Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for: {expression}")
        time.sleep(0.05)


@contextmanager
def signed_in_page(live_server: Any, user: Any, *, check_csp: bool = True) -> Iterator[Any]:
    """A Chromium page signed in as ``user``; with ``check_csp``, nothing on our pages may be
    refused by the Content-Security-Policy."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed; `make test` installs it (apt-get)")
    from playwright.sync_api import sync_playwright

    client = Client()
    client.force_login(user)
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
        blocked: list[str] = []  # what the Content-Security-Policy refused on our pages
        page.on(
            "console",
            lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
        )
        yield page
        browser.close()
        if check_csp:
            assert not blocked, blocked


@pytest.fixture
def page(live_server: Any, annotator: Any) -> Iterator[Any]:
    with signed_in_page(live_server, annotator) as page:
        yield page


def test_the_progress_bar_follows_the_job_without_reloading_the_page(
    campaign: Campaign, live_server: Any, page: Any
) -> None:
    # `campaign` comes first: its rows are made before the browser's event loop starts.
    job = db(
        lambda: EmbeddingJob.objects.create(
            campaign=campaign, model_name="fake-32", status="running", n_total=200, n_done=20
        )
    )
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    bar = page.locator("#embedding-status progress")
    assert bar.get_attribute("value") == "10"
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    db(lambda: EmbeddingJob.objects.filter(pk=job.pk).update(n_done=150))
    until(page, "document.querySelector('#embedding-status progress').value === 75")
    db(lambda: EmbeddingJob.objects.filter(pk=job.pk).update(status="done", n_done=200, dim=32))
    page.locator("[data-status='done']").wait_for()

    assert page.evaluate("window.__sameDocument") is True
    assert "200 / 200 items" in page.locator("#embedding-status").inner_text()
    # Done: the part no longer asks to be reloaded, so polling has stopped.
    assert page.locator("#embedding-status").get_attribute("hx-trigger") is None


def test_an_annotator_labels_with_the_keyboard_without_page_reloads(
    campaign: Campaign, live_server: Any, page: Any
) -> None:
    def setup() -> None:
        Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0)
        texts = [
            "The plot was thin but the acting carried it; I left smiling.",
            "Cold food, slow service, and a bill that made it worse.",
            "A charming little hotel with a view worth the stairs.",
        ]
        body = "text\n" + "".join(f'"{t}"\n' for t in texts)
        import_file(campaign, campaign.created_by, body.encode(), "reviews.csv")

    db(setup)
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/label/")
    page.locator("#item-text").wait_for()
    page.evaluate("window.__sameDocument = true")
    first = page.locator("#item-text").get_attribute("data-item")

    page.keyboard.press("2")  # positive
    until(page, f"document.querySelector('#item-text').dataset.item !== '{first}'")
    second = page.locator("#item-text").get_attribute("data-item")
    page.keyboard.press("1")  # negative
    until(page, f"document.querySelector('#item-text').dataset.item !== '{second}'")
    page.locator("#n-mine").filter(has_text="2 labeled by you").wait_for()
    page.keyboard.press("u")  # undo: the second item comes back
    until(page, f"document.querySelector('#item-text').dataset.item === '{second}'")

    assert page.evaluate("window.__sameDocument") is True
    labels = db(
        lambda: list(Label.objects.order_by("pk").values_list("item_id", "value", "undone_at"))
    )
    assert [(str(i), v) for i, v, _ in labels] == [(first, "positive"), (second, "negative")]
    assert labels[0][2] is None and labels[1][2] is not None


@pytest.mark.parametrize("javascript", [True, False])
def test_enter_in_the_comment_field_never_records_a_label(
    campaign: Campaign, live_server: Any, page: Any, javascript: bool
) -> None:
    def setup() -> None:
        Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0)
        body = 'text\n"A clearly positive review: wonderful, moving, funny."\n"Another one."\n'
        import_file(campaign, campaign.created_by, body.encode(), "reviews.csv")

    db(setup)
    if not javascript:  # no htmx either: the plain HTML form must behave the same
        page.route("**/*.js", lambda route: route.abort())
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/label/")
    first = page.locator("#item-text").get_attribute("data-item")
    assert not page.locator("button.no-implicit-submit").is_visible()  # [hidden] beats CSS
    comment = page.locator("input[name=comment]")
    comment.fill("great acting")
    comment.press("Enter")
    page.wait_for_timeout(500)  # a submission would have posted by now

    assert db(lambda: Label.objects.count()) == 0
    assert page.locator("#item-text").get_attribute("data-item") == first
    assert comment.input_value() == "great acting"  # nothing was reset or lost
    page.get_by_role("button", name="positive").click()
    until(page, f"document.querySelector('#item-text').dataset.item !== '{first}'")
    labels = db(lambda: list(Label.objects.values_list("item_id", "value", "comment")))
    assert [(str(i), v, c) for i, v, c in labels] == [(first, "positive", "great acting")]
