"""Model versions: fit the final model on all labels, measure it, store it numbered.

Two candidates (DESIGN §2): the convex group-lasso fit mapped to a ReLU network, and the raw
analytic centre as a network. The one with the better accuracy on held-out gold items (gold
items that no annotator label trained) is stored as the version's network; without gold to
compare on, the centre is kept (as accurate as the convex fit on the real-data benchmark and
~20x cheaper; docs/benchmarks.md). Both scores are kept in ``metrics``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

import learner
from labeling import learning
from labeling.models import Campaign, Item, LearnerSnapshot, ModelVersion

logger = logging.getLogger(__name__)
Status = ModelVersion.Status


def request_retrain(
    campaign: Campaign, *, trigger: str = "manual", user: Any = None
) -> ModelVersion:
    """Create the next numbered version (QUEUED) and send the task on commit."""
    from labeling.tasks import retrain as task

    for _ in range(3):  # two requests at once may pick the same number: try the next
        number = (campaign.models.aggregate(m=Max("number"))["m"] or 0) + 1
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    campaign=campaign, number=number, trigger=trigger, created_by=user
                )
        except IntegrityError:
            continue
        version_id = version.pk
        transaction.on_commit(lambda: task.delay(version_id), robust=True)  # noqa: B023
        return version
    raise RuntimeError("could not allocate a model version number")


def maybe_auto_retrain(campaign: Campaign, n_labels: int) -> ModelVersion | None:
    """Queue a version when the label count crossed a multiple of ``retrain_every``."""
    every = campaign.retrain_every
    if not every or n_labels < every:
        return None
    last = campaign.models.filter(trigger="auto").aggregate(m=Max("n_labels"))["m"] or 0
    if n_labels // every <= last // every:
        return None
    version = request_retrain(campaign, trigger="auto")
    ModelVersion.objects.filter(pk=version.pk).update(n_labels=n_labels)
    return version


def _gold_accuracy(net: learner.ReLUNetwork, E: np.ndarray, gold: list[tuple[int, int]]) -> float:
    predicted = net.predict(E[[row for row, _ in gold]])
    return float(np.mean(predicted == np.array([cls for _, cls in gold])))


def retrain(version_id: int) -> str:
    """Fit version ``version_id`` (claimed with a conditional UPDATE; idempotent)."""
    claimed = ModelVersion.objects.filter(pk=version_id, status=Status.QUEUED).update(
        status=Status.RUNNING
    )
    if not claimed:
        return "nothing"
    version = ModelVersion.objects.select_related("campaign").get(pk=version_id)
    try:
        return _fit(version)
    except Exception as exc:
        ModelVersion.objects.filter(pk=version_id).update(
            status=Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        raise


def _fit(version: ModelVersion) -> str:
    campaign = version.campaign
    learning.update_learner(campaign.pk)  # train on every label in the database now
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()
    pool = learning.embeddings(campaign)
    if snapshot is None or pool is None or not snapshot.training:
        ModelVersion.objects.filter(pk=version.pk).update(
            status=Status.FAILED,
            error="Nothing to train on yet: no labels, or the embeddings are not ready.",
            finished_at=timezone.now(),
        )
        return "failed"
    E, row_of, _ = pool
    state = learner.LearnerState.from_bytes(bytes(snapshot.state))
    trained = {item_id for _, item_id, _ in snapshot.training}
    index = {name: i for i, name in enumerate(campaign.labels)}
    gold = [
        (row_of[pk], index[g])
        for pk, g in Item.objects.filter(campaign=campaign)
        .exclude(gold="")
        .values_list("pk", "gold")
        if pk not in trained and g in index and pk in row_of
    ]
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
    chosen = "convex" if use_convex else "centre"
    net = convex if use_convex and convex is not None else centre
    metrics["gold_accuracy"] = metrics[chosen].get("gold_accuracy")
    done = learning.current_embedding_model(campaign)
    ModelVersion.objects.filter(pk=version.pk).update(
        status=Status.DONE,
        n_labels=len(snapshot.training),
        chosen=chosen,
        metrics=metrics,
        network=net.to_dict(),
        embedding_model=done or "",
        finished_at=timezone.now(),
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
