"""The model's suggestion on the labeling card, in a real browser (docs/platform.md,
"Suggestions"; Debian's chromium driven by Playwright, as tests/labeling/test_browser.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from labeling.imports.write import import_file
from labeling.models import Assignment, Campaign, Item, LearnerSnapshot
from tests.labeling.test_browser import db, page  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def _setup(campaign: Campaign, annotator: Any) -> dict[str, int]:
    """A plain and a gold item, each with a stored suggestion; the plain one leased first."""
    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0)
    body = "text,label\nA film I would happily watch again.,\nA gold review.,positive\n"
    import_file(campaign, campaign.created_by, body.encode(), "d.csv")
    items = {i.text: i.pk for i in Item.objects.filter(campaign=campaign)}
    plain, gold = items["A film I would happily watch again."], items["A gold review."]
    LearnerSnapshot.objects.create(
        campaign=campaign,
        state=b"",
        suggestions={str(plain): [1, 0.87, "informative"], str(gold): [0, 0.52, "unsure"]},
    )
    soon = timezone.now() + timedelta(minutes=10)
    Assignment.objects.create(item_id=plain, annotator=annotator, expires_at=soon)
    return {"plain": plain, "gold": gold}


def _lease(annotator: Any, item: int) -> None:
    Assignment.objects.filter(annotator=annotator).delete()
    soon = timezone.now() + timedelta(minutes=10)
    Assignment.objects.create(item_id=item, annotator=annotator, expires_at=soon)


def test_the_card_shows_the_suggestion_where_the_campaign_allows_it(
    campaign: Campaign,
    annotator: Any,
    live_server: Any,
    page: Any,  # noqa: F811
) -> None:
    # `campaign` comes first: its rows are made before the browser's event loop starts.
    ids = db(lambda: _setup(campaign, annotator))
    url = f"{live_server.url}/campaigns/{campaign.pk}/label/"
    page.goto(url)
    card = page.locator("#suggestion")
    card.wait_for()
    assert page.locator("#item-text").get_attribute("data-item") == str(ids["plain"])
    text = " ".join(card.inner_text().split())
    assert "Model suggests: positive · 87%" in text
    assert "the model wants to check its guess" in text.lower()
    assert card.get_attribute("role") == "note"
    # Set apart by a frame and a text tag, not by colour alone.
    assert page.evaluate(
        "getComputedStyle(document.querySelector('#suggestion')).borderStyle"
    ).startswith("dashed")
    # No answer is pre-selected: every label button looks the same.
    styles = page.evaluate(
        "[...document.querySelectorAll('.buttons button, .label-form button[name=value]')]"
        ".filter(b => !b.hidden).map(b => getComputedStyle(b).backgroundColor)"
    )
    assert len(styles) >= 2 and len(set(styles)) == 1

    # auto (the default): hidden on a gold item.
    db(lambda: _lease(annotator, ids["gold"]))
    page.goto(url)
    page.locator("#item-text").wait_for()
    assert page.locator("#item-text").get_attribute("data-item") == str(ids["gold"])
    assert page.locator("#suggestion").count() == 0

    # all: shown there too, with the reason in plain words.
    db(lambda: Campaign.objects.filter(pk=campaign.pk).update(show_suggestions="all"))
    page.goto(url)
    page.locator("#suggestion").wait_for()
    text = " ".join(page.locator("#suggestion").inner_text().split())
    assert "Model suggests: negative · 52%" in text
    assert "The model is unsure: 52% negative" in text

    # off: never.
    db(lambda: Campaign.objects.filter(pk=campaign.pk).update(show_suggestions="off"))
    db(lambda: _lease(annotator, ids["plain"]))
    page.goto(url)
    page.locator("#item-text").wait_for()
    assert page.locator("#suggestion").count() == 0
