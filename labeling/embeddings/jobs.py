"""Embedding jobs: request one after an import, claim it, embed its chunks on many workers.

The tasks in :mod:`labeling.tasks` are thin shells around :func:`run_embedding_job` and
:func:`help_embedding_job`, so tests call the bodies directly and the integration tests run
them through real workers.

Claiming (docs/platform.md, "Embedding jobs"): a job is taken with one conditional UPDATE that
matches only a QUEUED row, or a RUNNING row whose heartbeat is older than
``CARVE_JOB_STALE_SECONDS`` (its workers died), and increments ``attempt``. The claiming run
plans the chunks of rows the database does not hold yet, asks other workers to join, and
every run takes the plan's next chunk under the row lock. Each write to the row is
conditional on the attempt, so a run that was presumed dead and comes back stops. Chunks are
stored once (a unique constraint), so a takeover plans only what is still missing and no item
is embedded into the matrix twice or left out.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from labeling import queue
from labeling.embeddings import chunks
from labeling.embeddings.embedders import Embedder
from labeling.embeddings.pool import embedder_from_settings, model_name_from_settings
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

#: How long the claiming run embeds before it hands the rest of its plan on as a message:
#: well under any task time limit, and short enough that other work gets a turn.
CLAIMING_RUN_SECONDS = 60.0


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
    if not stuck:
        return False
    # Chunks not handed out yet: the job waits in a busy queue (or its messages were lost),
    # nobody died. Send a helper; a takeover (a new attempt) is for chunks lost with a worker.
    task = queue.EMBED_CHUNK if _waiting(job) else queue.EMBED
    return resend(EmbeddingJob, job.pk, job.sent_at, task)


def _waiting(job: EmbeddingJob) -> bool:
    """RUNNING with chunks of its plan not handed out yet."""
    return job.status == Status.RUNNING and job.next_piece < len(job.plan or [])


def claim(job_id: int, worker: str) -> EmbeddingJob | Outcome:
    """Take the job with a conditional UPDATE; returns the claimed row or why not.

    Claimable: QUEUED, or RUNNING with a stale heartbeat and every chunk of its plan handed
    out (so a chunk was lost with a dead worker), with fewer than JOB_MAX_ATTEMPTS attempts;
    a dead job that used them all becomes FAILED instead. A stale job with chunks still to
    hand out is only waiting in a busy queue: BUSY, and a helper is sent to go on with it. Another
    job of the same campaign that is running makes this one BUSY; one whose worker died is
    superseded (FAILED, and its attempt bumped so a zombie run stops at its next write).
    """
    stale, now = stale_before(), timezone.now()
    max_attempts = settings.CARVE_JOB_MAX_ATTEMPTS
    with transaction.atomic():
        job = (
            EmbeddingJob.objects.filter(pk=job_id)
            .only("campaign_id", "status", "plan", "next_piece")
            .first()
        )
        if job is None or job.status in (Status.DONE, Status.FAILED):
            return Outcome.NOTHING
        if _waiting(job):
            queue.try_send(queue.EMBED_CHUNK, job_id)
            return Outcome.BUSY
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
            plan=[],
            next_piece=0,
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
    """Claim job ``job_id``, plan the chunks missing from the database, ask more workers to
    join (CARVE_EMBEDDING_HELPERS messages of :func:`help_embedding_job`), and embed chunks
    until none is left.

    Returns DONE when this run finished the job, HELPED when another run will. Failures are
    written onto the row (status FAILED, ``error``) and the exception re-raised so the worker
    logs it. A lost database connection instead hands the job back (QUEUED) for the task's
    retry. A row that is not claimable returns BUSY or NOTHING.
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
    claimed = claim(job_id, worker)
    if isinstance(claimed, Outcome):
        return claimed
    job = claimed
    try:
        if embedder is None:
            raise load_error
        n_pieces = _plan(job, settings.CARVE_EMBEDDING_CHUNK_ROWS)
        for _ in range(min(settings.CARVE_EMBEDDING_HELPERS, n_pieces - 1)):
            queue.try_send(queue.EMBED_CHUNK, job.pk)
        outcome = _work(job, embedder, worker, seconds=CLAIMING_RUN_SECONDS)
        if outcome is Outcome.HELPED and _chunks_left(job):
            # Time is up: hand the rest on as a message, so no task nears its time limit.
            queue.try_send(queue.EMBED_CHUNK, job.pk)
        return outcome
    except LostClaim:
        logger.warning("embedding job %s: claim lost to another worker; stopping", job.pk)
        return Outcome.LOST
    except (OperationalError, InterfaceError):
        hand_back(EmbeddingJob, job.pk, job.attempt)  # transient: for the task's retry
        raise
    except Exception as exc:  # incl. SoftTimeLimitExceeded: the row must say why
        _fail(job, exc)
        raise


def help_embedding_job(job_id: int, worker: str = "") -> Outcome:
    """Join running job ``job_id``: embed one chunk of its plan, then send this message
    again if chunks are left, so other work waiting in the queue gets a turn in between.

    Returns DONE when this run finished the job, HELPED after one chunk, NOTHING when the job
    is not running or has no chunk left to hand out.
    """
    job = EmbeddingJob.objects.filter(pk=job_id, status=Status.RUNNING).first()
    if job is None or job.next_piece >= len(job.plan):
        return Outcome.NOTHING
    if job.model_name != model_name_from_settings():
        # A worker configured with another embedder must not mix its vectors in.
        logger.warning(
            "embedding job %s uses %s; this worker embeds with %s: not joining",
            job.pk,
            job.model_name,
            model_name_from_settings(),
        )
        return Outcome.NOTHING
    try:
        embedder = embedder_from_settings()
        outcome = _work(job, embedder, worker, seconds=0)
    except LostClaim:
        return Outcome.NOTHING  # the job was taken over, failed or finished meanwhile
    except (OperationalError, InterfaceError):
        raise  # the chunk it held is redone when the job is taken over; retried
    except Exception as exc:
        _fail(job, exc)
        raise
    if outcome is Outcome.HELPED and _chunks_left(job):
        queue.try_send(queue.EMBED_CHUNK, job.pk)
    return outcome


def _chunks_left(job: EmbeddingJob) -> bool:
    """Whether the running job still has chunks to hand out."""
    row = (
        EmbeddingJob.objects.filter(pk=job.pk, status=Status.RUNNING)
        .values_list("plan", "next_piece")
        .first()
    )
    return row is not None and row[1] < len(row[0])


def _fail(job: EmbeddingJob, exc: BaseException) -> None:
    EmbeddingJob.objects.filter(pk=job.pk, attempt=job.attempt).update(
        status=Status.FAILED, error=error_text(exc), finished_at=timezone.now()
    )
    _send_next(job.campaign_id)


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


def _plan(job: EmbeddingJob, chunk_rows: int) -> int:
    """Write the attempt's plan: the fewest rows that, embedded, complete a tiling of the
    items with the stored chunks (:func:`labeling.embeddings.chunks.holes`), cut into chunks.
    Returns how many.

    Stored chunks are checked against the items' text keys first; one that no longer matches
    (only a restored or repaired database has any) is deleted and its rows planned again.
    """
    # The top position first: an import committing meanwhile only adds rows after it.
    top = Item.objects.filter(campaign_id=job.campaign_id).aggregate(top=Max("position"))["top"]
    keys = [] if top is None else _keys(job.campaign_id, top)
    if len(keys) != (0 if top is None else top + 1):
        raise RuntimeError("item positions are not 0..n-1; the campaign's items are corrupt")
    chunks.delete_stale(job.campaign_id, job.model_name, keys)
    stored = chunks.refs(job.campaign_id, job.model_name, len(keys))
    holes = chunks.holes(stored, len(keys))
    plan = chunks.pieces(holes, chunk_rows)
    cached = len(keys) - sum(b - a for a, b in holes)
    _write(job, n_total=len(keys), n_cached=cached, n_done=cached, plan=plan, next_piece=0)
    job.n_total, job.n_cached, job.plan = len(keys), cached, [list(p) for p in plan]
    return len(plan)


def _keys(campaign_id: int, top: int) -> list[str]:
    """The text keys of the items at positions 0..top, in order (read in slices)."""
    keys: list[str] = []
    for start in range(0, top + 1, 100_000):
        part = Item.objects.filter(
            campaign_id=campaign_id, position__gte=start, position__lte=min(top, start + 99_999)
        )
        keys += part.order_by("position").values_list("text_sha256", flat=True)
    return keys


def _take(job: EmbeddingJob) -> tuple[int, int] | None:
    """Hand out the plan's next chunk to this run (None: all are handed out)."""
    with transaction.atomic():
        row = (
            EmbeddingJob.objects.select_for_update()
            .filter(pk=job.pk, status=Status.RUNNING, attempt=job.attempt)
            .values_list("plan", "next_piece")
            .first()
        )
        if row is None:
            raise LostClaim(f"embedding job {job.pk} attempt {job.attempt} is not running")
        plan, i = row
        if i >= len(plan):
            return None
        _write(job, next_piece=i + 1)
    return int(plan[i][0]), int(plan[i][1])


def _work(job: EmbeddingJob, embedder: Embedder, worker: str, seconds: float) -> Outcome:
    """Embed chunks of the plan: one, then more until ``seconds`` have passed or none is
    left. DONE if this run finished the job, else HELPED."""
    deadline = time.monotonic() + seconds
    while True:
        piece = _take(job)
        if piece is None:
            break
        start, stop = piece
        rows = list(
            Item.objects.filter(campaign_id=job.campaign_id, position__gte=start, position__lt=stop)
            .order_by("position")
            .values_list("text", "text_sha256")
        )
        if len(rows) != stop - start:
            raise RuntimeError(f"items {start}..{stop} of the campaign are not all there")
        vectors = embedder.encode([text for text, _ in rows])
        chunks.write(job.campaign_id, job.model_name, start, [k for _, k in rows], vectors, worker)
        _write(job, n_done=F("n_done") + (stop - start), device=embedder.device)
        if time.monotonic() >= deadline:
            break
    return Outcome.DONE if _finish_if_complete(job) else Outcome.HELPED


def _finish_if_complete(job: EmbeddingJob) -> bool:
    """Mark the job DONE if its chunks now cover every item; True for the one run that does."""
    row = EmbeddingJob.objects.filter(pk=job.pk).values_list("n_done", "n_total").first()
    if row is None or row[0] < row[1]:
        return False
    n = row[1]
    tiles = chunks.tiling(chunks.refs(job.campaign_id, job.model_name, n), n)
    if tiles is None:
        logger.warning("embedding job %s: counted done but chunks do not cover it", job.pk)
        return False  # redone when the job is taken over (its heartbeat goes stale)
    dim = tiles[0].dim if tiles else None
    won = EmbeddingJob.objects.filter(pk=job.pk, status=Status.RUNNING, attempt=job.attempt).update(
        status=Status.DONE, dim=dim, n_done=n, finished_at=timezone.now()
    )
    if not won:
        return False
    logger.info(
        "embedding job %s: %d items (%d already stored) with %s",
        job.pk,
        n,
        job.n_cached,
        job.model_name,
    )
    _send_next(job.campaign_id)
    return True


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
