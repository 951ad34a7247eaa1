"""The job-row idiom, written once for every kind of background work.

Embedding jobs, import jobs and model versions are rows with a :class:`~labeling.models.JobStatus`
(QUEUED -> RUNNING -> DONE or FAILED). A run *claims* its row with one conditional UPDATE, so
duplicate messages do nothing; a run that hits a transient database error *hands the row back*
(QUEUED) for the task's retry; any other failure leaves its *error text* on the row. A row that
waited too long for its message is *resent* at most once per ``CARVE_JOB_STALE_SECONDS``
(docs/platform.md, "Embedding jobs", the pattern every job row follows).
"""

from __future__ import annotations

import contextlib
import enum
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, models
from django.db.models import Q
from django.utils import timezone

from labeling import queue
from labeling.models import JobStatus

logger = logging.getLogger(__name__)

#: Longest error text stored on a row (the columns are TextField; this keeps pages short).
ERROR_MAX = 2000


class Outcome(enum.StrEnum):
    """What one run of a job did (the task's return value)."""

    DONE = "done"
    FAILED = "failed"
    # Another live worker holds this job, or another job of the same campaign: look again later.
    BUSY = "busy"
    # The job is finished (or gone): nothing to do. Duplicate deliveries end here.
    NOTHING = "nothing"
    # This run embedded its share of the job's chunks; another run finishes the job.
    HELPED = "helped"
    # This worker's claim was taken over (it was presumed dead); it stopped without writing.
    LOST = "lost"


class LostClaim(Exception):
    """Raised inside a run when the job row no longer carries this run's attempt."""


def error_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, cut to :data:`ERROR_MAX` characters."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX]


def stale_before() -> datetime:
    """A message sent, or a heartbeat written, before this looks lost."""
    return timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS)


def dead_before() -> datetime:
    """A run without a progress heartbeat (an import, a model fit) started before this has
    outlived the task's hard time limit: its process is gone."""
    return timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def hand_back(model: type[models.Model], pk: int, attempt: int | None = None) -> None:
    """Put a RUNNING row back to QUEUED (for the task's retry after a transient database
    error), only while this run owns it; if the database refuses, the row is taken over
    once it looks dead."""
    owned = Q(pk=pk, status=JobStatus.RUNNING)
    if attempt is not None:
        owned &= Q(attempt=attempt)
    with contextlib.suppress(DatabaseError):
        model._default_manager.filter(owned).update(status=JobStatus.QUEUED)


def resend(
    model: type[models.Model],
    pk: int,
    sent_at: datetime | None,
    task: str,
    *,
    retry_next_poll: bool = False,
) -> bool:
    """Send ``task`` for a row that looks stuck, at most once per period however many
    requests poll it: the row's ``sent_at`` moves only if it still holds ``sent_at``. A broker
    that is down is logged; the next try is a period later, or at the next poll with
    ``retry_next_poll`` (an import job, polled by its client). Returns whether sent."""
    last = Q(sent_at__isnull=True) if sent_at is None else Q(sent_at=sent_at)
    rows = model._default_manager.filter(pk=pk)
    if rows.filter(last).update(sent_at=timezone.now()) != 1:
        return False  # another request re-sent it just now
    if not queue.try_send(task, pk):
        if retry_next_poll:
            rows.update(sent_at=sent_at)
        return False
    logger.info("%s %s looked stuck; sent again", model._meta.verbose_name, pk)
    return True


def send_on_commit(model: type[models.Model], pk: int, task: str) -> None:
    """Send ``task`` for row ``pk`` once the transaction commits, stamping ``sent_at`` first.

    A broker that is down leaves the row QUEUED; :func:`resend` or a starting worker sends it
    again.
    """

    def mark_sent() -> None:
        model._default_manager.filter(pk=pk).update(sent_at=timezone.now())

    queue.send_on_commit(task, pk, before=mark_sent)
