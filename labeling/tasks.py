"""Celery tasks. Each takes ids, is idempotent, and leaves its outcome on a database row."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from labeling import jobs, learning

logger = logging.getLogger(__name__)

# Every task here is idempotent, so it is acknowledged only when done and redelivered if its
# worker dies. Only transient database trouble (a lost connection, "database is locked") is
# retried, after the task hands its row back; anything else marks the row FAILED.
IDEMPOTENT: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "max_retries": 5,
}


@shared_task(bind=True, **IDEMPOTENT)
def embed_campaign(self: Any, job_id: int) -> str:
    """Run embedding job ``job_id`` (see :func:`labeling.jobs.run_embedding_job`).

    When another live worker holds the job (or another job of its campaign), look again after
    CARVE_JOB_STALE_SECONDS: if that worker has died meanwhile, its claim is stale by then.
    """
    outcome = jobs.run_embedding_job(job_id, worker=self.request.hostname or "")
    if outcome is jobs.Outcome.BUSY:
        embed_campaign.apply_async((job_id,), countdown=settings.CARVE_JOB_STALE_SECONDS + 1)
    return outcome.value


@shared_task(bind=True, **IDEMPOTENT)
def import_items(self: Any, job_id: int) -> str:
    """Run bulk import job ``job_id`` (see :func:`labeling.imports.run_import_job`); a job
    another run holds is looked at again once that run would count as dead (after the hard
    time limit), so a run that died is finished even if nobody polls."""
    from labeling import imports

    outcome = imports.run_import_job(job_id, worker=self.request.hostname or "")
    if outcome is jobs.Outcome.BUSY:
        import_items.apply_async((job_id,), countdown=settings.CELERY_TASK_TIME_LIMIT + 61)
    return outcome.value


@shared_task(bind=False, **IDEMPOTENT)
def update_learner(campaign_id: int) -> str:
    """Bring a campaign's learner up to date (:func:`labeling.learning.update_learner`).

    Idempotent: it reads the labels from the database each time, and a run that finishes after
    a newer one does not overwrite it.
    """
    try:
        return learning.update_learner(campaign_id).status
    except (OperationalError, InterfaceError):
        raise  # retried
    except Exception as exc:
        learning.record_failure(campaign_id, exc)
        raise


@shared_task(bind=False, **IDEMPOTENT)
def retrain(version_id: int) -> str:
    """Fit model version ``version_id`` (:func:`labeling.training.retrain`)."""
    from labeling import training

    return training.retrain(version_id)


@worker_ready.connect
def resume_pending_jobs(sender: Any = None, **kwargs: Any) -> None:
    """Re-send every unfinished job when a worker starts.

    A worker killed outright leaves its message unacknowledged in Redis until the visibility
    timeout (hours); the job row says the work is pending, so it is sent again now. Extra
    messages are harmless: only one run can claim a job, and a RUNNING job whose worker is
    alive answers BUSY until it ends. (The campaign page re-sends stuck jobs too, see
    :func:`labeling.jobs.nudge`.)
    """
    try:
        pending = jobs.pending_jobs()
    except DatabaseError:  # not migrated yet, or the database is down: nothing to resume
        logger.warning("could not look for pending embedding jobs", exc_info=True)
        return
    for job_id, _status in pending:
        try:
            embed_campaign.delay(job_id)
        except BrokerError:
            logger.warning("could not re-send embedding job %s", job_id, exc_info=True)
    try:
        waiting = list(learning.pending_campaigns())
        from labeling import imports, training

        versions = training.pending_versions()
        waiting_imports = imports.pending_imports()
    except DatabaseError:
        waiting, versions, waiting_imports = [], [], []
    for job_id in waiting_imports:
        try:
            import_items.delay(job_id)
        except BrokerError:
            logger.warning("could not re-send import job %s", job_id, exc_info=True)
    for version_id in versions:
        try:
            retrain.delay(version_id)
        except BrokerError:
            logger.warning("could not re-send model version %s", version_id, exc_info=True)
    for campaign_id in waiting:
        try:
            update_learner.delay(campaign_id)
        except BrokerError:
            logger.warning("could not re-send learner update %s", campaign_id, exc_info=True)
    if pending:
        logger.info("re-sent %d pending embedding job(s)", len(pending))
