"""The resend sweep every worker runs (labeling.resend), called directly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from labeling import campaign_learner, resend, tasks
from labeling.models import Campaign, EmbeddingJob


def test_the_sweep_resends_a_learner_update_whose_message_was_lost(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(tasks.update_learner, "delay", sent.append)
    campaign_learner.request_update(campaign.pk)  # (no commit in this test: the message is lost)
    assert resend.sweep() == 0 and sent == []  # just requested: give it time
    waited = timezone.now() - timedelta(seconds=settings.CARVE_RESEND_SECONDS + 1)
    Campaign.objects.filter(pk=campaign.pk).update(learner_requested_at=waited)
    assert resend.sweep() == 1 and sent == [campaign.pk]
    assert resend.sweep() == 0 and sent == [campaign.pk]  # at most once per period


def test_the_sweep_resends_an_embedding_job_never_sent_and_leaves_a_live_one(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(tasks.embed_campaign, "delay", sent.append)
    lost = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    EmbeddingJob.objects.create(
        campaign=campaign, model_name="fake-32", status="running", heartbeat_at=timezone.now()
    )
    assert resend.sweep() == 1 and sent == [lost.pk]


def test_tasks_retry_a_lost_database_for_minutes_not_seconds() -> None:
    """A PostgreSQL restart took ~10 s; five quick retries used to be spent within ~7 s."""
    from celery.utils.time import get_exponential_backoff_interval

    task = tasks.update_learner
    waits = [
        get_exponential_backoff_interval(
            factor=task.retry_backoff, retries=n, maximum=task.retry_backoff_max, full_jitter=False
        )
        for n in range(task.max_retries)
    ]
    assert sum(waits) >= 60 and waits[0] <= 5
