"""The reserved evaluation set: selection, serving, never trained on, measured with a Wilson
interval, shown on the dashboard and in the metrics API (docs/platform.md, "The evaluation
set")."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import numpy as np
import pytest
from django.urls import reverse

from labeling import annotation, campaign_learner, charts, evaluation, items_page, model_versions
from labeling.imports.write import import_file
from labeling.models import (
    Assignment,
    Campaign,
    EmbeddingJob,
    Item,
    LearnerPoint,
    LearnerSnapshot,
)
from tests.labeling.builders import embedded_campaign
from tests.support.clients import api_as, logged_in

pytestmark = pytest.mark.django_db


def _evaluation(campaign: Campaign) -> set[int]:
    return set(
        Item.objects.filter(campaign=campaign, evaluation=True).values_list("position", flat=True)
    )


def _csv(start: int, n: int) -> bytes:
    return ("text\n" + "".join(f"text {i}\n" for i in range(start, start + n))).encode()


# --- selection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "n_items", "size"),
    [(100, 1000, 50), (100, 10_000, 100), (100, 19, 0), (100, 20, 1), (0, 1000, 0), (7, 999, 7)],
)
def test_the_set_is_the_setting_capped_at_5_percent_rounded_down(
    setting: int, n_items: int, size: int
) -> None:
    assert evaluation.target_size(setting, n_items) == size


def test_an_import_draws_a_seeded_random_sample(campaign: Campaign, manager: Any) -> None:
    import_file(campaign, manager, _csv(0, 400), "a.csv")
    drawn = _evaluation(campaign)
    assert len(drawn) == 20  # 5 % of 400 (the setting is 100)
    assert drawn != set(range(20))  # not the first rows: random
    # The same seed draws the same positions; another seed others.
    twin = Campaign.objects.create(name="twin", created_by=manager, seed=campaign.seed)
    import_file(twin, manager, _csv(0, 400), "a.csv")
    assert _evaluation(twin) == drawn
    other = Campaign.objects.create(name="other", created_by=manager, seed=campaign.seed + 1)
    import_file(other, manager, _csv(0, 400), "a.csv")
    assert _evaluation(other) != drawn
    # An item's key does not depend on the pool size: the draw grows, it is not redrawn.
    assert np.array_equal(evaluation.keys(3, 100), evaluation.keys(3, 250)[:100])


def test_the_set_is_topped_up_as_the_pool_grows_among_items_never_served(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    import_file(campaign, manager, _csv(0, 200), "a.csv")
    first = _evaluation(campaign)
    assert len(first) == 10
    # Serve (and label) 60 items that are not in the set, as the learner would choose them.
    served = list(Item.objects.filter(campaign=campaign, evaluation=False).order_by("?")[:60])
    for item in served:
        annotation.submit_label(item, annotator, "positive")
    import_file(campaign, manager, _csv(200, 400), "b.csv")
    grown = _evaluation(campaign)
    assert len(grown) == 30 and first <= grown  # never flipped out
    assert not grown & {item.position for item in served}  # never a served item
    # Idempotent: another top-up changes nothing.
    assert evaluation.top_up(campaign) == 30 and _evaluation(campaign) == grown


def test_deleting_items_on_the_items_page_tops_the_set_up_again(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    import_file(campaign, manager, _csv(0, 400), "a.csv")
    EmbeddingJob.objects.filter(campaign=campaign).update(status="done")  # deletion waits for it
    chosen = Item.objects.filter(campaign=campaign, evaluation=True).order_by("position")
    assert chosen.count() == 20
    # Serve one item outside the set: it must not enter it.
    served = Item.objects.filter(campaign=campaign, evaluation=False).order_by("position").first()
    assert served is not None
    annotation.submit_label(served, annotator, "positive")
    doomed = list(chosen.values_list("pk", flat=True)[:5])
    kept = set(chosen.exclude(pk__in=doomed).values_list("pk", flat=True))
    deleted = items_page.delete_items(campaign, Item.objects.filter(pk__in=doomed))
    assert deleted.items == 5
    # 395 items: the target is 19 (5 % rounded down); the 15 left stay, 4 are added.
    after = set(
        Item.objects.filter(campaign=campaign, evaluation=True).values_list("pk", flat=True)
    )
    assert len(after) == evaluation.target_size(campaign.evaluation_size, 395) == 19
    assert kept <= after and served.pk not in after


def test_lowering_the_setting_releases_only_items_nobody_was_served(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    import_file(campaign, manager, _csv(0, 400), "a.csv")
    item = Item.objects.filter(campaign=campaign, evaluation=True).first()
    assert item is not None
    annotation.submit_label(item, annotator, "negative")
    response = api_as(manager).patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"evaluation_size": 0}, format="json"
    )
    assert response.status_code == 200, response.content
    left = Item.objects.filter(campaign=campaign, evaluation=True)
    assert list(left.values_list("pk", flat=True)) == [item.pk]  # labeled: stays
    # Raising it again tops the set up (the edit form and the API both do).
    api_as(manager).patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"evaluation_size": 15}, format="json"
    )
    assert len(_evaluation(campaign)) == 15


# --- serving --------------------------------------------------------------------------------


class _Fixed(random.Random):
    """random() always returns ``value`` (the stage draws), shuffle as usual."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_evaluation_items_are_mixed_in_at_their_rate_never_from_the_queue(
    campaign: Campaign, annotator: Any
) -> None:
    items, _ = embedded_campaign(campaign, 100, evaluation_size=100, gold_rate=0.0)
    held = [item.pk for item in items if Item.objects.get(pk=item.pk).evaluation]
    assert len(held) == 5
    ranked = [item.pk for item in items if item.pk not in held]
    # The draw below SERVE_RATE: an evaluation item first.
    below = annotation.next_assignment(
        campaign, annotator, ranked=ranked, rng=_Fixed(evaluation.SERVE_RATE / 2)
    )
    assert below is not None and below.item_id in held
    Assignment.objects.filter(pk=below.pk).delete()
    above = annotation.next_assignment(
        campaign, annotator, ranked=ranked, rng=_Fixed(evaluation.SERVE_RATE * 2)
    )
    assert above is not None and above.item_id == ranked[0]
    # Over many requests, about SERVE_RATE of the stage draws pick evaluation items.
    rng = random.Random(1)
    firsts = [next(s for s in annotation.candidate_stages(campaign, annotator, ranked, rng) if s)]
    for _ in range(399):
        firsts.append(
            next(s for s in annotation.candidate_stages(campaign, annotator, ranked, rng) if s)
        )
    share = sum(stage[0] in held for stage in firsts) / len(firsts)
    assert abs(share - evaluation.SERVE_RATE) < 0.06


# --- never trained on, never queried --------------------------------------------------------


def test_the_learner_never_trains_on_nor_queries_evaluation_items(
    campaign: Campaign, annotator: Any, monkeypatch: Any
) -> None:
    items, E = embedded_campaign(campaign, 100, evaluation_size=100)
    held = {item.pk for item in Item.objects.filter(campaign=campaign, evaluation=True)}
    assert len(held) == 5
    y = (E @ np.random.default_rng(0).standard_normal(E.shape[1]) > 0).astype(int)
    names = ["negative", "positive"]
    for item in items:
        if item.pk in held:
            annotation.submit_label(item, annotator, names[y[item.position]])
    others = [item for item in items if item.pk not in held][:12]
    for item in others:
        annotation.submit_label(item, annotator, names[y[item.position]])
    outcome = campaign_learner.update_learner(campaign.pk)
    assert outcome.status == "updated"
    snapshot = LearnerSnapshot.objects.get(campaign=campaign)
    trained = {item_id for item_id, _ in snapshot.training}
    assert trained == {item.pk for item in others}  # every label, none on the evaluation set
    assert not held & set(snapshot.queue) and snapshot.queue
    assert not held & set(snapshot.suspects)
    # The learning-curve point measures the centre on the labeled evaluation items.
    point = campaign_learner.measure_learner(campaign.pk)
    assert point is not None and point.n_eval == 5 and point.eval_accuracy is not None
    correct = round(point.eval_accuracy * 5)
    assert (point.eval_low, point.eval_high) == pytest.approx(evaluation.wilson(correct, 5))
    assert point.eval_low is not None and point.eval_high is not None
    assert point.eval_low <= point.eval_accuracy <= point.eval_high
    # A model version trains on the same labels and, with enough evaluation labels, chooses
    # and reports on the evaluation set.
    monkeypatch.setattr(evaluation, "MIN_LABELS", 5)
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "done"
    version.refresh_from_db()
    assert version.n_labels == 12
    m = version.metrics
    assert m["n_eval"] == 5 and m["selected_on"] == "evaluation"
    assert m["evaluation"] == m[version.chosen]["evaluation"]
    assert m["evaluation"]["n"] == 5
    assert m["evaluation"]["low"] <= m["evaluation"]["accuracy"] <= m["evaluation"]["high"]


# --- Wilson interval, stop rule -------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (Wilson)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (5, 10, 0.2366, 0.7634),  # symmetric around 0.5
    ],
)
def test_wilson_interval_known_values(correct: int, n: int, low: float, high: float) -> None:
    assert evaluation.wilson(correct, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_edges() -> None:
    assert evaluation.wilson(0, 0) == (0.0, 1.0)
    low, high = evaluation.wilson(30, 30)
    assert high == pytest.approx(1.0) and 0.88 < low < 0.89


class _P:
    def __init__(self, n: int, acc: float | None, n_eval: int, d: float | None = None) -> None:
        self.n_labels, self.eval_accuracy, self.n_eval = n, acc, n_eval
        self.disagreement, self.threshold = d, (0.02 if d is not None else None)


def test_the_stop_rule_uses_the_evaluation_curve_when_it_has_enough_labels() -> None:
    # err(n) = 0.5 n^-0.5: doubling from n gains err(n) (1 - 2^-0.5); below 0.01 from
    # n* = (0.01 / (0.5 (1 - 2^-0.5)))^-2 = 214.5 labels.
    curve = [_P(n, 1 - 0.5 * n**-0.5, 40) for n in (25, 50, 100)]
    estimate = evaluation.stop_estimate(curve)
    n_star = (0.01 / (0.5 * (1 - 2**-0.5))) ** -2
    assert not estimate.stop and estimate.labels_left == math.ceil(n_star - 100)
    assert estimate.method.startswith("evaluation set")
    done = evaluation.stop_estimate([*curve, _P(400, 1 - 0.5 * 400**-0.5, 40)])
    assert done.stop and done.labels_left == 0


def test_without_enough_evaluation_labels_the_rule_falls_back_on_the_disagreement() -> None:
    # d(n) = 0.2 / n reaches the threshold 0.02 at n = 10.
    curve = [_P(n, 0.9, 10, d=0.2 / n) for n in (2, 4, 5)]
    estimate = evaluation.stop_estimate(curve)
    assert not estimate.stop and estimate.labels_left == 5
    assert estimate.method.startswith("version-space disagreement")
    assert evaluation.stop_estimate([*curve, _P(20, 0.9, 10, d=0.01)]).stop
    assert evaluation.stop_estimate([]).labels_left is None


# --- charts, dashboard, metrics API ---------------------------------------------------------


def test_axis_ticks_are_nice_steps_with_enough_digits() -> None:
    svg = charts.line_chart(
        [charts.Series("disagreement", [5, 10, 20], [0.012, 0.018, 0.031])],
        title="D",
        x_label="labels",
    )
    y_ticks = re.findall(r'text-anchor="end">([0-9.]+)</text>', svg)
    assert y_ticks == ["0.010", "0.015", "0.020", "0.025", "0.030", "0.035"]
    steps = {round(float(b) - float(a), 6) for a, b in zip(y_ticks, y_ticks[1:], strict=False)}
    assert steps == {0.005}


def test_a_series_with_an_interval_draws_a_band_and_error_bars() -> None:
    svg = charts.line_chart(
        [charts.Series("acc", [10, 20], [0.6, 0.7], low=[0.4, 0.55], high=[0.78, 0.82])],
        title="A",
        x_label="labels",
        y_range=(0.0, 1.0),
    )
    assert svg.count('class="band"') == 1 and svg.count('class="error-bar"') == 2


def _points(campaign: Campaign) -> None:
    for n, acc, n_eval in ((10, 0.6, 12), (20, 0.7, 31), (40, 0.75, 45)):
        low, high = evaluation.wilson(round(acc * n_eval), n_eval)
        LearnerPoint.objects.create(
            campaign=campaign,
            n_labels=n,
            eval_accuracy=acc,
            eval_low=low,
            eval_high=high,
            n_eval=n_eval,
            cv_accuracy=acc - 0.05,
            disagreement=0.3 / n,
            threshold=0.02,
            log_volume=-n / 10,
        )


def test_the_dashboard_shows_the_estimate_the_stop_estimate_and_the_diagnostics(
    campaign: Campaign, manager: Any
) -> None:
    url = reverse("campaign-dashboard", args=[campaign.pk])
    empty = logged_in(manager).get(url).content.decode()
    assert "Estimated accuracy ± 95 % interval: no data yet" in empty
    assert "cannot tell yet" in empty
    _points(campaign)
    text = logged_in(manager).get(url).content.decode()
    assert "0.750 (95 % interval" in text and "evaluation set (45 labeled items" in text
    assert 'class="band"' in text  # the Wilson band
    assert "cross-validated estimate (from training labels)" in text
    assert '<details id="learner-diagnostics">' in text
    diagnostics = text.split('<details id="learner-diagnostics">')[1]
    assert "Version-space disagreement" in diagnostics and "Log-volume" in diagnostics
    assert re.search(r'id="labels-until-stop">(about \d+ more \(estimate\)|the stop rule)', text)


def test_before_the_evaluation_set_has_enough_labels_the_cv_estimate_is_shown(
    campaign: Campaign, manager: Any
) -> None:
    LearnerSnapshot.objects.create(
        campaign=campaign, state=b"", estimate={"accuracy": 0.8, "n": 50, "folds": 5}
    )
    text = logged_in(manager).get(reverse("campaign-dashboard", args=[campaign.pk])).content
    assert "cross-validated estimate (from training labels; 50 labels)" in text.decode()


def test_the_metrics_api_returns_the_evaluation_curve_with_its_interval(
    campaign: Campaign, manager: Any
) -> None:
    _points(campaign)
    body = api_as(manager).get(f"/api/v1/campaigns/{campaign.pk}/metrics/").json()
    last = body["curve"][-1]
    assert (last["n_labels"], last["eval_accuracy"], last["n_eval"]) == (40, 0.75, 45)
    assert last["eval_low"] < 0.75 < last["eval_high"] and last["cv_accuracy"] == 0.7
    assert body["estimate"]["kind"] == "evaluation" and body["estimate"]["n"] == 45
    assert set(body["stop"]) == {"stop", "labels_left", "method"}
    assert body["stop_suggested"] == body["stop"]["stop"]
    assert body["n_evaluation"] == 0
