"""Model versions: fit the final model on all labels, measure it, store it numbered.

Two candidates (docs/learner.md, "Final model"): the convex group-lasso fit mapped to a ReLU
network, and the raw analytic centre as a network. The one with the better accuracy on the
labeled evaluation items (once there are ``evaluation.MIN_LABELS``; docs/platform.md, "The
evaluation set"), else on held-out gold items (gold items that no annotator label trained),
is stored as the version's network; without either to compare on, the centre is kept (as
accurate as the convex fit on the real-data benchmark and ~20x cheaper; docs/benchmarks.md).
Both scores are kept in ``metrics``, the evaluation ones with their Wilson 95 % interval.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone

import learner
from labeling import campaign_learner, evaluation, locks, queue, signals
from labeling.consensus import consensus
from labeling.embeddings.pool import Pool, current_embedding_model, embeddings
from labeling.jobrows import (
    error_text,
    hand_back,
    resend,
    send_on_commit,
    stale_before,
)
from labeling.models import Campaign, Item, LearnerSnapshot, ModelVersion
from learner.calibration import MIN_LABELS as MIN_CALIBRATION_LABELS
from learner.calibration import (
    Calibration,
    CalibrationStatus,
    calibrate,
    fit_temperature,
    log_loss,
)

logger = logging.getLogger(__name__)
Status = ModelVersion.Status


def request_retrain(
    campaign: Campaign, *, trigger: str = "manual", user: Any = None
) -> ModelVersion:
    """Create the next numbered version (QUEUED) and send the task on commit."""
    for _ in range(3):  # two requests at once may pick the same number: try the next
        number = (campaign.models.aggregate(m=Max("number"))["m"] or 0) + 1
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    campaign=campaign, number=number, trigger=trigger, created_by=user
                )
        except IntegrityError:
            continue
        send_on_commit(ModelVersion, version.pk, queue.RETRAIN)
        return version
    raise RuntimeError("could not allocate a model version number")


def maybe_auto_retrain(campaign_id: int, n_labels: int) -> ModelVersion | None:
    """Queue a version when the label count crossed a multiple of ``retrain_every``.

    Under the campaign's row lock, so two learner updates finishing at once queue one version.
    """
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        every = campaign.retrain_every
        if not every or n_labels < every:
            return None
        last = campaign.models.filter(trigger="auto").aggregate(m=Max("n_labels"))["m"] or 0
        if n_labels // every <= last // every:
            return None
        version = request_retrain(campaign, trigger="auto")
        ModelVersion.objects.filter(pk=version.pk).update(n_labels=n_labels)
        return version


def _calibration(
    campaign: Campaign,
    state: learner.LearnerState,
    snapshot: LearnerSnapshot,
    net: learner.ReLUNetwork,
    chosen: str,
    E: np.ndarray,
    held_out: list[tuple[int, int]],
) -> dict[str, Any]:
    """The version's calibration (docs/learner.md, "Calibration"), stored in
    ``metrics["calibration"]`` with ``fitted_on``.

    The centre is calibrated on out-of-fold scores of its training labels (the learner's
    stored fit when it was made at the same label count). The convex fit has no cheap
    out-of-fold scores (a conic program per fold), so it is calibrated on the held-out items
    that chose it (evaluation items, else gold), when there are at least
    ``learner.calibration.MIN_LABELS`` of them; otherwise it is left uncalibrated (T = 1)."""
    if chosen == "centre":
        stored = dict(snapshot.calibration or {})
        if stored.get("status") == "fitted" and stored.get("labels") == state.n_labels:
            return {**stored, "fitted_on": "out-of-fold labels"}
        rng = np.random.default_rng([campaign.seed, 11, state.n_labels])
        fitted = calibrate(state, rng)
        return {**fitted.to_dict(), "labels": state.n_labels, "fitted_on": "out-of-fold labels"}
    if len(held_out) < MIN_CALIBRATION_LABELS:
        return {**Calibration(CalibrationStatus.TOO_FEW_LABELS).to_dict(), "fitted_on": ""}
    scores = net.scores(E[[row for row, _ in held_out]])
    y = np.array([cls for _, cls in held_out])
    temperature, _ = fit_temperature(scores, y, net.task)
    predicted = net.predict(E[[row for row, _ in held_out]])
    fitted = Calibration(
        CalibrationStatus.FITTED,
        temperature=temperature,
        accuracy=float(np.mean(predicted == y)),
        n_labels=len(held_out),
        log_loss_raw=log_loss(scores, y, net.task),
        log_loss=log_loss(scores, y, net.task, temperature),
    )
    return {**fitted.to_dict(), "fitted_on": "held-out items"}


#: Rows per UPDATE of :func:`write_predictions` (3 parameters each: under SQLite's old limit
#: of 999 bound parameters).
PREDICTION_BATCH = 300


def write_predictions(
    campaign: Campaign, net: learner.ReLUNetwork, pool: Pool, calibration: dict[str, Any]
) -> int:
    """Store the version's predicted class and calibrated confidence on every embedded item of
    the campaign (``Item.predicted``, ``Item.confidence``; the items page filters on them).

    The pool is scored in chunks, and each batch is one ``WITH v(id, p, c) AS (VALUES ...)
    UPDATE ... FROM v`` statement (PostgreSQL, and SQLite from 3.33), so a million items
    take a few thousand statements, not a million. Returns the number of items written."""
    if net.task is learner.Task.REGRESSION or not len(pool.items):
        return 0
    cal = Calibration.from_dict(calibration)
    table = Item._meta.db_table
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(pool.items), PREDICTION_BATCH):
            ids = pool.items[start : start + PREDICTION_BATCH]
            probs = cal.probabilities(net.scores(pool.matrix[start : start + len(ids)]), net.task)
            predicted = probs.argmax(axis=1)
            confidence = probs[np.arange(len(ids)), predicted]
            values = ", ".join(["(%s, %s, %s)"] * len(ids))
            params: list[Any] = []
            for pk, cls, conf in zip(ids, predicted, confidence, strict=True):
                params += [int(pk), int(cls), float(conf)]
            cursor.execute(
                f"WITH v(id, p, c) AS (VALUES {values}) "
                f"UPDATE {table} SET predicted = v.p, confidence = v.c FROM v "
                f"WHERE {table}.id = v.id AND {table}.campaign_id = %s",
                [*params, campaign.pk],
            )
            written += len(ids)
    return written


def _gold_accuracy(net: learner.ReLUNetwork, E: np.ndarray, gold: list[tuple[int, int]]) -> float:
    predicted = net.predict(E[[row for row, _ in gold]])
    return float(np.mean(predicted == np.array([cls for _, cls in gold])))


def _lock(version_id: int) -> str:
    return f"version:{version_id}"


def retrain(version_id: int) -> str:
    """Fit version ``version_id``, one run at a time (:mod:`labeling.locks`).

    The run holds the version's lock while it works, so a RUNNING version whose lock is free
    has lost its worker (killed, out of memory): it is taken over at once, and after
    CARVE_JOB_MAX_ATTEMPTS such deaths it is failed with that reason. Duplicate deliveries
    find the lock taken, or the version finished, and do nothing.
    """
    with locks.hold(_lock(version_id)) as mine:
        if not mine:
            return "nothing"  # a live run has it
        max_attempts = settings.CARVE_JOB_MAX_ATTEMPTS
        ModelVersion.objects.filter(
            pk=version_id, status=Status.RUNNING, attempt__gte=max_attempts
        ).update(
            status=Status.FAILED,
            finished_at=timezone.now(),
            error=f"The worker fitting this version stopped {max_attempts} times (killed, "
            "out of memory?). See the worker log; retrain when it is fixed.",
        )
        claimed = ModelVersion.objects.filter(
            pk=version_id, status__in=[Status.QUEUED, Status.RUNNING]
        ).update(status=Status.RUNNING, started_at=timezone.now(), attempt=F("attempt") + 1)
        if not claimed:
            return "nothing"
        version = ModelVersion.objects.select_related("campaign").get(pk=version_id)
        try:
            return _fit(version)
        except (OperationalError, InterfaceError):
            # Transient: hand the version back for the task's retry.
            hand_back(ModelVersion, version_id)
            raise
        except Exception as exc:
            ModelVersion.objects.filter(pk=version_id).update(
                status=Status.FAILED,
                error=error_text(exc),
                finished_at=timezone.now(),
            )
            raise


def pending_versions(campaign: Campaign | None = None) -> list[int]:
    """Versions to (re)send, of ``campaign`` or of all: QUEUED ones, and RUNNING ones whose
    worker is gone (their lock is free)."""
    versions = ModelVersion.objects.all() if campaign is None else campaign.models.all()
    queued = versions.filter(status=Status.QUEUED).values_list("pk", flat=True)
    running = versions.filter(status=Status.RUNNING).values_list("pk", flat=True)
    return [*queued, *(pk for pk in running if locks.is_free(_lock(pk)))]


def nudge(campaign: Campaign) -> int:
    """Re-send the campaign's versions that have waited JOB_STALE_SECONDS since their last
    message (the broker was down, or the worker died). Returns how many were sent."""
    stale, sent = stale_before(), 0
    for version in campaign.models.filter(pk__in=pending_versions(campaign)):
        if version.sent_at is not None and version.sent_at >= stale:
            continue
        sent += resend(ModelVersion, version.pk, version.sent_at, queue.RETRAIN)
    return sent


def _update_learner_now(campaign_id: int) -> campaign_learner.UpdateOutcome:
    """Bring the learner up to date, waiting while another worker runs an update ("busy"):
    that run may have started before the newest labels, and the version must include them.
    Gives up waiting after JOB_STALE_SECONDS (the version then trains on the stored state)."""
    deadline = time.monotonic() + settings.CARVE_JOB_STALE_SECONDS
    while True:
        updated = campaign_learner.update_learner(campaign_id)
        if updated.status != "busy" or time.monotonic() > deadline:
            return updated
        time.sleep(0.2)


def _fit(version: ModelVersion) -> str:
    campaign = version.campaign
    # Train on every label in the database now (and queue the automatic version it may be due).
    updated = _update_learner_now(campaign.pk)
    if updated.status == "updated" and updated.snapshot is not None:
        maybe_auto_retrain(campaign.pk, updated.snapshot.n_labels)
        if campaign_learner.is_behind(campaign.pk):  # updates refused "busy" meanwhile
            queue.try_send(queue.UPDATE_LEARNER, campaign.pk)
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()
    pool = embeddings(campaign)
    if snapshot is None or pool is None or not snapshot.training:
        ModelVersion.objects.filter(pk=version.pk).update(
            status=Status.FAILED,
            error="Nothing to train on yet: no labels, or the embeddings are not ready.",
            finished_at=timezone.now(),
        )
        return "failed"
    E = pool.matrix
    state = learner.LearnerState.from_bytes(bytes(snapshot.state))
    trained = {item_id for item_id, _ in snapshot.training}
    index = {name: i for i, name in enumerate(campaign.labels)}
    held_out = [
        (pk, index[g])
        for pk, g in Item.objects.filter(campaign=campaign)
        .exclude(gold="")
        .values_list("pk", "gold")
        if pk not in trained and g in index
    ]
    gold_rows = pool.locate(pk for pk, _ in held_out)
    gold = [(int(row), cls) for row, (_, cls) in zip(gold_rows, held_out, strict=True) if row >= 0]
    centre = learner.center_network(state)
    metrics: dict[str, Any] = {"n_gold": len(gold), "centre": {}, "convex": {}}
    convex = None
    try:
        convex, fit = learner.fit_network(state)
        metrics["convex"] = {"status": fit.status, "solver": fit.solver, "seconds": fit.seconds}
    except learner.ConvexFitError as exc:
        metrics["convex"] = {"status": "failed", "error": str(exc)}
    if gold:
        metrics["centre"]["gold_accuracy"] = _gold_accuracy(centre, E, gold)
        if convex is not None:
            metrics["convex"]["gold_accuracy"] = _gold_accuracy(convex, E, gold)
    use_convex = (
        convex is not None
        and gold
        and metrics["convex"]["gold_accuracy"] > metrics["centre"]["gold_accuracy"]
    )
    # With evaluation.MIN_LABELS labeled evaluation items, they choose instead: an i.i.d.
    # sample of the pool that no label trained (docs/platform.md, "The evaluation set").
    _, held = evaluation.split(consensus(campaign), evaluation.item_ids(campaign))
    held_rows, truth = evaluation.locate_truth(held, pool.locate)
    metrics["n_eval"] = len(truth)
    if len(truth) >= evaluation.MIN_LABELS:
        scores = {"centre": evaluation.score(centre, E, held_rows, truth)}
        if convex is not None:
            scores["convex"] = evaluation.score(convex, E, held_rows, truth)
        for name, measured in scores.items():
            metrics[name]["evaluation"] = measured.as_dict()
        use_convex = "convex" in scores and scores["convex"].accuracy > scores["centre"].accuracy
        metrics["selected_on"] = "evaluation"
    else:
        metrics["selected_on"] = "gold" if gold else "none"
    chosen = "convex" if use_convex else "centre"
    net = convex if use_convex and convex is not None else centre
    metrics["gold_accuracy"] = metrics[chosen].get("gold_accuracy")
    metrics["evaluation"] = metrics[chosen].get("evaluation")
    # Calibrated probabilities for predict and Item.confidence (docs/platform.md, "Suggestions").
    held_out_rows = (
        list(zip(held_rows.tolist(), truth, strict=True))
        if len(truth) >= evaluation.MIN_LABELS
        else gold
    )
    metrics["calibration"] = _calibration(campaign, state, snapshot, net, chosen, E, held_out_rows)
    done = current_embedding_model(campaign)
    ModelVersion.objects.filter(pk=version.pk).update(
        status=Status.DONE,
        n_labels=len(snapshot.training),
        chosen=chosen,
        metrics=metrics,
        network=net.to_dict(),
        embedding_model=done or "",
        finished_at=timezone.now(),
    )
    if not campaign.models.filter(status=Status.DONE, number__gt=version.number).exists():
        write_predictions(campaign, net, pool, metrics["calibration"])
    # Webhooks hear of it once committed (docs/platform.md, "Webhooks").
    transaction.on_commit(
        lambda: signals.model_trained.send(
            sender=ModelVersion, campaign_id=campaign.pk, model_version_id=version.pk
        ),
        robust=True,
    )
    logger.info(
        "campaign %s model v%s: %d labels, %s chosen, gold accuracy %s",
        campaign.pk,
        version.number,
        len(snapshot.training),
        chosen,
        metrics["gold_accuracy"],
    )
    return "done"
