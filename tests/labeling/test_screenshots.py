"""The README's screenshots, taken in a real browser from a campaign with labels and a learner.

`make screenshots` runs this module with CARVE_SCREENSHOTS=docs/img and so refreshes the
images the README shows (with the real all-MiniLM-L6-v2 embeddings); `make test` runs it into
a temporary folder, with the fake embedder, which checks that every page renders in Chromium
with its main parts present.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from labeling import annotation, campaign_learner, demo, model_versions
from labeling.embeddings import jobs as embedding_jobs
from labeling.imports.write import import_file
from labeling.models import Assignment, Campaign, EmbeddingJob, Item
from tests.labeling.test_browser import CHROMIUM, CHROMIUM_ARGS, db

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CSV = REPO_ROOT / "labeling" / "data" / "demo_reviews.csv"
N_LABELED = 40


def _labeled_campaign(campaign: Campaign, annotator: Any) -> None:
    """The demo reviews, embedded, and the first items labeled with their gold label."""
    Campaign.objects.filter(pk=campaign.pk).update(
        name="Customer reviews", gold_rate=0.0, evaluation_size=20, retrain_every=0
    )
    campaign.refresh_from_db()
    import_file(campaign, campaign.created_by, DEMO_CSV.read_bytes(), "demo_reviews.csv")
    demo._keep_some_gold(campaign)  # as `make demo` does: suggestions show off the gold set
    with DEMO_CSV.open(newline="", encoding="utf-8") as f:
        truth = {row["text"]: row["label"] for row in csv.DictReader(f)}
    embedding_jobs.run_embedding_job(EmbeddingJob.objects.get(campaign=campaign).pk)
    campaign_learner.update_learner(campaign.pk)
    for n in range(1, N_LABELED + 1):
        served = annotation.next_assignment(campaign, annotator)
        assert served is not None, "the demo file ran out of items"
        item = Item.objects.get(pk=served.item_id)
        value = truth[item.text]
        annotation.submit_label(item, annotator, value)
        if n % 10 == 0:  # a learning-curve point every 10 labels
            campaign_learner.update_learner(campaign.pk)
            campaign_learner.measure_learner(campaign.pk)
    campaign_learner.update_learner(campaign.pk)
    campaign_learner.measure_learner(campaign.pk)
    version = model_versions.request_retrain(campaign)  # the items page shows its predictions
    assert model_versions.retrain(version.pk) == "done"
    Assignment.objects.filter(annotator=annotator).delete()  # the card serves a fresh item


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("CARVE_SCREENSHOTS")
    return Path(target) if target else tmp_path


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page_as(browser: Any, live_server: Any, user: Any, width: int = 1200) -> Any:
    def session() -> str:
        client = Client()
        client.force_login(user)
        return str(client.cookies[django_settings.SESSION_COOKIE_NAME].value)

    context = browser.new_context(viewport={"width": width, "height": 800})
    context.add_cookies(
        [
            {
                "name": django_settings.SESSION_COOKIE_NAME,
                "value": db(session),
                "url": live_server.url,
            }
        ]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def test_the_readme_screenshots(
    campaign: Campaign,
    manager: Any,
    annotator: Any,
    live_server: Any,
    browser: Any,
    shots: Path,
    settings: Any,
) -> None:
    if os.environ.get("CARVE_SCREENSHOTS"):  # the README's images: real MiniLM embeddings
        settings.CARVE_EMBEDDER = "sentence-transformers"
    db(lambda: _labeled_campaign(campaign, annotator))
    shots.mkdir(parents=True, exist_ok=True)
    base = f"{live_server.url}/campaigns/{campaign.pk}"
    taken = []

    page = _page_as(browser, live_server, annotator, width=900)
    page.goto(f"{base}/label/")
    page.locator("#item-text").wait_for()
    assert page.locator("#item-text").get_attribute("data-item"), "no item served"
    page.screenshot(path=str(shots / "labeling.png"))
    taken.append("labeling.png")

    page = _page_as(browser, live_server, manager)
    page.goto(f"{base}/items/")
    page.get_by_text("Customer reviews").first.wait_for()
    page.screenshot(path=str(shots / "items.png"))
    taken.append("items.png")

    page.goto(f"{base}/dashboard/")
    page.locator("svg").first.wait_for()
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    taken.append("dashboard.png")

    page.goto(f"{live_server.url}/campaigns/new/")
    page.locator("form input[name=name]").wait_for()
    page.screenshot(path=str(shots / "campaign-form.png"), full_page=True)
    taken.append("campaign-form.png")

    for name in taken:
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
