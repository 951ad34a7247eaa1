"""The reserved evaluation set: an honest measure of the model (docs/platform.md, "The
evaluation set").

- :func:`top_up` keeps a campaign's evaluation set at :func:`target_size` items: a seeded
  random sample of the pool, drawn among items nobody was served yet, topped up as the pool
  grows or the setting changes. An item that was served stays in the set for good.
- :func:`split` takes the evaluation items out of the consensus labels: the learner never
  trains on them nor queries them; their final labels measure the model.
- :func:`wilson` is the 95 % Wilson score interval of an accuracy; :func:`score` applies it.
- :func:`stop_estimate` is the stop rule on the learning curve and its estimate of the labels
  still needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from django.db import transaction
from django.db.models import Exists, Max, OuterRef

from labeling.consensus import Training
from labeling.models import Assignment, Campaign, Decision, Item

#: The set is at most this share of the pool (rounded down): pools under 20 items have none.
MAX_SHARE = 0.05
#: Labeled evaluation items before the set is trusted: model selection, the dashboard's
#: accuracy chart and the stop rule use it from then on (the Wilson interval is then at
#: most about +-0.17 wide each way).
MIN_LABELS = 30
#: Share of served items taken from evaluation items still missing labels, decided per
#: request like gold_rate: at 0.2, 100 evaluation items are labeled after about 500 labels,
#: 30 of them after about 150.
SERVE_RATE = 0.2
#: z of a two-sided 95 % interval.
Z95 = 1.959963984540054
#: Positions checked per query while topping up.
CHUNK = 2000
#: Second word of the key generator's seed (the first is the campaign's seed), so the draw
#: is not the same stream as the learner's.
STREAM = 0xE7A1


def target_size(evaluation_size: int, n_items: int) -> int:
    """min(the campaign's setting, 5 % of the pool rounded down)."""
    return max(0, min(evaluation_size, math.floor(n_items * MAX_SHARE)))


def keys(seed: int, n_items: int) -> np.ndarray:
    """A uniform random key per pool position. The generator's stream is read in order, so an
    item's key never changes when the pool grows: the draw is reproducible from the seed."""
    return np.random.default_rng([seed, STREAM]).random(n_items)


def top_up(campaign: Campaign) -> int:
    """Bring the campaign's evaluation set to :func:`target_size`; returns its size.

    Items are added in the order of their random keys (:func:`keys`), skipping items already
    served (any assignment) or decided, so the learner's choices never enter the set. When
    the target is lower than the set (the setting was lowered), items of the set nobody was
    served yet leave it, largest key first; served ones stay. Idempotent, under the campaign's
    row lock (imports lock it too); the database walks the positions in chunks of CHUNK.
    """
    with transaction.atomic():
        row = (
            Campaign.objects.select_for_update()
            .filter(pk=campaign.pk)
            .values("evaluation_size", "seed")
            .first()
        )
        if row is None:
            return 0
        last = Item.objects.filter(campaign=campaign).aggregate(m=Max("position"))["m"]
        n_items = 0 if last is None else last + 1
        target = target_size(row["evaluation_size"], n_items)
        chosen = Item.objects.filter(campaign=campaign, evaluation=True)
        have = chosen.count()
        if have == target:
            return have
        key = keys(row["seed"], n_items)
        served = Exists(Assignment.objects.filter(item=OuterRef("pk")))
        decided = Exists(Decision.objects.filter(item=OuterRef("pk")))
        if have > target:
            free = list(chosen.exclude(served).exclude(decided).values_list("pk", "position"))
            free.sort(key=lambda pk_pos: -key[pk_pos[1]])
            drop = [pk for pk, _ in free[: have - target]]
            Item.objects.filter(pk__in=drop).update(evaluation=False)
            return have - len(drop)
        need, picked = target - have, []
        order = np.argsort(key, kind="stable")
        for start in range(0, n_items, CHUNK):
            chunk = [int(p) for p in order[start : start + CHUNK]]
            rank = {p: i for i, p in enumerate(chunk)}
            found = (
                Item.objects.filter(campaign=campaign, position__in=chunk, evaluation=False)
                .exclude(served)
                .exclude(decided)
                .values_list("pk", "position")
            )
            picked += [pk for pk, _ in sorted(found, key=lambda pk_pos: rank[pk_pos[1]])]
            if len(picked) >= need:
                break
        picked = picked[:need]
        Item.objects.filter(pk__in=picked).update(evaluation=True)
        return have + len(picked)


def item_ids(campaign: Campaign) -> set[int]:
    """The campaign's evaluation items (at most the setting's maximum, 100,000)."""
    return set(Item.objects.filter(campaign=campaign, evaluation=True).values_list("pk", flat=True))


def split(training: Training, evaluation: set[int]) -> tuple[Training, list[list[Any]]]:
    """The consensus labels without the evaluation items (what the learner trains on), and
    the evaluation items' final labels ([item id, class index]: agreeing labels, or a
    manager's decision, as :func:`labeling.consensus.consensus` decides)."""
    train = [row for row in training.rows if row[0] not in evaluation]
    held = [row for row in training.rows if row[0] in evaluation]
    return Training(train, training.disagreements), held


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927; docs/platform.md, "The
    evaluation set"): with p = correct / n,

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    and (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Score:
    accuracy: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"accuracy": self.accuracy, "low": self.low, "high": self.high, "n": self.n}


class _Predicts(Protocol):
    def predict(self, X: np.ndarray) -> np.ndarray: ...


def score(net: _Predicts, matrix: np.ndarray, rows: np.ndarray, truth: Sequence[int]) -> Score:
    """``net``'s accuracy on the pool rows ``rows`` against ``truth``, with its Wilson 95 %
    interval (``rows`` and ``truth`` in the same order; ``rows`` all >= 0)."""
    n = len(truth)
    if n == 0:
        return Score(float("nan"), 0.0, 1.0, 0)
    predicted = net.predict(matrix[rows])
    correct = int(np.sum(predicted == np.asarray(truth)))
    low, high = wilson(correct, n)
    return Score(correct / n, low, high, n)


class _Point(Protocol):
    n_labels: int
    eval_accuracy: float | None
    n_eval: int
    disagreement: float | None
    threshold: float | None


@dataclass(frozen=True)
class StopEstimate:
    stop: bool  # the rule says stop now
    labels_left: int | None  # labels until it says stop (estimate; None: cannot tell yet)
    method: str  # how it was decided and estimated, in words


#: The evaluation-curve rule stops when one more doubling of the labels is projected to gain
#: less than this much accuracy.
MIN_GAIN = 0.01
#: Learning-curve points the power-law fits use (the latest ones).
FIT_POINTS = 6


def _power_fit(ns: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least squares of log y = log a + b log n; None with fewer than 3 distinct n."""
    if len(set(ns)) < 3:
        return None
    b, log_a = np.polyfit(np.log(ns), np.log(ys), 1)
    return float(np.exp(log_a)), float(b)


def stop_estimate(curve: Sequence[_Point]) -> StopEstimate:
    """The stop rule on the learning curve, and how many labels until it says stop.

    With the evaluation set trusted (MIN_LABELS labeled items) at three points or more: fit
    the evaluation error as a power law err(n) = a n^b over the latest FIT_POINTS points;
    stop once one more doubling of the labels is projected to gain less than MIN_GAIN
    (err(n) (1 - 2^b) < MIN_GAIN); the labels left solve that for n. Otherwise the
    version-space rule (docs/learner.md, "Diagnostics"): stop when the disagreement is below
    its threshold, labels left from a power-law fit of the disagreement.
    """
    curve = [p for p in curve if p.n_labels > 0]
    if not curve:
        return StopEstimate(False, None, "no learning-curve point yet")
    n_now = curve[-1].n_labels
    trusted = [p for p in curve if p.eval_accuracy is not None and p.n_eval >= MIN_LABELS]
    if len(trusted) >= 3:
        pts = trusted[-FIT_POINTS:]
        err = [max(1.0 - float(p.eval_accuracy or 0.0), 1e-3) for p in pts]
        fit = _power_fit([p.n_labels for p in pts], err)
        method = (
            f"evaluation set: power law fitted to the error at the last {len(pts)} points; "
            f"stop when doubling the labels gains under {MIN_GAIN:.0%} accuracy"
        )
        if fit is not None:
            a, b = fit
            if b >= 0:  # no gain measured: the curve is flat (or noisy)
                return StopEstimate(True, 0, method)
            gain_factor = 1.0 - 2.0**b
            n_stop = _solve(MIN_GAIN / (a * gain_factor), b)
            if math.isinf(n_stop):
                return StopEstimate(False, None, method)
            left = max(0, math.ceil(round(n_stop - n_now, 6)))
            return StopEstimate(left == 0, _capped(left), method)
    last = curve[-1]
    if last.disagreement is None or last.threshold is None:
        return StopEstimate(False, None, "no disagreement measured yet")
    stop = last.disagreement < last.threshold
    method = (
        "version-space disagreement: power law fitted to the last points; stop below "
        f"{last.threshold:g}"
    )
    if stop:
        return StopEstimate(True, 0, method)
    pts = [p for p in curve if p.disagreement is not None and p.disagreement > 0][-FIT_POINTS:]
    fit = _power_fit([p.n_labels for p in pts], [float(p.disagreement or 0.0) for p in pts])
    if fit is None or fit[1] >= 0:
        return StopEstimate(False, None, method + " (not falling yet: no estimate)")
    a, b = fit
    n_stop = _solve(last.threshold / a, b)
    if math.isinf(n_stop):
        return StopEstimate(False, None, method)
    return StopEstimate(False, _capped(max(1, math.ceil(round(n_stop - n_now, 6)))), method)


#: Estimates beyond this many labels are reported as None ("more than we can tell").
MAX_ESTIMATE = 10_000_000


def _capped(left: int) -> int | None:
    return left if left <= MAX_ESTIMATE else None


def _solve(ratio: float, b: float) -> float:
    """n with n^b = ratio (b < 0), as +inf when it would overflow a float."""
    log_n = math.log(ratio) / b
    return math.exp(log_n) if log_n < 700 else math.inf


def locate_truth(
    rows: Iterable[Sequence[Any]], locate: Callable[[Iterable[int]], np.ndarray]
) -> tuple[np.ndarray, list[int]]:
    """Pool rows and classes of labeled evaluation items ``rows`` ([item id, class]) that the
    pool has (``locate``: :meth:`labeling.embeddings.pool.Pool.locate`)."""
    rows = list(rows)
    found = np.asarray(locate(int(r[0]) for r in rows), dtype=np.int64)
    keep = found >= 0
    truth = [int(r[1]) for r, k in zip(rows, keep, strict=True) if k]
    return found[keep], truth
