"""Embedding jobs: request one after an import, claim it, run it in resumable chunks.

The task in :mod:`labeling.tasks` is a thin shell around :func:`run_embedding_job`, so tests
call the body directly and the integration tests run it through a real worker.

Claiming (DESIGN §3, STYLE 14): a job is taken with one conditional UPDATE that matches only
a QUEUED row, or a RUNNING row whose heartbeat is older than ``CARVE_JOB_STALE_SECONDS`` (its
worker died), and increments ``attempt``. Each later write is conditional on that attempt, so
a worker that was presumed dead and comes back finds zero rows updated and stops. Chunks of
embeddings are files named by their rows, so a takeover resumes after the last finished chunk
and no item is embedded into the matrix twice or left out.
"""

from __future__ import annotations

import enum
import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from labeling.embedding import Embedder, EmbeddingStore, make_embedder
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


def request_embedding(campaign: Campaign) -> EmbeddingJob:
    """A QUEUED job for ``campaign`` (an existing one is reused), sent to Celery on commit.

    Call inside the transaction that created the items: if it rolls back, nothing is sent.
    If the broker is down, the row stays QUEUED and every worker re-sends queued jobs when it
    starts (:func:`labeling.tasks.resume_pending_jobs`).
    """
    from labeling.tasks import embed_campaign

    job = EmbeddingJob.objects.filter(campaign=campaign, status=Status.QUEUED).first()
    if job is None:
        job = EmbeddingJob.objects.create(campaign=campaign, model_name=model_name_from_settings())
    job_id = job.pk
    transaction.on_commit(lambda: embed_campaign.delay(job_id), robust=True)
    return job


def _stale_before() -> timezone.datetime:
    return timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS)


def claim(job_id: int, worker: str) -> EmbeddingJob | Outcome:
    """Take the job with a conditional UPDATE; returns the claimed row or why not."""
    stale = _stale_before()
    now = timezone.now()
    with transaction.atomic():
        job = EmbeddingJob.objects.filter(pk=job_id).only("campaign_id").first()
        if job is None:
            return Outcome.NOTHING
        # Serialise claims within one campaign: two jobs must never write the same cache.
        Campaign.objects.select_for_update().filter(pk=job.campaign_id).exists()
        busy = (
            EmbeddingJob.objects.filter(
                campaign_id=job.campaign_id, status=Status.RUNNING, heartbeat_at__gte=stale
            )
            .exclude(pk=job_id)
            .exists()
        )
        claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=stale)
        n = (
            0
            if busy
            else EmbeddingJob.objects.filter(claimable, pk=job_id).update(
                status=Status.RUNNING,
                attempt=F("attempt") + 1,
                worker=worker[:200],
                # The worker's settings decide the model; the row records what was used.
                model_name=model_name_from_settings(),
                started_at=now,
                heartbeat_at=now,
                error="",
            )
        )
    if n == 1:
        return EmbeddingJob.objects.get(pk=job_id)
    status = EmbeddingJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
    return Outcome.BUSY if busy or status == Status.RUNNING else Outcome.NOTHING


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
    so the worker logs it; a row that is not claimable returns BUSY or NOTHING.
    """
    claimed = claim(job_id, worker)
    if isinstance(claimed, Outcome):
        return claimed
    job = claimed
    try:
        _embed(job)
    except LostClaim:
        logger.warning("embedding job %s: claim lost to another worker; stopping", job.pk)
        return Outcome.LOST
    except DatabaseError:
        # Transient (the task retries it); the row stays RUNNING and is taken over once stale.
        raise
    except BaseException as exc:  # incl. SoftTimeLimitExceeded: the row must say why
        message = f"{type(exc).__name__}: {exc}"[:2000]
        EmbeddingJob.objects.filter(pk=job.pk, attempt=job.attempt).update(
            status=Status.FAILED, error=message, finished_at=timezone.now()
        )
        raise
    return Outcome.DONE


def _embed(job: EmbeddingJob) -> None:
    rows = list(
        Item.objects.filter(campaign_id=job.campaign_id)
        .order_by("position")
        .values_list("position", "text", "text_sha256")
    )
    if any(position != row for row, (position, _, _) in enumerate(rows)):
        raise RuntimeError("item positions are not 0..n-1; the campaign's items are corrupt")
    keys = [key for _, _, key in rows]
    store = store_for(job.campaign_id, job.model_name)
    cached = store.valid_rows(keys)
    _write(job, n_total=len(rows), n_cached=cached, n_done=cached)
    embedder = embedder_from_settings() if cached < len(rows) else None
    chunks = store.plan(keys, cached, chunk_rows=4 * (embedder.batch_size if embedder else 64))
    done, reused = cached, 0
    for chunk in chunks:
        if chunk.path.exists():  # written by an earlier attempt that died: reuse it
            reused += chunk.stop - chunk.start
        else:
            assert embedder is not None
            vectors = embedder.encode([text for _, text, _ in rows[chunk.start : chunk.stop]])
            _write(job)  # still ours? (the encode may have taken a while)
            store.write_chunk(chunk, vectors)
        done = chunk.stop
        _write(job, n_done=done, device=embedder.device if embedder else "")
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
    return campaign.embedding_jobs.order_by("-created_at", "-pk").first()


def pending_jobs() -> list[tuple[int, str]]:
    """(id, status) of every QUEUED or RUNNING job: what a starting worker re-sends."""
    return list(
        EmbeddingJob.objects.filter(status__in=[Status.QUEUED, Status.RUNNING]).values_list(
            "pk", "status"
        )
    )
