"""The Celery app takes its configuration from the CELERY_* Django settings."""

from __future__ import annotations

from config import celery_app


def test_it_reads_celery_settings_from_django() -> None:
    conf = celery_app.conf

    assert celery_app.main == "carve"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"


def test_redis_visibility_timeout_outlasts_the_hard_time_limit() -> None:
    conf = celery_app.conf

    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
