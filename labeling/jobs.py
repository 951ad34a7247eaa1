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

import contextlib
import enum
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from labeling.embedding import Embedder, EmbeddingStore, make_embedder
from labeling.jobrows import error_text
from labeling.models import Campaign, EmbeddingJob, Item

logger = logging.getLogger(__name__)
Status = EmbeddingJob.Status


class Outcome(enum.StrEnum):
    DONE = "done"
    FAILED = "failed"
    # Another live worker holds this job, or another job of the same campaign: look again later.
    BUSY = "busy"
    # The job is finished (or gone): nothing to do. Duplicate deliveries end here.
    NOTHING = "nothing"
    # This worker's claim was taken over (it was presumed dead); it stopped without writing.
    LOST = "lost"


class LostClaim(Exception):
    """Raised inside a run when the job row no longer carries this run's attempt."""


def embedder_from_settings() -> Embedder:
    return make_embedder(
        settings.CARVE_EMBEDDER,
        settings.CARVE_EMBEDDING_MODEL,
        settings.CARVE_EMBEDDING_BATCH,
        fake_delay=settings.CARVE_FAKE_EMBED_DELAY,
    )


def model_name_from_settings() -> str:
    if settings.CARVE_EMBEDDER == "fake":
        return "fake-32"
    return str(settings.CARVE_EMBEDDING_MODEL)


def store_for(campaign_id: int, model_name: str) -> EmbeddingStore:
    return EmbeddingStore.for_campaign(settings.CARVE_DATA_DIR, campaign_id, model_name)


def _send_on_commit(job_id: int) -> None:
    from labeling.tasks import embed_campaign

    def send() -> None:
        EmbeddingJob.objects.filter(pk=job_id).update(sent_at=timezone.now())
        embed_campaign.delay(job_id)

    # robust: a broker that is down must not turn a committed import into an error page; the
    # job stays QUEUED and is re-sent by nudge() or when a worker starts.
    transaction.on_commit(send, robust=True)


def request_embedding(campaign: Campaign) -> EmbeddingJob:
    """A QUEUED job for ``campaign`` (an existing one is reused), sent to Celery on commit.

    Call inside the transaction that created the items: if it rolls back, nothing is sent.
    """
    job = EmbeddingJob.objects.filter(campaign=campaign, status=Status.QUEUED).first()
    if job is None:
        job = EmbeddingJob.objects.create(campaign=campaign, model_name=model_name_from_settings())
    _send_on_commit(job.pk)
    return job


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS)


def nudge(job: EmbeddingJob) -> bool:
    """Send ``job`` again if it looks stuck: QUEUED with no message sent for
    JOB_STALE_SECONDS (the broker was down, or the message went with a killed worker), or
    RUNNING without a heartbeat for that long. At most once per JOB_STALE_SECONDS, however
    many pages poll. Returns whether a message was sent."""
    stale = _stale_before()
    stuck = (job.status == Status.QUEUED and (job.sent_at is None or job.sent_at < stale)) or (
        job.status == Status.RUNNING and job.heartbeat_at is not None and job.heartbeat_at < stale
    )
    if not stuck:
        return False
    last = Q(sent_at__isnull=True) if job.sent_at is None else Q(sent_at=job.sent_at)
    if EmbeddingJob.objects.filter(last, pk=job.pk).update(sent_at=timezone.now()) != 1:
        return False  # another request re-sent it just now
    from labeling.tasks import embed_campaign

    embed_campaign.delay(job.pk)
    logger.info("embedding job %s looked stuck (%s); sent again", job.pk, job.status)
    return True


def claim(job_id: int, worker: str) -> EmbeddingJob | Outcome:
    """Take the job with a conditional UPDATE; returns the claimed row or why not.

    Claimable: QUEUED, or RUNNING with a stale heartbeat (its worker died) and fewer than
    JOB_MAX_ATTEMPTS attempts; a dead job that used them all becomes FAILED instead. Another
    job of the same campaign that is running makes this one BUSY; one whose worker died is
    superseded (FAILED, and its attempt bumped so a zombie run stops at its next write).
    """
    stale, now = _stale_before(), timezone.now()
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
            # Transient: hand the job back for the task's retry (if the database lets us).
            with contextlib.suppress(DatabaseError):
                EmbeddingJob.objects.filter(
                    pk=job.pk, status=Status.RUNNING, attempt=job.attempt
                ).update(status=Status.QUEUED)
            raise
        except Exception as exc:  # incl. SoftTimeLimitExceeded: the row must say why
            message = error_text(exc)
            EmbeddingJob.objects.filter(pk=job.pk, attempt=job.attempt).update(
                status=Status.FAILED, error=message, finished_at=timezone.now()
            )
            _send_next(campaign_id)
            raise
    _send_next(campaign_id)
    # New embeddings: the learner (re)builds its state and queue over the full pool.
    from labeling import learning

    with transaction.atomic():
        learning.request_update(campaign_id)
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
        _send_on_commit(following)


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
