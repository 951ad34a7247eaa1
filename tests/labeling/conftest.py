"""Personas and a campaign, after healthchecks's hc/test.py: who may see and do what."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from labeling.demo import WORKER_QUEUES
from labeling.models import Campaign
from labeling.permissions import MANAGER_GROUP
from tests.support.processes import Worker, database_url, redis_server, use_broker, worker_env


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Rate-limit counts start at zero in every test (ids repeat across rolled-back tests)."""
    from django.core.cache import caches

    caches["throttle"].clear()


@pytest.fixture(autouse=True)
def _data_dir(settings: Any, tmp_path: Path) -> Path:
    """Embedding caches go to a fresh directory per test, never into the checkout."""
    settings.CARVE_DATA_DIR = tmp_path / "data"
    from labeling.embeddings import pool

    pool._kept.clear()  # and no pool kept in memory from another test
    return settings.CARVE_DATA_DIR


@pytest.fixture
def manager(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("manager", password="pw-manager")
    group, _ = Group.objects.get_or_create(name=MANAGER_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def other_manager(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("other-manager", password="pw-other")
    group, _ = Group.objects.get_or_create(name=MANAGER_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("admin", password="pw-admin", is_staff=True)


@pytest.fixture
def annotator(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("annotator", password="pw-annotator")


@pytest.fixture
def outsider(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("outsider", password="pw-outsider")


@pytest.fixture
def campaign(manager: Any, annotator: Any) -> Campaign:
    campaign = Campaign.objects.create(
        name="Movie reviews", instructions="Is the review positive?", created_by=manager
    )
    campaign.annotators.add(annotator)
    return campaign


# --- the real stack: redis-server and Celery worker processes (integration tests) -----------


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server, used as this process's broker while the test runs."""
    from config.celery_app import app

    old = app.conf.broker_url
    with redis_server(tmp_path) as url:
        use_broker(app, url)
        try:
            yield url
        finally:
            use_broker(app, old)


@pytest.fixture
def start_worker(redis_url: str, tmp_path: Path, settings: Any) -> Iterator[Callable[..., Worker]]:
    """``start_worker(name, queues=..., **env)``: a Celery worker on the test database and
    broker (its log in tmp_path/<name>.log), consuming every queue unless ``queues`` names
    some, stopped at the end of the test. Needs a transactional test
    (``django_db(transaction=True)``) so the worker sees what the test writes."""
    started: list[Worker] = []

    def start(name: str, queues: Sequence[str] = WORKER_QUEUES, **env: str) -> Worker:
        worker = Worker(
            name,
            worker_env(
                DATABASE_URL=database_url(connection.settings_dict),
                REDIS_URL=redis_url,
                CARVE_DATA_DIR=str(settings.CARVE_DATA_DIR),
                **env,
            ),
            tmp_path / f"{name}.log",
            queues,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
