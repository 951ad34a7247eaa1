"""The manager's dashboard: progress, throughput, agreement, gold accuracy, charts, stop."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from labeling import annotation, campaign_learner, charts, dashboard
from labeling.imports.write import import_file
from labeling.models import Campaign, Item
from tests.labeling.builders import embedded_campaign
from tests.support.clients import logged_in as _client

pytestmark = pytest.mark.django_db


def _url(campaign: Campaign) -> str:
    return reverse("campaign-dashboard", args=[campaign.pk])


@pytest.fixture
def labeled(campaign: Campaign) -> Campaign:
    """Two annotators on 6 items (overlap 2); items 0-3 carry gold labels."""
    gold = ["positive", "negative", "positive", "negative", "", ""]
    items, _ = embedded_campaign(campaign, 6, labels=gold, overlap=2)
    ann, bob = (get_user_model().objects.create_user(n) for n in ("ann", "bob"))
    ann_says = ["positive", "negative", "positive", "negative", "positive", "negative"]
    bob_says = ["positive", "negative", "negative", "negative", "positive", "positive"]
    for item, a, b in zip(items, ann_says, bob_says, strict=True):
        annotation.submit_label(item, ann, a)
        annotation.submit_label(item, bob, b)
    return campaign


def test_the_dashboard_is_for_managers(
    client: Client, campaign: Campaign, annotator: Any, outsider: Any
) -> None:
    assert client.get(_url(campaign)).status_code == 302
    assert _client(annotator).get(_url(campaign)).status_code == 403
    assert _client(outsider).get(_url(campaign)).status_code == 404
    stop = reverse("campaign-stop", args=[campaign.pk])
    assert _client(annotator).post(stop).status_code == 403


def test_summary_counts_agreement_and_gold_accuracy(labeled: Campaign) -> None:
    s = dashboard.summarize(labeled)
    assert (s.n_items, s.n_done, s.n_labels, s.n_gold) == (6, 6, 12, 4)
    assert s.n_review == 2  # items 2 and 5: ann and bob disagree
    # Cohen: agree on 4 of 6; ann 3 pos / 3 neg, bob 2 pos / 4 neg -> p_e = (6+12)/36 = 0.5
    assert s.agreement.statistic == "Cohen's kappa"
    assert s.agreement.value == pytest.approx((4 / 6 - 0.5) / 0.5)
    stats = {a.username: a for a in s.annotators}
    assert (stats["ann"].gold_accuracy, stats["ann"].n_gold) == (1.0, 4)
    assert stats["bob"].gold_accuracy == 0.75
    assert stats["ann"].last_hour == 6
    assert s.distribution == [("negative", 6), ("positive", 6)]


def test_fleiss_kappa_with_three_annotators(campaign: Campaign) -> None:
    campaign.overlap = 3
    campaign.save()
    import_file(campaign, campaign.created_by, b"text\na\nb\n", "d.csv")
    a, b = Item.objects.order_by("position")
    users = [get_user_model().objects.create_user(n) for n in ("u1", "u2", "u3")]
    for user in users:
        annotation.submit_label(a, user, "positive")
        annotation.submit_label(b, user, "negative")
    agreement = dashboard.summarize(campaign).agreement
    assert (agreement.statistic, agreement.value, agreement.n_items) == ("Fleiss' kappa", 1.0, 2)


def test_the_page_shows_the_numbers_and_svg_charts(labeled: Campaign, manager: Any) -> None:
    campaign_learner.update_learner(labeled.pk)
    campaign_learner.measure_learner(labeled.pk)  # the learning-curve point (its own task)
    text = _client(manager).get(_url(labeled)).content.decode()
    assert '<span id="n-done">6</span> / 6 items' in text
    assert "Cohen&#x27;s kappa 0.333" in text
    assert "<td>ann</td>" in text and "1.00 (4)" in text
    assert text.count("<svg") == 4
    assert "Labels given" in text


def test_stopping_a_campaign_stops_serving_items(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    import_file(campaign, campaign.created_by, b"text\nsomething\n", "d.csv")
    response = _client(manager).post(reverse("campaign-stop", args=[campaign.pk]))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.stopped_at is not None
    assert annotation.next_assignment(campaign, annotator, rng=random.Random(0)) is None
    page = _client(annotator).get(reverse("campaign-label", args=[campaign.pk]))
    assert "stopped by its managers" in page.content.decode()
    _client(manager).post(reverse("campaign-stop", args=[campaign.pk]), {"resume": "1"})
    campaign.refresh_from_db()
    assert campaign.stopped_at is None
    assert annotation.next_assignment(campaign, annotator, rng=random.Random(0)) is not None


def test_charts_escape_names_and_handle_no_data() -> None:
    empty = charts.line_chart([charts.Series("x", [], [])], title="Nothing", x_label="labels")
    assert "no data yet" in empty
    svg = charts.line_chart(
        [charts.Series("<b>", [1, 2, 3], [0.5, None, 0.7])],
        title="T & <i>",
        x_label="labels",
        hline=(0.6, "stop"),
    )
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "T &amp; &lt;i&gt;" in svg
    assert svg.count("<circle") == 2  # the None point is skipped
    bars = charts.bar_chart([("neg", 3), ("pos", 0)], title="Labels")
    assert bars.count("<rect") == 2


@pytest.mark.parametrize("name", ["campaign-stop", "campaign-retrain"])
def test_stop_and_retrain_refuse_anyone_but_managers(
    client: Client, campaign: Campaign, annotator: Any, outsider: Any, name: str
) -> None:
    url = reverse(name, args=[campaign.pk])
    assert client.post(url).status_code == 302  # anonymous: to the login page
    assert client.post(url)["Location"].startswith(reverse("login"))
    assert _client(outsider).post(url).status_code == 404
    assert _client(annotator).post(url).status_code == 403
    assert _client(annotator).get(url).status_code in (403, 405)
    campaign.refresh_from_db()
    assert campaign.stopped_at is None and not campaign.models.exists()


def test_label_count_axes_get_whole_number_ticks() -> None:
    svg = charts.line_chart(
        [charts.Series("acc", [1, 6, 11, 16, 21, 26], [0.5] * 6)], title="T", x_label="labels"
    )
    ticks = re.findall(r'text-anchor="middle">([^<]+)</text>', svg)
    # Nice steps (1, 2 or 5 times a power of ten) inside the data's range.
    assert ticks[:-1] == ["5", "10", "15", "20", "25"] and ticks[-1] == "labels"
