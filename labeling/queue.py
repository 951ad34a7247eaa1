"""The one module that sends Celery messages: by task name, after the transaction commits.

Nothing here imports :mod:`labeling.tasks`, so domain modules can queue work without an import
cycle; the task is looked up in the Celery app's registry by its name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

EMBED = "labeling.tasks.embed_campaign"
EMBED_CHUNK = "labeling.tasks.embed_chunk"
IMPORT = "labeling.tasks.import_items"
EXPORT = "labeling.tasks.export_campaign"
UPDATE_LEARNER = "labeling.tasks.update_learner"
RETRAIN = "labeling.tasks.retrain"
MEASURE_LEARNER = "labeling.tasks.measure_learner"
DELIVER_WEBHOOK = "labeling.tasks.deliver_webhook"
NEAR_DUPLICATES = "labeling.tasks.check_near_duplicates"


def send(task: str, *args: object, countdown: float | None = None) -> None:
    """Send ``task`` now; a broker that is down raises kombu's ``OperationalError``."""
    registered = current_app.tasks[task]
    if countdown is None:
        registered.delay(*args)
    else:
        registered.apply_async(args, countdown=countdown)


def try_send(task: str, *args: object) -> bool:
    """Send ``task`` now; a broker that is down is logged, not raised. Returns whether sent."""
    try:
        send(task, *args)
    except BrokerError:
        logger.warning("could not send %s%r", task, args, exc_info=True)
        return False
    return True


def send_on_commit(task: str, *args: object, before: Callable[[], object] | None = None) -> None:
    """Send ``task`` once the current transaction commits (nothing if it rolls back).

    ``before`` runs first (jobs stamp ``sent_at`` on their row). Robust: a broker that is down
    must not turn a committed write into an error page; the row stays pending and is sent
    again by the resend-if-stuck checks (:mod:`labeling.jobrows`) or when a worker starts.
    """

    def go() -> None:
        if before is not None:
            before()
        send(task, *args)

    transaction.on_commit(go, robust=True)
