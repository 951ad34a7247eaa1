"""Bulk item imports through the API: small files during the request, large ones on a worker.

The file is stored on an :class:`~labeling.models.ImportJob` row, so any worker can import it
(the web and worker machines share only the database). The same checks as the upload page
run (:func:`labeling.imports.write.parse_file`), and the import is all-or-nothing.

Exactly once (docs/platform.md, "The REST API"): a run claims the row with one conditional UPDATE
that bumps
``attempt`` (QUEUED, or RUNNING for longer than the task's hard time limit: its process died;
an import has no progress heartbeat, so a younger run may still be working).
The items and the DONE status are then written in one transaction that first locks the row
and checks that the attempt is still this run's. A run that was taken over finds another
attempt and writes nothing; a takeover that arrives while the first run is writing waits for
the lock, then finds the job DONE.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from labeling import queue
from labeling.imports import write
from labeling.imports.parse import UploadRejected
from labeling.jobrows import (
    LostClaim,
    Outcome,
    dead_before,
    error_text,
    hand_back,
    resend,
    send_on_commit,
    stale_before,
)
from labeling.models import Campaign, ImportJob

logger = logging.getLogger(__name__)
Status = ImportJob.Status
ITEMS_FILENAME = "items.jsonl"  # the name given to a JSON ``items`` list
#: The key of ``ImportJob.result`` that carries the near-duplicate threshold to the run.
NEAR_DUPLICATES = "near_duplicates"


def items_as_jsonl(items: Sequence[Any]) -> bytes:
    """A JSON list of items as the JSON Lines file the upload parser reads (one per line)."""
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode()


def start_import(
    campaign: Campaign,
    user: Any,
    data: bytes,
    filename: str,
    *,
    text_column: str = "",
    gold_column: str = "",
    background: bool | None = None,
    near_duplicates: float | None = None,
) -> ImportJob:
    """Record an import of ``data`` and run it: now when the file is at most
    CARVE_IMPORT_INLINE_BYTES (or ``background`` is False), else on a worker.

    ``near_duplicates``: the cosine threshold of the upload's near-duplicate check (None:
    none; docs/platform.md, "Near-duplicates"). The job row carries it in ``result`` until
    the import replaces that with its counts.

    Returns the job row, DONE or FAILED when it ran here, QUEUED when it was sent.
    """
    if background is None:
        background = len(data) > settings.CARVE_IMPORT_INLINE_BYTES
    job = ImportJob.objects.create(
        campaign=campaign,
        created_by=user,
        filename=filename[:255],
        text_column=text_column,
        gold_column=gold_column,
        data=data,
        size_bytes=len(data),
        background=background,
        result={} if near_duplicates is None else {NEAR_DUPLICATES: near_duplicates},
    )
    if background:
        send_on_commit(ImportJob, job.pk, queue.IMPORT)
        return job
    try:
        run_import_job(job.pk, worker="web")
    except (OperationalError, InterfaceError):
        # The database was busy or gone (the run handed the job back as QUEUED): a worker
        # imports it instead, and the caller polls it like any background job.
        logger.warning("import job %s: database trouble in the request; sent to a worker", job.pk)
        with contextlib.suppress(DatabaseError):
            if ImportJob.objects.filter(pk=job.pk, status=Status.QUEUED).update(background=True):
                send_on_commit(ImportJob, job.pk, queue.IMPORT)
    except Exception:
        # Recorded on the row (FAILED, ``error``); the caller gets the row, not a traceback.
        logger.exception("import job %s failed", job.pk)
    job.refresh_from_db()
    return job


def claim(job_id: int, worker: str = "") -> ImportJob | Outcome:
    """Take the job with a conditional UPDATE; returns the claimed row or why not.

    A RUNNING job older than the task's hard time limit is taken over (its run died), unless
    it has used CARVE_JOB_MAX_ATTEMPTS: then it becomes FAILED.
    """
    stale, now = dead_before(), timezone.now()
    max_attempts = settings.CARVE_JOB_MAX_ATTEMPTS
    with transaction.atomic():
        ImportJob.objects.filter(
            pk=job_id, status=Status.RUNNING, started_at__lt=stale, attempt__gte=max_attempts
        ).update(
            status=Status.FAILED,
            data=None,
            finished_at=now,
            error=f"The import was started {max_attempts} times and never finished (its "
            "process was killed: out of memory, or a time limit?). Nothing was imported; see "
            "the logs, then send the file again.",
        )
        claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, started_at__lt=stale)
        n = ImportJob.objects.filter(claimable, pk=job_id).update(
            status=Status.RUNNING, attempt=F("attempt") + 1, started_at=now, error=""
        )
    if n == 1:
        return ImportJob.objects.select_related("campaign", "created_by").get(pk=job_id)
    status = ImportJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if worker:
        logger.debug("import job %s not claimed by %s (%s)", job_id, worker, status)
    return Outcome.BUSY if status == Status.RUNNING else Outcome.NOTHING


def _finish(job: ImportJob, **fields: Any) -> None:
    """Close the claimed row (FAILED), only while this run still owns it."""
    ImportJob.objects.filter(pk=job.pk, status=Status.RUNNING, attempt=job.attempt).update(
        data=None, finished_at=timezone.now(), **fields
    )


def run_import_job(job_id: int, worker: str = "") -> Outcome:
    """Claim import job ``job_id`` and import its file completely or not at all.

    A refused file ends FAILED with ``errors`` (one message per problem, as on the upload
    page). A lost database connection hands the job back (QUEUED) and re-raises for the
    task's retry; any other exception ends FAILED with ``error`` and is re-raised.
    """
    claimed = claim(job_id, worker)
    if isinstance(claimed, Outcome):
        return claimed
    return execute(claimed)


def execute(job: ImportJob) -> Outcome:
    """Import the file of ``job``, claimed by this run (:func:`claim`); see
    :func:`run_import_job`. Returns LOST, writing nothing, when another run took it over."""
    try:
        parsed = write.parse_file(
            job.campaign,
            bytes(job.data or b""),
            job.filename,
            text_column=job.text_column or None,
            gold_column=job.gold_column or None,
        )
        with transaction.atomic():
            owned = ImportJob.objects.select_for_update().filter(
                pk=job.pk, status=Status.RUNNING, attempt=job.attempt
            )
            if not owned.exists():
                raise LostClaim(f"import job {job.pk} attempt {job.attempt} was taken over")
            outcome = write.write_items(job.campaign, job.created_by, parsed, job.filename)
            threshold = (job.result or {}).get(NEAR_DUPLICATES)
            if threshold is not None:
                outcome.upload.near_duplicate_threshold = float(threshold)
                outcome.upload.save(update_fields=["near_duplicate_threshold"])
            owned.update(
                status=Status.DONE,
                data=None,
                upload=outcome.upload,
                finished_at=timezone.now(),
                result={
                    "n_rows": parsed.n_rows,
                    "n_created": outcome.n_created,
                    "n_existing": outcome.n_existing,
                    "n_blank": parsed.n_blank,
                    "n_duplicates": outcome.upload.n_duplicates,
                    "n_gold": sum(1 for item in parsed.items if item.gold),
                    "n_labels": outcome.n_labels,
                    "format": parsed.format,
                    "text_column": parsed.text_column,
                    "gold_column": parsed.gold_column or "",
                    "message": write.describe(outcome),
                    # (Only when asked for: the counts stay as they were otherwise.)
                    **({} if threshold is None else {NEAR_DUPLICATES: threshold}),
                },
            )
    except UploadRejected as exc:
        _finish(job, status=Status.FAILED, errors=exc.errors)
        return Outcome.FAILED
    except LostClaim:
        logger.warning("import job %s: claim lost to another run; stopping", job.pk)
        return Outcome.LOST
    except (OperationalError, InterfaceError):
        hand_back(ImportJob, job.pk, job.attempt)
        raise
    except Exception as exc:
        _finish(job, status=Status.FAILED, error=error_text(exc))
        raise
    logger.info("import job %s: %s", job.pk, job.filename)
    return Outcome.DONE


def nudge(job: ImportJob) -> bool:
    """Send a job again if it looks stuck: QUEUED with no message sent (or, never sent,
    created) CARVE_JOB_STALE_SECONDS ago, or RUNNING past the task's hard time limit. At most
    once per CARVE_JOB_STALE_SECONDS, however often it is polled. Returns whether a message
    was sent (a broker that is down is logged, and the next poll tries again)."""
    stale = stale_before()
    stuck = (job.status == Status.QUEUED and (job.sent_at or job.created_at) < stale) or (
        job.status == Status.RUNNING
        and job.started_at is not None
        and job.started_at < dead_before()
        and (job.sent_at is None or job.sent_at < stale)
    )
    if not stuck:
        return False
    return resend(ImportJob, job.pk, job.sent_at, queue.IMPORT, retry_next_poll=True)


def pending_imports() -> list[int]:
    """Ids of the unfinished imports: what a starting worker re-sends (a run in progress
    answers BUSY; one whose process died is taken over once past the time limit)."""
    return list(
        ImportJob.objects.filter(status__in=[Status.QUEUED, Status.RUNNING]).values_list(
            "pk", flat=True
        )
    )
