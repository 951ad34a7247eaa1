"""Faults on the real stack: Redis stopped under a running worker (docs/platform.md,
"Reliability").

A label given while the broker is down is stored, but the message asking for a learner
update is lost. Nobody opens a page here: the worker's resend sweep (labeling.resend) must
notice the learner is behind and bring it up to date once Redis is back, and the worker must
survive the outages.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from labeling import annotation, locks, model_versions, tasks
from labeling.models import Campaign, Label, LearnerSnapshot, ModelVersion
from tests.labeling.builders import embedded_campaign
from tests.support.clients import api_as
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
OUTAGE_SECONDS = 30.0
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


@pytest.mark.skipif(
    not os.environ.get("CARVE_TEST_PG_CTL"),
    reason="restarts the throwaway PostgreSQL server of `make test-postgres` (SQLite has none)",
)
def test_a_postgresql_restart_is_a_503_then_labeling_and_the_learner_carry_on(
    campaign: Campaign, annotator: Any, start_worker: Any
) -> None:
    items, _ = embedded_campaign(campaign, 30, gold_rate=0)
    worker = start_worker("steady")
    api = api_as(annotator)
    base = f"/api/v1/campaigns/{campaign.pk}"

    def label_one() -> int:
        served = api.post(f"{base}/next/")
        assert served.status_code == 200, served.content
        item = served.json()["id"]
        given = api.post(f"{base}/labels/", {"item": item, "value": "positive"}, format="json")
        assert given.status_code == 201, given.content
        return int(item)

    labeled = [label_one() for _ in range(3)]
    pg_ctl = os.environ["CARVE_TEST_PG_CTL"].split()
    subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True)
    try:
        down = api.post(f"{base}/next/")
        assert down.status_code == 503 and down["Content-Type"] == "application/json"
        assert int(down["Retry-After"]) > 0
        time.sleep(3)
    finally:
        options = os.environ["CARVE_TEST_PG_OPTIONS"]
        subprocess.run([*pg_ctl, "-o", options, "start"], check=True, capture_output=True)
    connection.close()  # as the next request of a web process does with a broken connection
    labeled += [label_one() for _ in range(3)]
    assert sorted(Label.objects.values_list("item_id", flat=True)) == sorted(labeled)
    wait_for(
        lambda: _learner_labels(campaign) == len(labeled),
        60,
        "the learner to catch up after the restart",
        worker.log,
    )


def test_a_learner_update_whose_worker_is_killed_is_redone_by_the_next_worker(
    campaign: Campaign, annotator: Any, start_worker: Any
) -> None:
    items, E = embedded_campaign(campaign, 700, retrain_every=0)
    for i, item in enumerate(items[:600]):  # sent on commit; no worker has taken them yet
        annotation.submit_label(item, annotator, "positive" if E[i, 0] > 0 else "negative")
    doomed = start_worker("doomed")
    lock = f"learner:{campaign.pk}"
    wait_for(lambda: not locks.is_free(lock), 60, "the update to start", doomed.log)
    doomed.kill()
    # The lock dies with its holder: at once for a file lock; PostgreSQL ends the
    # session (and its advisory lock) when the backend notices the closed socket.
    wait_for(lambda: locks.is_free(lock), 30, "the lock to die with its holder", doomed.log)
    assert _learner_labels(campaign) < 600  # killed before it stored the update
    rescuer = start_worker("rescuer")  # re-sends the behind learner when it starts
    wait_for(lambda: _learner_labels(campaign) == 600, 120, "the redone update", rescuer.log)
