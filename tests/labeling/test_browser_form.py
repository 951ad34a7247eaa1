"""The campaign form's layout in a real browser (docs/platform.md, "Campaign settings"):
every label sits above its own input (or beside it, on its row), never nearer another
field's input than its own, on a wide and a narrow screen, with and without errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from labeling.models import Campaign
from tests.labeling.test_browser import db, signed_in_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TOLERANCE = 2.0  # CSS pixels

#: Rectangles of every visible label of the form, its own input, and all visible inputs.
GEOMETRY = """() => {
  const box = e => {
    const r = e.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  };
  // (A closed <details> keeps its content's boxes: checkVisibility() tells it is hidden.)
  const shown = e => { const r = e.getBoundingClientRect();
                       return r.width > 0 && r.height > 0 && e.checkVisibility(); };
  const form = document.querySelector('form.campaign-form');
  const inputs = [...form.querySelectorAll('input:not([type=hidden]), textarea, select')]
    .filter(shown).map(e => ({id: e.id, box: box(e)}));
  const labels = [...form.querySelectorAll('label[for]')].filter(shown).map(l => {
    const own = document.getElementById(l.htmlFor);
    return {for: l.htmlFor, box: box(l), wraps: own !== null && l.contains(own),
            own: own === null ? null : box(own)};
  });
  return {labels, inputs};
}"""


def _gap(a: list[float], b: list[float]) -> float:
    dx = max(0.0, a[0] - b[2], b[0] - a[2])
    dy = max(0.0, a[1] - b[3], b[1] - a[3])
    return math.hypot(dx, dy)


def _check_layout(page: Any) -> int:
    """Assert the rule for every visible label; returns how many were checked."""
    found = page.evaluate(GEOMETRY)
    assert found["labels"], "no labels found"
    for label in found["labels"]:
        name, own, box = label["for"], label["own"], label["box"]
        assert own is not None, f"label for {name!r} names no element"
        if label["wraps"]:  # a checkbox inside its label
            continue
        overlaps = min(box[2], own[2]) - max(box[0], own[0]) > 0
        above = box[3] <= own[1] + TOLERANCE and overlaps
        same_row = min(box[3], own[3]) - max(box[1], own[1]) > 0 and box[2] <= own[0] + TOLERANCE
        assert above or same_row, f"label of {name} at {box} is not above/beside it at {own}"
        mine = _gap(box, own)
        for other in found["inputs"]:
            if other["id"] != name:
                assert _gap(box, other["box"]) > mine, (
                    f"label of {name} is nearer {other['id']!r} than its own input"
                )
    return len(found["labels"])


@pytest.fixture
def manager_page(live_server: Any, manager: Any, annotator: Any) -> Iterator[Any]:
    with signed_in_page(live_server, manager, check_csp=False) as page:
        yield page


@pytest.mark.parametrize("width", [1280, 390])
def test_every_label_sits_by_its_own_input(live_server: Any, manager_page: Any, width: int) -> None:
    page = manager_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{live_server.url}/campaigns/new/")
    collapsed = _check_layout(page)
    assert not page.locator("#id_seed").is_visible()  # the learner settings start collapsed
    page.locator("summary", has_text="Advanced: learner settings").click()
    assert page.locator("#id_seed").is_visible()
    assert _check_layout(page) >= collapsed + 7

    # With errors (shown under their inputs), the rule still holds, and the section with an
    # error opens by itself.
    page.fill("#id_name", "")
    page.fill("#id_n_gates", "0")
    page.fill("#id_invite", "nobody")
    page.locator("button[type=submit]").click()
    page.locator(".errorlist").first.wait_for()
    assert page.locator("#id_seed").is_visible()
    _check_layout(page)
    assert db(lambda: Campaign.objects.count()) == 0
