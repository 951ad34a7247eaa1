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


def test_learner_updates_take_the_default_queue_and_long_work_the_slow_one() -> None:
    # docs/platform.md, "Workers and queues".
    from labeling import queue

    celery_app.loader.import_default_modules()  # registers labeling.tasks

    def queue_of(task: str) -> str:
        assert task in celery_app.tasks, task
        return str(celery_app.amqp.router.route({}, task)["queue"].name)

    assert queue_of(queue.UPDATE_LEARNER) == "celery"
    slow = (queue.IMPORT, queue.EMBED, queue.EMBED_CHUNK, queue.RETRAIN, queue.MEASURE_LEARNER)
    slow += (queue.DELIVER_WEBHOOK,)  # it waits on another server ("Webhooks")
    slow += (queue.EXPORT,)  # an export job writes a whole campaign ("Export jobs")
    slow += (queue.NEAR_DUPLICATES,)  # up to a minute at 100,000 items ("Near-duplicates")
    for task in slow:
        assert queue_of(task) == "slow", task
    # Only those are routed (a misspelt name would route nothing); any other task, and any
    # task added later, takes the default queue.
    assert set(celery_app.conf.task_routes) == set(slow)


def test_a_worker_consumes_every_queue_unless_told_otherwise() -> None:
    from labeling.demo import WORKER_QUEUES, celery_worker_argv

    # `celery worker` without -Q (docker-compose, a hand-started worker) consumes these.
    assert tuple(celery_app.amqp.queues) == WORKER_QUEUES == ("celery", "slow")
    argv = celery_worker_argv("w", 2)
    assert argv[argv.index("-Q") + 1] == "celery,slow"
    argv = celery_worker_argv("w", 2, queues=["slow"])
    assert argv[argv.index("-Q") + 1] == "slow"
