"""The items page in a real browser: search, filter, select, delete (docs/platform.md,
"The items page"). Reuses test_browser.py's live-server and chromium helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from labeling.imports.write import import_file
from labeling.models import Campaign, EmbeddingJob, Item
from tests.labeling.test_browser import db, signed_in_page, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def manager_page(live_server: Any, manager: Any) -> Iterator[Any]:
    with signed_in_page(live_server, manager) as page:
        yield page


@pytest.fixture
def thirty(campaign: Campaign) -> Campaign:
    """30 items: every third starts with "spam", odd ones have a gold label. Made before the
    browser's event loop starts (ORM calls are refused in its thread)."""
    body = "text,label\n" + "".join(
        f"{'spam' if i % 3 == 0 else 'review'} number {i},{'positive' if i % 2 else ''}\n"
        for i in range(30)
    )
    import_file(campaign, campaign.created_by, body.encode(), "d.csv")
    EmbeddingJob.objects.filter(campaign=campaign).update(status="failed")  # nothing embeds
    return campaign


def test_search_filter_select_and_delete(
    thirty: Campaign, live_server: Any, manager_page: Any
) -> None:
    campaign = thirty
    page = manager_page
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    page.click("#items-link")
    until(page, "document.querySelector('#items-count').textContent.startsWith('30 items')")
    page.evaluate("window.__sameDocument = true")

    page.fill("#id_q", "spam")  # search: htmx swaps the results, the URL follows
    until(page, "document.querySelector('#items-count').textContent.startsWith('10 items')")
    page.select_option("#id_gold", "yes")  # and a filter: odd numbers have a gold label
    until(page, "document.querySelector('#items-count').textContent.startsWith('5 items')")
    assert page.evaluate("window.__sameDocument") is True
    assert "q=spam" in page.url and "gold=yes" in page.url

    # The pushed URL is the filtered list: load it afresh (no swap still in flight).
    page.goto(page.url)
    assert page.input_value("#id_q") == "spam"
    assert page.locator("#items-count").inner_text().startswith("5 items")
    page.check("#all-matching")
    with page.expect_navigation():
        page.click("button[value=delete]")
    page.locator("#confirm-delete").wait_for()
    assert "Delete 5 items" in page.locator("#confirm-button").inner_text()
    with page.expect_navigation():
        page.click("#confirm-button")
    page.locator(".msg.success").wait_for()
    assert "Deleted 5 item(s)" in page.locator(".msg.success").inner_text()
    assert "q=spam" in page.url  # back on the filtered list, now empty
    page.locator("#items-empty").wait_for()

    texts = db(lambda: list(Item.objects.filter(campaign=campaign).values_list("text", "position")))
    assert len(texts) == 25 and sorted(p for _, p in texts) == list(range(25))
    assert not [t for t, _ in texts if t.startswith("spam") and int(t.split()[-1]) % 2]
