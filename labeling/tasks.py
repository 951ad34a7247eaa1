"""Celery tasks: thin shells around the job modules, and what follows what.

An import writes items and requests their embedding; a finished embedding job requests a
learner update; a learner update that crosses ``retrain_every`` labels queues a model version.
Each task takes ids, is idempotent, and leaves its outcome on a database row. Messages are
sent through :mod:`labeling.queue` (by these tasks' names).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction

from labeling import campaign_learner, model_versions, near_duplicates, queue, resend
from labeling.embeddings import jobs as embedding_jobs
from labeling.exports import jobs as export_jobs
from labeling.imports import jobs as import_jobs
from labeling.jobrows import Outcome
from labeling.models import EmbeddingJob
from labeling.webhooks import delivery as webhook_delivery

logger = logging.getLogger(__name__)

# Every task here is idempotent, so it is acknowledged only when done and redelivered if its
# worker dies. Only transient database trouble (a lost connection, "database is locked") is
# retried, after the task hands its row back; anything else marks the row FAILED. The retries
# wait 2, 4, 8, 16, 32, 60, 60 and 60 s: about four minutes in all, so a database restart (a
# PostgreSQL restart takes ~10 s; a failover up to a minute or two) is outlasted.
IDEMPOTENT: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": False,
    "max_retries": 8,
}


@shared_task(bind=True, **IDEMPOTENT)
def embed_campaign(self: Any, job_id: int) -> str:
    """Run embedding job ``job_id`` (:func:`labeling.embeddings.jobs.run_embedding_job`);
    when it is done, the campaign's learner is brought up to date over the full pool.

    When another live worker holds the job (or another job of its campaign), look again after
    CARVE_JOB_STALE_SECONDS: if that worker has died meanwhile, its claim is stale by then.
    """
    outcome = embedding_jobs.run_embedding_job(job_id, worker=self.request.hostname or "")
    if outcome is Outcome.BUSY:
        queue.send(queue.EMBED, job_id, countdown=settings.CARVE_JOB_STALE_SECONDS + 1)
    elif outcome is Outcome.DONE:
        _embedded(job_id)
    return outcome.value


@shared_task(bind=True, **IDEMPOTENT)
def embed_chunk(self: Any, job_id: int) -> str:
    """Embed one more chunk of running job ``job_id``
    (:func:`labeling.embeddings.jobs.help_embedding_job`): how several workers share a job."""
    outcome = embedding_jobs.help_embedding_job(job_id, worker=self.request.hostname or "")
    if outcome is Outcome.DONE:
        _embedded(job_id)
    return outcome.value


def _embedded(job_id: int) -> None:
    """A job is done: bring the campaign's learner up to date over the full pool."""
    job = EmbeddingJob.objects.filter(pk=job_id).values_list("campaign_id", flat=True)
    campaign_id = job.first()
    if campaign_id is not None:  # (None: the campaign was deleted meanwhile)
        with transaction.atomic():
            campaign_learner.request_update(campaign_id)
        # An upload imported with a near-duplicate threshold is checked once embedded
        # (docs/platform.md, "Near-duplicates").
        near_duplicates.request_check(campaign_id)


@shared_task(bind=True, **IDEMPOTENT)
def import_items(self: Any, job_id: int) -> str:
    """Run bulk import job ``job_id`` (:func:`labeling.imports.jobs.run_import_job`); a job
    another run holds is looked at again once that run would count as dead (after the hard
    time limit), so a run that died is finished even if nobody polls."""
    outcome = import_jobs.run_import_job(job_id, worker=self.request.hostname or "")
    if outcome is Outcome.BUSY:
        queue.send(queue.IMPORT, job_id, countdown=settings.CELERY_TASK_TIME_LIMIT + 61)
    return outcome.value


@shared_task(bind=True, **IDEMPOTENT)
def export_campaign(self: Any, job_id: int) -> str:
    """Run export job ``job_id`` (:func:`labeling.exports.jobs.run_export_job`); a job another
    live worker holds is looked at again once its heartbeat would be stale, so a run that died
    is taken over even if nobody polls."""
    outcome = export_jobs.run_export_job(job_id, worker=self.request.hostname or "")
    if outcome is Outcome.BUSY:
        queue.send(queue.EXPORT, job_id, countdown=settings.CARVE_JOB_STALE_SECONDS + 1)
    return outcome.value


@shared_task(bind=False, **IDEMPOTENT)
def update_learner(campaign_id: int) -> str:
    """Bring a campaign's learner up to date (:func:`labeling.campaign_learner.update_learner`),
    then queue a model version if the labels crossed a multiple of ``retrain_every``.

    Idempotent: it reads the labels from the database each time, and a run that finishes after
    a newer one does not overwrite it. While another run of the same campaign holds the
    learner this one ends at once ("busy"); that run sends the update again if labels arrived
    while it worked.
    """
    try:
        outcome = campaign_learner.update_learner(campaign_id)
        if outcome.status == "updated" and outcome.snapshot is not None:
            model_versions.maybe_auto_retrain(campaign_id, outcome.snapshot.n_labels)
    except (OperationalError, InterfaceError):
        raise  # retried
    except Exception as exc:
        campaign_learner.record_failure(campaign_id, exc)
        raise
    if outcome.status == "updated" and campaign_learner.is_behind(campaign_id):
        queue.try_send(queue.UPDATE_LEARNER, campaign_id)
    return outcome.status


@shared_task(bind=False, **IDEMPOTENT)
def measure_learner(campaign_id: int) -> str:
    """Record the learning-curve point of the stored learner, if one is due
    (:func:`labeling.campaign_learner.measure_learner`)."""
    return "measured" if campaign_learner.measure_learner(campaign_id) else "nothing"


@shared_task(bind=False, **IDEMPOTENT)
def check_near_duplicates(campaign_id: int) -> str:
    """Look for near-duplicates in the campaign's unchecked uploads once they are embedded
    (:func:`labeling.near_duplicates.check_campaign`); each upload is checked once."""
    return f"{near_duplicates.check_campaign(campaign_id)} pair(s)"


@shared_task(bind=False, **IDEMPOTENT)
def retrain(version_id: int) -> str:
    """Fit model version ``version_id`` (:func:`labeling.model_versions.retrain`)."""
    return model_versions.retrain(version_id)


@shared_task(bind=False, **IDEMPOTENT)
def deliver_webhook(delivery_id: int) -> str:
    """Send webhook delivery ``delivery_id`` if it is pending and due
    (:func:`labeling.webhooks.delivery.deliver`; docs/platform.md, "Webhooks")."""
    return webhook_delivery.deliver(delivery_id)


@worker_ready.connect
def resume_pending_jobs(sender: Any = None, **kwargs: Any) -> None:
    """Re-send every unfinished job when a worker starts.

    A worker killed outright leaves its message unacknowledged in Redis until the visibility
    timeout (hours); the job row says the work is pending, so it is sent again now. Extra
    messages are harmless: only one run can claim a job, and a RUNNING job whose worker is
    alive answers BUSY until it ends. (Pages and API polls re-send stuck jobs too: the
    ``nudge`` functions of the job modules.)
    """
    lookups: dict[str, Callable[[], list[int]]] = {
        queue.EMBED: lambda: [pk for pk, _ in embedding_jobs.pending_jobs()],
        queue.IMPORT: import_jobs.pending_imports,
        queue.EXPORT: export_jobs.pending_exports,
        queue.RETRAIN: model_versions.pending_versions,
        queue.UPDATE_LEARNER: campaign_learner.pending_campaigns,
        queue.NEAR_DUPLICATES: near_duplicates.pending_campaigns,
    }
    sent: dict[str, int] = {}
    for task, pending in lookups.items():
        try:
            ids = pending()
        except DatabaseError:  # not migrated yet, or the database is down: nothing to resume
            logger.warning("could not look for pending %s work", task, exc_info=True)
            continue
        sent[task] = sum(queue.try_send(task, pk) for pk in ids)
    if any(sent.values()):
        logger.info("re-sent pending work: %s", sent)


@worker_ready.connect
def start_resend_timer(sender: Any = None, **kwargs: Any) -> None:
    """From now on, send whatever looks stuck again every CARVE_RESEND_SECONDS
    (:mod:`labeling.resend`)."""
    resend.start_timer()
