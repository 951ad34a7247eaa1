"""Faults on the real stack: Redis stopped under a running worker (docs/platform.md,
"Reliability").

A label given while the broker is down is stored, but the message asking for a learner
update is lost. Nobody opens a page here: the worker's resend sweep (labeling.resend) must
notice the learner is behind and bring it up to date once Redis is back, and the worker must
survive the outages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from labeling import annotation
from labeling.models import Campaign, Label, LearnerSnapshot
from tests.labeling.builders import embedded_campaign
from tests.support.processes import (
    RestartableRedis,
    Worker,
    database_url,
    use_broker,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

OUTAGES = 3
OUTAGE_SECONDS = 8.0
CATCH_UP_BOUND = 30.0  # seconds from Redis being back to the learner holding every label


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RestartableRedis]:
    from config.celery_app import app

    server = RestartableRedis(tmp_path)
    server.start()
    old = app.conf.broker_url
    use_broker(app, server.url)
    try:
        yield server
    finally:
        use_broker(app, old)
        server.stop()


def _learner_labels(campaign: Campaign) -> int:
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()
    return snapshot.n_labels if snapshot else -1


def test_the_learner_catches_up_after_each_redis_outage_without_anyone_polling(
    campaign: Campaign, annotator: Any, broker: RestartableRedis, tmp_path: Path, settings: Any
) -> None:
    items, _ = embedded_campaign(campaign, 40)  # embedded in this process, before the worker
    worker = Worker(
        "survivor",
        worker_env(
            DATABASE_URL=database_url(connection.settings_dict),
            REDIS_URL=broker.url,
            CARVE_DATA_DIR=str(settings.CARVE_DATA_DIR),
            RESEND_SECONDS="1",
        ),
        tmp_path / "survivor.log",
    )
    try:
        given = 0
        catch_up: list[float] = []
        for outage in range(OUTAGES):
            broker.stop(kill=outage % 2 == 1)
            for item in items[given : given + 3]:  # labeled while the broker is down
                annotation.submit_label(item, annotator, "positive" if given % 2 else "negative")
                given += 1
            assert Label.objects.filter(item__campaign=campaign).count() == given
            time.sleep(OUTAGE_SECONDS)
            broker.start()
            back = time.monotonic()
            wait_for(
                lambda n=given: _learner_labels(campaign) == n,
                CATCH_UP_BOUND,
                f"the learner to hold {given} labels after outage {outage + 1}",
                worker.log,
            )
            catch_up.append(time.monotonic() - back)
            assert worker.proc.poll() is None, "the worker died in the outage"
        log = worker.log.read_text(errors="replace")
        assert "Unrecoverable error" not in log
        assert max(catch_up) < CATCH_UP_BOUND
        print(f"catch-up after each outage: {[round(t, 1) for t in catch_up]} s")
    finally:
        worker.stop()
