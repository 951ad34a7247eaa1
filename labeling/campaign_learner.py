"""A campaign's learner: rows -> arrays -> :mod:`learner` -> snapshot, and the ranked queue
(docs/platform.md, "The labeling loop").

:func:`update_learner` turns a campaign's rows into arrays (embeddings from the campaign's
cache, consensus labels as class indices), brings the stored learner up to date, recentres
it, and stores the ranked queue of items to serve next. The database is the source of truth:
the stored state is a cache, extended with new labels when it is still valid and rebuilt from
scratch otherwise (an undo, new items, other settings, or no snapshot at all). A run that dies
midway changes nothing; the next run catches up.

Coalescing: :func:`request_update` bumps ``Campaign.label_version`` and sends one task only if
none is pending; the task clears the flag when it starts, so labels that arrive while it runs
queue exactly one more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

import learner
from labeling import evaluation, locks, queue, signals
from labeling.consensus import consensus
from labeling.embeddings.pool import Pool, embeddings
from labeling.jobrows import error_text, stale_before
from labeling.models import (
    Assignment,
    Campaign,
    Item,
    Label,
    LearnerPoint,
    LearnerSnapshot,
)
from learner import suggest
from learner.calibration import Calibration, CalibrationStatus, calibrate

logger = logging.getLogger(__name__)


def request_update(campaign_id: int) -> bool:
    """Note a label change and queue one learner update unless one is already queued.

    Call inside the transaction that changed the labels. Returns whether a task was sent.
    """
    Campaign.objects.filter(pk=campaign_id).update(label_version=F("label_version") + 1)
    sent = Campaign.objects.filter(pk=campaign_id, learner_pending=False).update(
        learner_pending=True, learner_requested_at=timezone.now()
    )
    if sent:
        queue.send_on_commit(queue.UPDATE_LEARNER, campaign_id)
    return bool(sent)


def learner_config(
    campaign: Campaign, n_raw: int, n_pool: int | None = None
) -> learner.LearnerConfig:
    """The campaign's learner settings for embeddings of width ``n_raw``.

    With ``n_pool`` items in the pool, PCA is used only once the pool has more items than the
    projection has dimensions (a PCA of fewer items is not defined by them); until then the
    embeddings are used as they are.
    """
    k = len(campaign.labels)
    task = learner.Task.BINARY if k == 2 else learner.Task.MULTICLASS
    projection: dict[str, Any] = {"projection": learner.Projection.NONE, "n_components": None}
    big_enough = n_pool is None or n_pool > campaign.projection_dim
    if campaign.projection_dim and campaign.projection_dim < n_raw and big_enough:
        projection = {
            "projection": learner.Projection.PCA,
            "n_components": campaign.projection_dim,
        }
    # Blank softness: delta cross-validated on the labels (docs/learner.md, "Choosing delta").
    softness: dict[str, Any] = {"auto_delta": True}
    if campaign.softness is not None:
        softness = {"delta": campaign.softness, "auto_delta": False}
    return learner.LearnerConfig(
        task=task,
        n_classes=k,
        depth=campaign.depth,
        # Depth 2 takes the campaign's P; deeper networks the learner's per-layer defaults.
        n_gates=campaign.n_gates if campaign.depth == 2 else None,
        radius=campaign.radius,
        seed=campaign.seed,
        **projection,
        **softness,
    )


def forces_rebuild(before: Campaign, after: Campaign) -> bool:
    """Whether settings ``after`` give the learner another configuration than ``before``, so
    its fingerprint changes and the next update rebuilds the state from every label
    (docs/platform.md, "Campaign settings"). Compared for wide embeddings and a large pool,
    where every setting counts; renaming labels (same number, same order) changes nothing."""
    wide = 1 << 16
    return learner_config(before, wide).to_dict() != learner_config(after, wide).to_dict()


@dataclass(frozen=True)
class RebuildCost:
    """What rebuilding a campaign's learner would redo, for the edit page's warning."""

    n_labels: int  # active labels of the campaign
    seconds: float | None  # the last update's measured time (None: no update yet)
    last_was_rebuild: bool  # that update rebuilt the state (else it only added labels)


def rebuild_cost(campaign: Campaign) -> RebuildCost:
    n_labels = Label.objects.filter(item__campaign=campaign, undone_at__isnull=True).count()
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()
    if snapshot is None or not snapshot.state:
        return RebuildCost(n_labels, None, False)
    return RebuildCost(n_labels, snapshot.seconds, snapshot.rebuilt)


@dataclass(frozen=True)
class UpdateOutcome:
    status: str  # "updated", "no-embeddings", "no-items", "stale" (a newer run already wrote)
    snapshot: LearnerSnapshot | None = None


def update_learner(campaign_id: int) -> UpdateOutcome:
    """Bring the campaign's learner up to date with its labels; store the ranked queue.

    One update per campaign at a time (:mod:`labeling.locks`): a second one returns "busy"
    at once, and the running one sends itself again if labels arrived meanwhile
    (:func:`is_behind`). The learning-curve point is measured afterwards, by a task of its
    own (:func:`measure_learner`), so the ranked queue never waits for diagnostics.
    """
    with locks.hold(f"learner:{campaign_id}") as mine:
        if not mine:
            return UpdateOutcome("busy")
        return _update(campaign_id)


def _update(campaign_id: int) -> UpdateOutcome:
    Campaign.objects.filter(pk=campaign_id).update(learner_pending=False)
    campaign = Campaign.objects.get(pk=campaign_id)
    version = campaign.label_version
    started = time.perf_counter()
    pool = embeddings(campaign)
    if pool is None:
        return UpdateOutcome("no-embeddings")
    E = pool.matrix
    config = learner_config(campaign, E.shape[1], E.shape[0])
    fingerprint = hashlib.sha256(
        json.dumps([config.to_dict(), pool.key], sort_keys=True).encode()
    ).hexdigest()
    # Evaluation items are never trained on (docs/platform.md, "The evaluation set").
    held_out = evaluation.item_ids(campaign)
    training, _ = evaluation.split(consensus(campaign), held_out)
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()

    state, rebuilt = None, True
    if (
        snapshot is not None
        and snapshot.fingerprint == fingerprint
        and snapshot.state
        and training.rows[: len(snapshot.training)] == snapshot.training
    ):
        state = learner.LearnerState.from_bytes(bytes(snapshot.state))
        new_rows = training.rows[len(snapshot.training) :]
        rebuilt = False
    else:
        state = learner.init_state(config, E)
        new_rows = training.rows
    if new_rows:
        rows = pool.rows_of(item_id for item_id, _ in new_rows)
        state = learner.with_labels(state, E[rows], [cls for _, cls in new_rows])
    result = None
    if training.rows:
        state, result = learner.recenter(state)

    exclude = np.zeros(E.shape[0], dtype=bool)
    done_items = (
        Assignment.objects.filter(item__campaign=campaign)
        .filter(Q(state=Assignment.State.LABELED))
        .values_list("item_id", flat=True)
    )
    done_rows = pool.locate(done_items)
    exclude[done_rows[done_rows >= 0]] = True
    held_rows = pool.locate(held_out)  # nor queried: they are served at their own rate
    exclude[held_rows[held_rows >= 0]] = True
    ranked: list[int] = []
    if not exclude.all():
        k = min(settings.CARVE_QUEUE_LENGTH, int((~exclude).sum()))
        rng = np.random.default_rng([campaign.seed, state.round])
        picked = learner.query(state, E, k=k, rng=rng, exclude=exclude)
        ranked = [int(pool.items[i]) for i in picked.indices]
    index_to_item = [item_id for item_id, _ in training.rows]
    conflicts = [
        sorted({index_to_item[i] for i in group}) for group in (result.conflicts if result else ())
    ]
    # The temperature the last measurement fitted (docs/platform.md, "Suggestions"): refitting
    # costs K fold solves, so it is done off this path, by measure_learner.
    same = snapshot is not None and snapshot.fingerprint == fingerprint
    calibration = dict(snapshot.calibration or {}) if same and snapshot is not None else {}
    suggestions = _suggestions(state, pool, ranked, training.rows, calibration)
    fields = {
        "version": version,
        "fingerprint": fingerprint,
        "state": state.to_bytes(),
        "training": training.rows,
        "queue": ranked,
        "conflicts": conflicts,
        "suspects": [index_to_item[i] for i in (result.suspects if result else ())],
        "center_status": result.status.value if result else "",
        "message": result.message if result else "No labels yet: items are served in pool order.",
        "solver": result.solver if result else "",
        "n_labels": len(training.rows),
        "round": state.round,
        "seconds": time.perf_counter() - started,
        "rebuilt": rebuilt,
        "error": "",
        "suggestions": suggestions,
    }
    if not same:  # other settings or embeddings: the old temperature does not apply
        fields.update(calibration={}, estimate={})
    measure = (
        result is not None
        and result.status.value in MEASURABLE
        and _due_for_measure(campaign, len(training.rows))
    )
    with transaction.atomic():
        Campaign.objects.select_for_update().filter(pk=campaign_id).exists()
        current = LearnerSnapshot.objects.filter(campaign=campaign).first()
        if current is not None and current.version > version:
            return UpdateOutcome("stale")  # a run that started later already wrote
        saved, _ = LearnerSnapshot.objects.update_or_create(campaign=campaign, defaults=fields)
        # Checked again under the campaign lock: an update running at the same time (two
        # worker processes) may have recorded a point a label or two away meanwhile.
        if measure:
            queue.send_on_commit(queue.MEASURE_LEARNER, campaign_id)
    logger.info(
        "learner of campaign %s: %d labels, %s, queue %d, %.2f s (%s)",
        campaign_id,
        len(training.rows),
        fields["center_status"] or "no centre",
        len(ranked),
        fields["seconds"],
        "rebuilt" if rebuilt else "incremental",
    )
    return UpdateOutcome("updated", saved)


def _calibration(campaign: Campaign, state: learner.LearnerState) -> dict[str, Any]:
    """The centre network's temperature and cross-validated accuracy (docs/learner.md,
    "Calibration"), as stored in ``LearnerSnapshot.calibration``; ``labels`` is the label
    count it was fitted at."""
    n = state.n_labels
    fitted = calibrate(state, np.random.default_rng([campaign.seed, 11, n]))
    return {**fitted.to_dict(), "labels": n}


def _estimate(calibration: dict[str, Any]) -> dict[str, Any]:
    """``LearnerSnapshot.estimate``: the out-of-fold accuracy of the calibration, or {}."""
    if calibration.get("status") != CalibrationStatus.FITTED.value:
        return {}
    return {
        "accuracy": calibration["accuracy"],
        "n": calibration["n_labels"],
        "folds": calibration["n_folds"],
    }


def _suggestions(
    state: learner.LearnerState,
    pool: Pool,
    ranked: list[int],
    training: list[list[Any]],
    calibration: dict[str, Any],
) -> dict[str, list[Any]]:
    """``LearnerSnapshot.suggestions`` for the queued items: ``{item id: [class index,
    calibrated probability of it, reason]}`` (docs/platform.md, "Suggestions"). Before the
    calibration is fitted the probability is None and the reason "learning"."""
    task = state.config.task
    if not ranked or state.center is None or task is learner.Task.REGRESSION:
        return {}
    E = pool.matrix
    rows = pool.rows_of(ranked)
    scores = learner.center_network(state).scores(E[rows])
    cal = Calibration.from_dict(calibration)
    probs = cal.probabilities(scores, task)
    predicted = probs.argmax(axis=1)
    if not cal.fitted:
        pairs = zip(ranked, predicted, strict=True)
        return {str(item): [int(c), None, "learning"] for item, c in pairs}
    labeled = pool.locate(item_id for item_id, _ in training)
    why = suggest.reasons(probs, E[rows], E[labeled[labeled >= 0]])
    return {
        str(item): [int(c), round(float(p[c]), 4), reason]
        for item, c, p, reason in zip(ranked, predicted, probs, why, strict=True)
    }


def _due_for_measure(campaign: Campaign, n_labels: int) -> bool:
    """Measure at log-spaced label counts (every 5, then every 10%): the diagnostics sample
    the version space and cost more than a warm recentre, so not after every label."""
    last = (
        LearnerPoint.objects.filter(campaign=campaign)
        .order_by("-n_labels")
        .values_list("n_labels", flat=True)
        .first()
    )
    return last is None or abs(n_labels - last) >= max(5, last // 10)


#: Centre statuses whose network is worth measuring (the centre of the labels, or close to it).
MEASURABLE = (
    learner.CenterStatus.OPTIMAL.value,
    learner.CenterStatus.CONFLICTS_EXCLUDED.value,
    learner.CenterStatus.MAX_ITER.value,
)


def measure_learner(campaign_id: int) -> LearnerPoint | None:
    """Record a learning-curve point for the stored learner if one is due: the centre
    network's accuracy on held-out gold items, and the diagnostics (which sample the version
    space: the costly part, kept out of :func:`update_learner`)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    snapshot = LearnerSnapshot.objects.filter(campaign_id=campaign_id).first()
    if campaign is None or snapshot is None or not snapshot.state:
        return None
    if snapshot.center_status not in MEASURABLE:
        return None
    if not _due_for_measure(campaign, len(snapshot.training)):
        return None
    pool = embeddings(campaign)
    if pool is None:
        return None
    state = learner.LearnerState.from_bytes(bytes(snapshot.state))
    point = _measure(campaign, state, pool, snapshot.training)
    # Refitted here, at the curve's log-spaced label counts, not in every update: it costs K
    # centre solves (docs/learner.md, "Calibration"). Its out-of-fold accuracy is the
    # cross-validated estimate of the same learner.
    calibration = _calibration(campaign, state)
    estimate = _estimate(calibration)
    point.cv_accuracy = estimate.get("accuracy")
    with transaction.atomic():
        # Checked again under the campaign lock: another measurement may have recorded a
        # point a label or two away meanwhile.
        Campaign.objects.select_for_update().filter(pk=campaign_id).exists()
        if not _due_for_measure(campaign, point.n_labels):
            return None
        point.save()
        # A later update of the same settings keeps it; one with other settings clears it.
        LearnerSnapshot.objects.filter(
            campaign_id=campaign_id, fingerprint=snapshot.fingerprint
        ).update(calibration=calibration, estimate=estimate)
        if stop_flipped(campaign_id, point):
            n_labels = point.n_labels
            transaction.on_commit(
                lambda: signals.stop_suggested.send(
                    sender=LearnerPoint,
                    campaign_id=campaign_id,
                    n_labels=n_labels,
                    estimate=estimate,
                ),
                robust=True,
            )
    return point


def stop_flipped(campaign_id: int, point: LearnerPoint) -> bool:
    """Whether the stop rule says stop with the new curve point ``point`` and did not without
    it: the moment ``signals.stop_suggested`` is sent (docs/platform.md, "Webhooks"). Nothing
    is stored for it; the curve before the point is the previous state."""
    curve = list(LearnerPoint.objects.filter(campaign_id=campaign_id).exclude(n_labels=0))
    before = [p for p in curve if p.pk != point.pk]
    return evaluation.stop_estimate(curve).stop and not evaluation.stop_estimate(before).stop


def _measure(
    campaign: Campaign,
    state: learner.LearnerState,
    pool: Pool,
    rows: list[list[Any]],
) -> LearnerPoint:
    """Accuracy of the centre network on held-out gold items, and the diagnostics."""
    point = LearnerPoint(campaign=campaign, n_labels=len(rows))
    trained = {item_id for item_id, _ in rows}
    index = {name: i for i, name in enumerate(campaign.labels)}
    gold = [
        (pk, index[g])
        for pk, g in Item.objects.filter(campaign=campaign)
        .exclude(gold="")
        .values_list("pk", "gold")
        if pk not in trained and g in index
    ]
    gold_rows = pool.locate(pk for pk, _ in gold)
    known = gold_rows >= 0
    if known.any():
        predicted = learner.center_network(state).predict(pool.matrix[gold_rows[known]])
        truth = np.array([g for _, g in gold])[known]
        point.gold_accuracy = float(np.mean(predicted == truth))
        point.n_gold = int(known.sum())
    # The evaluation set's final labels, with a Wilson interval (docs/platform.md, "The
    # evaluation set").
    _, held = evaluation.split(consensus(campaign), evaluation.item_ids(campaign))
    held_rows, truth_of = evaluation.locate_truth(held, pool.locate)
    if truth_of:
        measured = evaluation.score(learner.center_network(state), pool.matrix, held_rows, truth_of)
        point.eval_accuracy, point.eval_low, point.eval_high = (
            measured.accuracy,
            measured.low,
            measured.high,
        )
        point.n_eval = measured.n
    diag = learner.diagnostics(
        state, pool.matrix, rng=np.random.default_rng([campaign.seed, 7, state.round])
    )
    point.log_volume, point.disagreement = float(diag.log_volume), float(diag.disagreement)
    point.threshold = float(diag.threshold)
    return point


def is_behind(campaign_id: int) -> bool:
    """Whether labels changed after the stored learner was computed."""
    return Campaign.objects.filter(_behind(), pk=campaign_id).exists()


def _behind() -> Q:
    """Campaigns whose learner has not seen their latest label change."""
    return (
        Q(learner_pending=True)
        | Q(learner__version__lt=F("label_version"))
        | Q(learner__isnull=True, label_version__gt=0)
    )


def nudge(campaign: Campaign, after: float | None = None) -> bool:
    """Send the learner update again if the learner has been behind the labels for ``after``
    seconds (default CARVE_JOB_STALE_SECONDS): the broker was down, or a worker died before
    or during the update. At most once per period; a broker error is logged, never raised.
    Returns whether sent. (A run still going only answers "busy" to the extra message.)"""
    requested = campaign.learner_requested_at
    cut = stale_before() if after is None else timezone.now() - timedelta(seconds=after)
    if requested is None or requested >= cut:
        return False
    if not Campaign.objects.filter(_behind(), pk=campaign.pk).exists():
        return False
    resent = Campaign.objects.filter(pk=campaign.pk, learner_requested_at=requested).update(
        learner_requested_at=timezone.now()
    )
    if not resent:
        return False
    return queue.try_send(queue.UPDATE_LEARNER, campaign.pk)


def record_failure(campaign_id: int, exc: BaseException) -> None:
    """Show a failed update on the dashboard (the stored state stays as it was)."""
    message = error_text(exc)
    if not LearnerSnapshot.objects.filter(campaign_id=campaign_id).update(error=message):
        LearnerSnapshot.objects.create(campaign_id=campaign_id, state=b"", error=message)


def ranked_queue(campaign: Campaign) -> list[int]:
    """The item ids the learner ranks first (empty before its first update)."""
    stored = LearnerSnapshot.objects.filter(campaign=campaign).values_list("queue", flat=True)
    return list(stored.first() or [])


def pending_campaigns() -> list[int]:
    """Campaigns whose learner is behind their labels: what a starting worker re-sends."""
    return list(Campaign.objects.filter(_behind()).values_list("pk", flat=True).distinct())
