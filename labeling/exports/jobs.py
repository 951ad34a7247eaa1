"""Export jobs: a label export written by a worker and stored in the database in parts
(docs/platform.md, "Export jobs").

A run claims the :class:`~labeling.models.ExportJob` row with one conditional UPDATE that
bumps ``attempt`` (QUEUED, or RUNNING with a heartbeat older than CARVE_JOB_STALE_SECONDS: its
worker died). It writes the file a chunk of items at a time into a temporary file (the same
writers as the streamed export, so the bytes are the same), beating the heartbeat and counting
``n_done`` at every chunk, then copies the file into :class:`~labeling.models.ExportPart` rows
of at most CARVE_EXPORT_PART_BYTES, tagged with its attempt. The DONE status, size, SHA-256 and
row count are written in one transaction that first locks the row and checks that the attempt
is still this run's; the same transaction deletes the parts of earlier attempts. A run that was
taken over stops at its next heartbeat (or finds another attempt at the end) and its parts are
deleted by the run that finishes. Any web process streams the parts back in order, one at a
time (there is no shared disk).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from labeling import queue, signals
from labeling.exports import formats
from labeling.exports import rows as export_rows
from labeling.jobrows import (
    LostClaim,
    Outcome,
    error_text,
    hand_back,
    resend,
    send_on_commit,
    stale_before,
)
from labeling.models import Campaign, ExportJob, ExportPart

logger = logging.getLogger(__name__)
Status = ExportJob.Status
ITEMS_LABELED, ITEMS_ALL = "labeled", "all"


def start_export(
    campaign: Campaign,
    user: Any,
    *,
    kind: str = "csv",
    rows: str = formats.ROWS_LABELS,
    items: str = ITEMS_LABELED,
) -> ExportJob:
    """Record an export of ``campaign`` (options as the export endpoint takes them, already
    validated) and send it to a worker once the transaction commits; returns the QUEUED row."""
    if kind in formats.ITEM_FORMATS:
        rows = formats.ROWS_ITEMS  # what the file holds, whatever was asked
    job = ExportJob.objects.create(
        campaign=campaign,
        created_by=user if getattr(user, "pk", None) else None,
        format=kind,
        rows=rows,
        items=items,
        filename=formats.export_filename(campaign.pk, kind),
        content_type=formats.EXPORT_FORMATS[kind][0],
    )
    send_on_commit(ExportJob, job.pk, queue.EXPORT)
    return job


def claim(job_id: int, worker: str = "") -> ExportJob | Outcome:
    """Take the job with a conditional UPDATE; returns the claimed row or why not.

    Claimable: QUEUED, or RUNNING with a heartbeat older than CARVE_JOB_STALE_SECONDS (its
    worker died), unless it has used CARVE_JOB_MAX_ATTEMPTS: then it becomes FAILED.
    """
    stale, now = stale_before(), timezone.now()
    max_attempts = settings.CARVE_JOB_MAX_ATTEMPTS
    with transaction.atomic():
        gave_up = ExportJob.objects.filter(
            pk=job_id, status=Status.RUNNING, heartbeat_at__lt=stale, attempt__gte=max_attempts
        ).update(
            status=Status.FAILED,
            finished_at=now,
            error=f"The worker writing this export stopped responding {max_attempts} times "
            "(killed, out of memory?). See the worker log, then start the export again.",
        )
        if gave_up:  # the parts its dead runs stored would never be deleted otherwise
            ExportPart.objects.filter(job_id=job_id).delete()
        claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=stale)
        n = ExportJob.objects.filter(claimable, pk=job_id).update(
            status=Status.RUNNING,
            attempt=F("attempt") + 1,
            worker=worker[:200],
            started_at=now,
            heartbeat_at=now,
            n_done=0,
            n_rows=0,
            error="",
        )
    if n == 1:
        return ExportJob.objects.select_related("campaign").get(pk=job_id)
    status = ExportJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
    return Outcome.BUSY if status == Status.RUNNING else Outcome.NOTHING


def _beat(job: ExportJob, **fields: Any) -> None:
    """Update the claimed row and its heartbeat, only while this run still owns it."""
    n = ExportJob.objects.filter(pk=job.pk, status=Status.RUNNING, attempt=job.attempt).update(
        heartbeat_at=timezone.now(), **fields
    )
    if n != 1:
        raise LostClaim(f"export job {job.pk} attempt {job.attempt} was taken over")


def run_export_job(job_id: int, worker: str = "") -> Outcome:
    """Claim export job ``job_id`` and write its file into the database (see the module).

    Returns DONE, LOST (taken over: this run stopped and its parts are left for the winner
    to delete), or BUSY / NOTHING when the row was not claimable. A lost database connection
    hands the job back (QUEUED) and re-raises for the task's retry; any other exception ends
    FAILED with ``error`` and is re-raised.
    """
    claimed = claim(job_id, worker)
    if isinstance(claimed, Outcome):
        return claimed
    return execute(claimed)


def _rows_of(job: ExportJob, chunk: list[export_rows.Record]) -> int:
    """The rows ``chunk`` becomes in the job's file."""
    if job.rows == formats.ROWS_LABELS and job.format not in formats.ITEM_FORMATS:
        return sum(max(1, len(r.labels)) for r in chunk)
    return len(chunk)


def write_file(plan: export_rows.Plan, kind: str, rows: str, path: Path) -> None:
    """Write the export of ``plan`` as ``kind`` to ``path``: the same bytes the streamed
    export sends for the same options (docs/platform.md, "Label export")."""
    if kind in formats.FILE_FORMATS:
        from labeling.exports import arrow  # pyarrow, loaded only for these formats

        if kind == "parquet":
            arrow.write_parquet(plan, path, rows)
        else:
            name = path.name.removesuffix(".zip")
            folder = path.parent / "hf" / name
            arrow.write_hf_folder(plan, folder)
            arrow.zip_folder(folder, path, name)
            shutil.rmtree(path.parent / "hf", ignore_errors=True)
        return
    pieces = (
        formats.as_csv(plan, rows)
        if kind == "csv"
        else formats.as_jsonl(plan, rows)
        if kind == "jsonl"
        else formats.as_labelstudio(plan)
    )
    with path.open("wb") as out:
        for piece in pieces:
            out.write(piece.encode("utf-8"))


def execute(job: ExportJob) -> Outcome:
    """Write the file of ``job``, claimed by this run (:func:`claim`); see
    :func:`run_export_job`."""
    root = Path(settings.CARVE_DATA_DIR) / "exports"
    work: Path | None = None
    try:
        plan = export_rows.plan(job.campaign, labeled_only=job.items == ITEMS_LABELED)
        _beat(job, n_total=plan.n_items)
        done = {"items": 0, "rows": 0}

        def progress(chunk: list[export_rows.Record]) -> None:
            done["items"] += len(chunk)
            done["rows"] += _rows_of(job, chunk)
            _beat(job, n_done=done["items"])

        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"job-{job.pk}-", dir=root))
        path = work / (job.filename or formats.export_filename(job.campaign_id, job.format))
        write_file(replace(plan, progress=progress), job.format, job.rows, path)
        size, digest = _store(job, path)
        with transaction.atomic():
            owned = ExportJob.objects.select_for_update().filter(
                pk=job.pk, status=Status.RUNNING, attempt=job.attempt
            )
            if not owned.exists():
                raise LostClaim(f"export job {job.pk} attempt {job.attempt} was taken over")
            ExportPart.objects.filter(job_id=job.pk).exclude(attempt=job.attempt).delete()
            owned.update(
                status=Status.DONE,
                n_done=done["items"],
                n_rows=done["rows"],
                size_bytes=size,
                sha256=digest,
                heartbeat_at=timezone.now(),
                finished_at=timezone.now(),
            )
            campaign_id, job_id = job.campaign_id, job.pk
            transaction.on_commit(
                lambda: signals.export_ready.send(
                    sender=ExportJob, campaign_id=campaign_id, export_job_id=job_id
                ),
                robust=True,
            )
    except LostClaim:
        logger.warning("export job %s: claim lost to another run; stopping", job.pk)
        return Outcome.LOST
    except (OperationalError, InterfaceError):
        hand_back(ExportJob, job.pk, job.attempt)  # transient: for the task's retry
        raise
    except Exception as exc:  # incl. SoftTimeLimitExceeded: the row must say why
        _fail(job, exc)
        raise
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    logger.info("export job %s: %s, %d bytes", job.pk, job.filename, size)
    return Outcome.DONE


def _store(job: ExportJob, path: Path) -> tuple[int, str]:
    """Copy the file into parts of at most CARVE_EXPORT_PART_BYTES tagged with this attempt,
    one part in memory at a time; returns the size and the SHA-256."""
    part_bytes = max(1, int(settings.CARVE_EXPORT_PART_BYTES))
    digest = hashlib.sha256()
    size = number = 0
    # Parts left by an earlier try of this same attempt (a retry after a database error).
    ExportPart.objects.filter(job_id=job.pk, attempt=job.attempt).delete()
    with path.open("rb") as source:
        while block := source.read(part_bytes):
            # The part and the heartbeat that checks the attempt in one transaction: the
            # UPDATE holds the row until the part is in, so a run that was taken over stores
            # nothing after the winner has finished (and deleted the other attempts' parts).
            with transaction.atomic():
                _beat(job)
                ExportPart.objects.create(
                    job_id=job.pk, attempt=job.attempt, number=number, data=block
                )
            digest.update(block)
            size += len(block)
            number += 1
    return size, digest.hexdigest()


def _fail(job: ExportJob, exc: BaseException) -> None:
    """FAILED with the reason, only while this run owns the row; its parts are deleted."""
    try:
        with transaction.atomic():
            n = ExportJob.objects.filter(
                pk=job.pk, status=Status.RUNNING, attempt=job.attempt
            ).update(status=Status.FAILED, error=error_text(exc), finished_at=timezone.now())
            if n:
                ExportPart.objects.filter(job_id=job.pk).delete()
    except Exception:  # the original failure is what the caller re-raises
        logger.exception("export job %s: could not record its failure", job.pk)


def parts(job: ExportJob) -> Iterator[bytes]:
    """The bytes of a DONE job's file, one part at a time (one query each), in order."""
    ids = list(
        ExportPart.objects.filter(job_id=job.pk, attempt=job.attempt)
        .order_by("number")
        .values_list("pk", flat=True)
    )
    for pk in ids:
        data = ExportPart.objects.filter(pk=pk).values_list("data", flat=True).first()
        if data is None:
            raise RuntimeError(f"part {pk} of export job {job.pk} is gone")
        yield bytes(data)


def nudge(job: ExportJob) -> bool:
    """Send a job again if it looks stuck: QUEUED with no message sent for
    CARVE_JOB_STALE_SECONDS, or RUNNING without a heartbeat for that long (its worker died:
    the message takes it over). At most once per CARVE_JOB_STALE_SECONDS, however many pages
    poll. Returns whether a message was sent."""
    stale = stale_before()
    stuck = (job.status == Status.QUEUED and (job.sent_at or job.created_at) < stale) or (
        job.status == Status.RUNNING
        and job.heartbeat_at is not None
        and job.heartbeat_at < stale
        and (job.sent_at is None or job.sent_at < stale)
    )
    if not stuck:
        return False
    return resend(ExportJob, job.pk, job.sent_at, queue.EXPORT)


def pending_exports() -> list[int]:
    """Ids of the unfinished export jobs: what a starting worker re-sends (a run in progress
    answers BUSY; one whose worker died is taken over once its heartbeat is stale)."""
    return list(
        ExportJob.objects.filter(status__in=[Status.QUEUED, Status.RUNNING]).values_list(
            "pk", flat=True
        )
    )
