"""Faults on the real stack: Redis stopped under a running worker (docs/platform.md,
"Reliability").

A label given while the broker is down is stored, but the message asking for a learner
update is lost. Nobody opens a page here: the worker's resend sweep (labeling.resend) must
notice the learner is behind and bring it up to date once Redis is back, and the worker must
survive the outages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from labeling import annotation, model_versions, tasks
from labeling.models import Campaign, Label, LearnerSnapshot, ModelVersion
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


def _runs(log: str) -> list[tuple[float, float]]:
    """(start, end) in seconds of every learner update a worker log reports."""
    found = []
    for stamp, seconds in re.findall(
        r"^(\S+ \S+) INFO labeling\.campaign_learner .*learner of campaign \d+: .*?([\d.]+) s \(",
        log,
        flags=re.M,
    ):
        end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        found.append((end - float(seconds), end))
    return found


def test_two_worker_processes_never_update_one_campaign_at_once(
    campaign: Campaign, annotator: Any, start_worker: Any
) -> None:
    items, E = embedded_campaign(campaign, 200)
    for i, item in enumerate(items[:150]):
        annotation.submit_label(item, annotator, "positive" if E[i, 0] > 0 else "negative")
    first, second = start_worker("one"), start_worker("two")
    for _ in range(6):  # both workers take one at once (prefetch 1), then the rest
        tasks.update_learner.delay(campaign.pk)
    wait_for(
        lambda: (
            sum(
                w.log.read_text(errors="replace").count("labeling.tasks.update_learner[")
                for w in (first, second)
            )
            >= 12
        ),  # received + finished lines of all six
        120,
        "six learner updates",
        first.log,
    )
    logs = [w.log.read_text(errors="replace") for w in (first, second)]
    runs = sorted(run for log in logs for run in _runs(log))
    assert runs, "no learner update ran"
    overlaps = [(a, b) for a, b in zip(runs, runs[1:], strict=False) if b[0] < a[1] - 0.05]
    assert not overlaps, f"two updates of one campaign ran at once: {overlaps}"
    assert any("succeeded" in log and "'busy'" in log for log in logs)
    assert LearnerSnapshot.objects.get(campaign=campaign).n_labels == 150


def test_a_version_whose_worker_is_killed_mid_fit_is_finished_by_the_next_worker(
    campaign: Campaign, annotator: Any, start_worker: Any
) -> None:
    items, E = embedded_campaign(campaign, 200, retrain_every=0)
    for i, item in enumerate(items[:150]):
        annotation.submit_label(item, annotator, "positive" if E[i, 0] > 0 else "negative")
    doomed = start_worker("doomed")
    version = model_versions.request_retrain(campaign)  # sent on commit (autocommit here)
    wait_for(
        lambda: ModelVersion.objects.get(pk=version.pk).status == "running",
        60,
        "the fit to start",
        doomed.log,
    )
    doomed.kill()
    version.refresh_from_db()
    assert version.status == "running"  # killed mid-fit: nothing else would finish it
    rescuer = start_worker("rescuer")  # re-sends pending work when it starts
    wait_for(
        lambda: ModelVersion.objects.get(pk=version.pk).status == "done",
        120,
        "the version to be taken over",
        rescuer.log,
    )
    version.refresh_from_db()
    assert version.attempt == 2 and version.network
