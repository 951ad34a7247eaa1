"""Work that looks stuck is sent again, whichever page anyone opens (docs/platform.md,
"Reliability").

A message can be lost: the broker was down when it was sent, or Redis restarted with it
queued, or the worker that held it was killed. The database still says the work is pending,
so every worker runs :func:`sweep` every CARVE_RESEND_SECONDS from a timer thread: each
embedding job, import job, export job, model version, learner update and webhook delivery
that waited too long is sent again, at most once per period whatever the number of workers
(the job modules' ``nudge`` functions move ``sent_at`` with a conditional UPDATE), and so is
a near-duplicate check (once per period per worker: an upload has no ``sent_at``). Extra
messages are harmless: every task claims its work first.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from labeling import campaign_learner, model_versions, near_duplicates
from labeling.embeddings import jobs as embedding_jobs
from labeling.exports import jobs as export_jobs
from labeling.imports import jobs as import_jobs
from labeling.models import Campaign, EmbeddingJob, ExportJob, ImportJob, JobStatus
from labeling.webhooks import delivery as webhook_delivery

logger = logging.getLogger(__name__)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def sweep() -> int:
    """Send every stuck piece of work again; returns how many messages were sent."""
    sent = 0
    for job in EmbeddingJob.objects.filter(status__in=ACTIVE):
        sent += embedding_jobs.nudge(job)
    for imported in ImportJob.objects.filter(status__in=ACTIVE).defer("data"):
        sent += import_jobs.nudge(imported)
    for exported in ExportJob.objects.filter(status__in=ACTIVE):
        sent += export_jobs.nudge(exported)
    pending = model_versions.pending_versions()
    for campaign in Campaign.objects.filter(models__pk__in=pending).distinct():
        sent += model_versions.nudge(campaign)
    behind = campaign_learner.pending_campaigns()
    for campaign in Campaign.objects.filter(pk__in=behind):
        sent += campaign_learner.nudge(campaign, after=settings.CARVE_RESEND_SECONDS)
    sent += webhook_delivery.sweep()  # docs/platform.md, "Webhooks"
    # A lost near-duplicate check: sent again unless an embedding job of the campaign is
    # still active (its end sends the check; docs/platform.md, "Near-duplicates").
    waiting = near_duplicates.pending_campaigns(older_than=settings.CARVE_RESEND_SECONDS)
    busy = set(
        EmbeddingJob.objects.filter(campaign_id__in=waiting, status__in=ACTIVE).values_list(
            "campaign_id", flat=True
        )
    )
    sent += sum(near_duplicates.request_check(c) for c in waiting if c not in busy)
    return sent


def _loop(stop: threading.Event, period: float) -> None:
    while not stop.wait(period):
        try:
            close_old_connections()
            sent = sweep()
            if sent:
                logger.info("re-sent %d stuck job(s)", sent)
        except DatabaseError:
            logger.warning("could not look for stuck jobs (database down?)", exc_info=True)
        except Exception:  # the timer must outlive any one failure
            logger.exception("the resend sweep failed")
    connection.close()


def start_timer(period: float | None = None) -> threading.Event | None:
    """Run :func:`sweep` every ``period`` seconds (CARVE_RESEND_SECONDS; 0 turns it off) in
    a daemon thread of this process; returns the event that stops it."""
    period = settings.CARVE_RESEND_SECONDS if period is None else period
    if not period:
        return None
    stop = threading.Event()
    threading.Thread(target=_loop, args=(stop, period), name="carve-resend", daemon=True).start()
    return stop
