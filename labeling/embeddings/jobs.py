"""Embedding jobs: request one after an import, claim it, run it in resumable chunks.

The task in :mod:`labeling.tasks` is a thin shell around :func:`run_embedding_job`, so tests
call the body directly and the integration tests run it through a real worker.

Claiming (docs/platform.md, "Embedding jobs"): a job is taken with one conditional UPDATE that
matches only
a QUEUED row, or a RUNNING row whose heartbeat is older than ``CARVE_JOB_STALE_SECONDS`` (its
worker died), and increments ``attempt``. Each later write is conditional on that attempt, so
a worker that was presumed dead and comes back finds zero rows updated and stops. A file lock
on the campaign's cache directory keeps a second run out even while the first one is wrongly
presumed dead. Chunks of embeddings are files named by their rows, so a takeover resumes
after the last finished chunk and no item is embedded into the matrix twice or left out.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from labeling import queue
from labeling.embeddings.embedders import Embedder
from labeling.embeddings.pool import embedder_from_settings, model_name_from_settings, store_for
from labeling.embeddings.store import EmbeddingStore
from labeling.jobrows import (
    LostClaim,
    Outcome,
    error_text,
    hand_back,
    resend,
    send_on_commit,
    stale_before,
)
from labeling.models import Campaign, EmbeddingJob, Item

logger = logging.getLogger(__name__)
Status = EmbeddingJob.Status


def request_embedding(campaign: Campaign) -> EmbeddingJob:
    """A QUEUED job for ``campaign`` (an existing one is reused), sent to Celery on commit.

    Call inside the transaction that created the items: if it rolls back, nothing is sent.
    """
    job = EmbeddingJob.objects.filter(campaign=campaign, status=Status.QUEUED).first()
    if job is None:
        job = EmbeddingJob.objects.create(campaign=campaign, model_name=model_name_from_settings())
    send_on_commit(EmbeddingJob, job.pk, queue.EMBED)
    return job


def nudge(job: EmbeddingJob) -> bool:
    """Send ``job`` again if it looks stuck: QUEUED with no message sent for
    JOB_STALE_SECONDS (the broker was down, or the message went with a killed worker), or
    RUNNING without a heartbeat for that long. At most once per JOB_STALE_SECONDS, however
    many pages poll. Returns whether a message was sent."""
    stale = stale_before()
    stuck = (job.status == Status.QUEUED and (job.sent_at is None or job.sent_at < stale)) or (
        job.status == Status.RUNNING and job.heartbeat_at is not None and job.heartbeat_at < stale
    )
    return stuck and resend(EmbeddingJob, job.pk, job.sent_at, queue.EMBED)


def claim(job_id: int, worker: str) -> EmbeddingJob | Outcome:
    """Take the job with a conditional UPDATE; returns the claimed row or why not.

    Claimable: QUEUED, or RUNNING with a stale heartbeat (its worker died) and fewer than
    JOB_MAX_ATTEMPTS attempts; a dead job that used them all becomes FAILED instead. Another
    job of the same campaign that is running makes this one BUSY; one whose worker died is
    superseded (FAILED, and its attempt bumped so a zombie run stops at its next write).
    """
    stale, now = stale_before(), timezone.now()
    max_attempts = settings.CARVE_JOB_MAX_ATTEMPTS
    with transaction.atomic():
        job = EmbeddingJob.objects.filter(pk=job_id).only("campaign_id", "status").first()
        if job is None or job.status in (Status.DONE, Status.FAILED):
            return Outcome.NOTHING
        # Serialise claims within one campaign (on SQLite the IMMEDIATE transaction does).
        Campaign.objects.select_for_update().filter(pk=job.campaign_id).exists()
        EmbeddingJob.objects.filter(
            pk=job_id, status=Status.RUNNING, heartbeat_at__lt=stale, attempt__gte=max_attempts
        ).update(
            status=Status.FAILED,
            finished_at=now,
            error=f"The worker running this job stopped responding {max_attempts} times "
            "(killed, out of memory?). See the worker log; retry when it is fixed.",
        )
        others = EmbeddingJob.objects.filter(
            campaign_id=job.campaign_id, status=Status.RUNNING
        ).exclude(pk=job_id)
        if others.filter(heartbeat_at__gte=stale).exists():
            return Outcome.BUSY
        others.update(
            status=Status.FAILED,
            attempt=F("attempt") + 1,
            finished_at=now,
            error=f"Superseded by embedding job {job_id} after its worker stopped responding.",
        )
        claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=stale)
        n = EmbeddingJob.objects.filter(claimable, pk=job_id).update(
            status=Status.RUNNING,
            attempt=F("attempt") + 1,
            worker=worker[:200],
            # The worker's settings decide the model; the row records what was used.
            model_name=model_name_from_settings(),
            started_at=now,
            heartbeat_at=now,
            error="",
        )
    if n == 1:
        return EmbeddingJob.objects.get(pk=job_id)
    status = EmbeddingJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
    return Outcome.BUSY if status == Status.RUNNING else Outcome.NOTHING


def _write(job: EmbeddingJob, **fields: object) -> None:
    """Update the claimed row, only while this run still owns it."""
    n = EmbeddingJob.objects.filter(pk=job.pk, status=Status.RUNNING, attempt=job.attempt).update(
        heartbeat_at=timezone.now(), **fields
    )
    if n != 1:
        raise LostClaim(f"embedding job {job.pk} attempt {job.attempt} was taken over")


def run_embedding_job(job_id: int, worker: str = "") -> Outcome:
    """Claim job ``job_id`` and embed every campaign item missing from the cache.

    Failures are written onto the row (status FAILED, ``error``) and the exception re-raised
    so the worker logs it. A lost database connection instead hands the job back (QUEUED)
    for the task's retry. A row that is not claimable returns BUSY or NOTHING.
    """
    campaign_id = (
        EmbeddingJob.objects.filter(pk=job_id).values_list("campaign_id", flat=True).first()
    )
    if campaign_id is None:
        return Outcome.NOTHING
    # The model loads before the claim, so a slow first load cannot look like a dead worker.
    # If it cannot load, the error is recorded on the job once claimed.
    embedder: Embedder | None = None
    try:
        embedder = embedder_from_settings()
    except Exception as exc:
        load_error = exc
    store = store_for(campaign_id, model_name_from_settings())
    # One run per cache directory on this machine, whatever the database says: a worker that
    # was presumed dead but still runs keeps the lock; a dead process releases it.
    with store.exclusive() as locked:
        if not locked:
            return Outcome.BUSY
        claimed = claim(job_id, worker)
        if isinstance(claimed, Outcome):
            return claimed
        job = claimed
        try:
            if embedder is None:
                raise load_error
            _embed(job, embedder, store)
        except LostClaim:
            logger.warning("embedding job %s: claim lost to another worker; stopping", job.pk)
            return Outcome.LOST
        except (OperationalError, InterfaceError):
            hand_back(EmbeddingJob, job.pk, job.attempt)  # transient: for the task's retry
            raise
        except Exception as exc:  # incl. SoftTimeLimitExceeded: the row must say why
            message = error_text(exc)
            EmbeddingJob.objects.filter(pk=job.pk, attempt=job.attempt).update(
                status=Status.FAILED, error=message, finished_at=timezone.now()
            )
            _send_next(campaign_id)
            raise
    _send_next(campaign_id)
    return Outcome.DONE


def _send_next(campaign_id: int) -> None:
    """Start the campaign's next queued job (from an import made during this run) now."""
    following = (
        EmbeddingJob.objects.filter(campaign_id=campaign_id, status=Status.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        send_on_commit(EmbeddingJob, following, queue.EMBED)


def _embed(job: EmbeddingJob, embedder: Embedder, store: EmbeddingStore) -> None:
    rows = list(
        Item.objects.filter(campaign_id=job.campaign_id)
        .order_by("position")
        .values_list("position", "text", "text_sha256")
    )
    if any(position != row for row, (position, _, _) in enumerate(rows)):
        raise RuntimeError("item positions are not 0..n-1; the campaign's items are corrupt")
    keys = [key for _, _, key in rows]
    cached = store.valid_rows(keys, job.model_name)
    _write(job, n_total=len(rows), n_cached=cached, n_done=cached)
    chunks = store.plan(keys, cached, chunk_rows=4 * embedder.batch_size)
    done, reused = cached, 0
    for chunk in chunks:
        if store.has_chunk(chunk):  # written by an earlier attempt that died: reuse it
            reused += chunk.stop - chunk.start
        else:
            vectors = embedder.encode([text for _, text, _ in rows[chunk.start : chunk.stop]])
            _write(job)  # still ours? (the encode may have taken a while)
            store.write_chunk(chunk, vectors)
        done = chunk.stop
        _write(job, n_done=done, device=embedder.device)
    dim = store.finish(keys, cached, chunks, job.model_name) if chunks else _cached_dim(store)
    _write(job, status=Status.DONE, dim=dim, n_done=len(rows), finished_at=timezone.now())
    logger.info(
        "embedding job %s: %d items (%d from cache, %d from an earlier attempt) with %s",
        job.pk,
        len(rows),
        cached,
        reused,
        job.model_name,
    )


def _cached_dim(store: EmbeddingStore) -> int | None:
    manifest = store.manifest()
    dim = manifest.get("dim") if manifest else None
    return dim if isinstance(dim, int) else None


def latest_job(campaign: Campaign) -> EmbeddingJob | None:
    """The job to show: the running one if any (its progress is live), else the newest."""
    running = campaign.embedding_jobs.filter(status=Status.RUNNING).order_by("-pk").first()
    return running or campaign.embedding_jobs.order_by("-created_at", "-pk").first()


def pending_jobs() -> list[tuple[int, str]]:
    """(id, status) of every QUEUED or RUNNING job: what a starting worker re-sends."""
    return list(
        EmbeddingJob.objects.filter(status__in=[Status.QUEUED, Status.RUNNING]).values_list(
            "pk", "status"
        )
    )
