"""Accessibility and the annotator's aids in a real browser (Debian's chromium, Playwright):
axe-core finds no serious or critical violation on the labeling page, the dashboard and the
campaign form; every label has a key; focus and announcements follow each action; the
history edits a label; the action bar stays on screen (docs/platform.md, "The labeling page").

axe-core is injected as a script, which the pages' Content-Security-Policy refuses: the axe
tests use a browser context that bypasses it (the other tests keep the policy on).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from labeling import annotation
from labeling.imports.write import import_file
from labeling.models import (
    Campaign,
    ExportJob,
    Item,
    Label,
    NearDuplicate,
    Webhook,
    WebhookDelivery,
)
from tests.labeling.test_browser import CHROMIUM, CHROMIUM_ARGS, db, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core-4.12.1" / "axe.min.js"
BAD = ("serious", "critical")

Opener = Callable[..., Any]


@pytest.fixture
def open_page(live_server: Any) -> Iterator[Opener]:
    """``open_page(user, path, bypass_csp=False, **context)``: a page of a fresh browser
    context signed in as ``user``; Content-Security-Policy reports fail the test."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed; `make test` installs it (apt-get)")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def open_(user: Any, path: str, bypass_csp: bool = False, **options: Any) -> Any:
            def session() -> str:
                client = Client()
                client.force_login(user)
                return client.cookies[django_settings.SESSION_COOKIE_NAME].value

            context = browser.new_context(bypass_csp=bypass_csp, **options)
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
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(live_server.url + path)
            return page

        yield open_
        browser.close()
    assert not blocked, blocked


def _import(campaign: Campaign, texts: list[str], labels: list[str] | None = None) -> None:
    def setup() -> None:
        fields: dict[str, Any] = {"gold_rate": 0}
        if labels:
            fields["labels"] = labels
        Campaign.objects.filter(pk=campaign.pk).update(**fields)
        fresh = Campaign.objects.get(pk=campaign.pk)
        body = "text,source\n" + "".join(f'"{t}",site-{i}\n' for i, t in enumerate(texts))
        import_file(fresh, fresh.created_by, body.encode(), "items.csv")

    db(setup)


TEXTS = [
    "The plot was thin but the acting carried it; I left smiling.",
    "Cold food, slow service, and a bill that made it worse.",
    "A charming little hotel with a view worth the stairs.",
    "Not bad, not good: a film to forget by Tuesday.",
]


def _item(page: Any) -> str:
    return str(page.locator("#item-text").get_attribute("data-item"))


def _next_item(page: Any, before: str) -> str:
    until(page, f"document.querySelector('#item-text').dataset.item !== '{before}'")
    return _item(page)


def _axe(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}))"""
    )
    return violations


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations(
    campaign: Campaign, annotator: Any, manager: Any, open_page: Opener, scheme: str
) -> None:
    _import(campaign, TEXTS)
    label = open_page(
        annotator, f"/campaigns/{campaign.pk}/label/", bypass_csp=True, color_scheme=scheme
    )
    first = _item(label)
    label.keyboard.press("2")  # a label: the feedback line and the history show too
    _next_item(label, first)
    pages = {
        "labeling page": label,
        "dashboard": open_page(
            manager, f"/campaigns/{campaign.pk}/dashboard/", bypass_csp=True, color_scheme=scheme
        ),
        "campaign form": open_page(
            manager, "/campaigns/new/", bypass_csp=True, color_scheme=scheme
        ),
    }
    found = {name: _axe(page) for name, page in pages.items()}
    bad = {
        name: [v for v in violations if v["impact"] in BAD] for name, violations in found.items()
    }
    assert bad == {name: [] for name in pages}, bad


def _integrations(campaign: Campaign, manager: Any) -> None:
    """A near-duplicate pair, a webhook with a failed and a delivered delivery, and a finished
    export job: what the manager's data pages show."""

    def setup() -> None:
        items = list(Item.objects.filter(campaign=campaign).order_by("position"))
        NearDuplicate.objects.create(
            campaign=campaign, item=items[1], duplicate_of=items[0], similarity=0.97
        )
        hook = Webhook.objects.create(
            campaign=campaign,
            url="https://example.org/hooks/carve",
            secret="s" * 64,
            events=["item.labeled", "model.trained"],
            created_by=manager,
        )
        WebhookDelivery.objects.create(
            webhook=hook,
            event="model.trained",
            status="delivered",
            attempts=1,
            response_status=200,
        )
        WebhookDelivery.objects.create(
            webhook=hook,
            event="item.labeled",
            status="failed",
            attempts=8,
            response_status=500,
            error="HTTP 500: upstream error",
        )
        ExportJob.objects.create(
            campaign=campaign,
            created_by=manager,
            format="parquet",
            rows="items",
            filename=f"campaign-{campaign.pk}-labels.parquet",
            status="done",
            n_total=4,
            n_done=4,
            n_rows=4,
            size_bytes=2048,
        )

    db(setup)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violations_on_the_data_pages(
    campaign: Campaign, manager: Any, open_page: Opener, scheme: str, tmp_path: Path
) -> None:
    """The campaign page and its export, webhooks and near-duplicates pages."""
    _import(campaign, TEXTS)
    _integrations(campaign, manager)
    found = {}
    for name in ("", "export/", "webhooks/", "near-duplicates/"):
        page = open_page(
            manager, f"/campaigns/{campaign.pk}/{name}", bypass_csp=True, color_scheme=scheme
        )
        page.screenshot(path=str(tmp_path / f"{name.strip('/') or 'campaign'}-{scheme}.png"))
        found[name or "campaign"] = _axe(page)
    assert found == {name: [] for name in found}, found


def test_the_twelfth_label_has_a_key(campaign: Campaign, annotator: Any, open_page: Opener) -> None:
    labels = [f"class-{i}" for i in range(1, 13)]
    _import(campaign, TEXTS, labels)
    page = open_page(annotator, f"/campaigns/{campaign.pk}/label/")
    twelfth = page.get_by_role("button", name="class-12")
    assert twelfth.get_attribute("data-key") == "b"
    assert twelfth.locator("kbd").inner_text() == "b"
    first = _item(page)
    page.keyboard.press("b")
    _next_item(page, first)
    assert db(lambda: list(Label.objects.values_list("item_id", "value"))) == [
        (int(first), "class-12")
    ]


def test_focus_returns_to_the_card_and_the_new_item_is_announced(
    campaign: Campaign, annotator: Any, open_page: Opener
) -> None:
    _import(campaign, TEXTS)
    page = open_page(annotator, f"/campaigns/{campaign.pk}/label/")
    assert page.locator("#announce").get_attribute("aria-live") == "polite"
    first = _item(page)
    page.get_by_role("button", name="positive").click()  # the mouse, then keys again
    second = _next_item(page, first)
    until(page, "document.activeElement && document.activeElement.id === 'label-card'")
    announced = page.locator("#announce").inner_text()
    assert announced.startswith("Labeled “positive” on «")
    assert "New item: " + page.locator("#item-text").inner_text()[:40] in announced

    page.keyboard.press("1")  # works because the focus is on the card
    third = _next_item(page, second)
    assert "Labeled “negative”" in page.locator("#announce").inner_text()
    page.keyboard.press("u")
    until(page, f"document.querySelector('#item-text').dataset.item === '{second}'")
    assert page.locator("#announce").inner_text().startswith("Undid “negative” on «")
    assert page.evaluate("document.activeElement.id") == "label-card"
    assert third != second


def test_the_history_changes_an_earlier_label(
    campaign: Campaign, annotator: Any, open_page: Opener
) -> None:
    _import(campaign, TEXTS)
    page = open_page(annotator, f"/campaigns/{campaign.pk}/label/")
    first = _item(page)
    page.keyboard.press("2")  # positive
    second = _next_item(page, first)
    page.keyboard.press("2")
    _next_item(page, second)

    entry = page.locator(".history li").filter(has_text=TEXTS[0][:20])
    entry.get_by_role("combobox").select_option("negative")
    entry.get_by_role("button", name="Change").click()
    page.locator("#feedback").filter(has_text="from “positive” to “negative”").wait_for()
    active = db(
        lambda: dict(Label.objects.filter(undone_at__isnull=True).values_list("item_id", "value"))
    )
    assert active == {int(first): "negative", int(second): "positive"}
    # The edited label heads the list with its new value selected.
    top = page.locator(".history li").first
    assert TEXTS[0][:20] in top.inner_text()
    assert top.get_by_role("combobox").input_value() == "negative"


def test_the_action_bar_stays_on_screen_over_a_long_text(
    campaign: Campaign, annotator: Any, open_page: Opener
) -> None:
    long_text = " ".join(["A very long review that goes on and on about the film."] * 120)
    _import(campaign, [long_text])
    page = open_page(
        annotator, f"/campaigns/{campaign.pk}/label/", viewport={"width": 390, "height": 700}
    )
    assert page.evaluate("document.documentElement.scrollHeight") > 2 * 700
    button = page.get_by_role("button", name="positive")
    box = button.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 700
    # Nothing covers it: the point at its centre is the button.
    hit = page.evaluate(
        f"""document.elementFromPoint({box["x"] + box["width"] / 2},
            {box["y"] + box["height"] / 2}).closest("button[data-key='2']") !== null"""
    )
    assert hit
    page.mouse.wheel(0, 1500)  # halfway down: still there
    page.wait_for_timeout(200)
    box = button.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 700
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_dashboard_fits_a_phone(
    campaign: Campaign, manager: Any, annotator: Any, open_page: Opener
) -> None:
    _import(campaign, TEXTS)

    def label_two() -> None:
        for value in ("positive", "negative"):
            served = annotation.next_assignment(campaign, annotator)
            assert served is not None
            annotation.submit_label(served.item, annotator, value)

    db(label_two)  # the annotators' table and the charts have rows
    page = open_page(
        manager, f"/campaigns/{campaign.pk}/dashboard/", viewport={"width": 390, "height": 800}
    )
    page.locator("#annotators").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


# The WCAG contrast ratio of the focus ring against the page behind it.
CONTRAST = """(() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number).map(c => {
    c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); });
  const lum = c => 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  const style = getComputedStyle(document.activeElement);
  if (style.outlineStyle === "none" || parseFloat(style.outlineWidth) < 2) return 0;
  const a = lum(rgb(style.outlineColor));
  const b = lum(rgb(getComputedStyle(document.body).backgroundColor));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
})()"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_focus_ring_is_visible(
    campaign: Campaign, annotator: Any, open_page: Opener, scheme: str
) -> None:
    _import(campaign, TEXTS)
    page = open_page(annotator, f"/campaigns/{campaign.pk}/label/", color_scheme=scheme)
    for _ in range(4):  # the skip link, then the header's links
        page.keyboard.press("Tab")
        assert page.evaluate(CONTRAST) >= 3
    page.get_by_role("button", name="negative").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # a keyboard move: :focus-visible
    assert page.evaluate("document.activeElement.textContent").strip().endswith("negative")
    assert page.evaluate(CONTRAST) >= 3


def test_an_empty_card_picks_up_new_work_by_itself(
    campaign: Campaign, annotator: Any, open_page: Opener
) -> None:
    page = open_page(annotator, f"/campaigns/{campaign.pk}/label/")
    assert _item(page) == ""
    _import(campaign, TEXTS[:1])
    until(page, "document.querySelector('#item-text').dataset.item !== ''", timeout=25)
    assert page.locator("#item-text").inner_text() == TEXTS[0]
    assert "New item: " in page.locator("#announce").inner_text()
