"""The labeling loop through the real stack: HTTP views, redis-server, a Celery worker.

Labels go in through the annotator's page; the worker updates the learner after each one;
the next item served is the first available item of the learner's ranked queue.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from labeling.embeddings.embedders import FakeEmbedder
from labeling.imports.write import import_file
from labeling.models import Campaign, EmbeddingJob, Item, LearnerSnapshot
from tests.support.processes import (
    Worker,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture
def worker(start_worker: Callable[..., Worker]) -> Worker:
    return start_worker("loop", QUEUE_LENGTH="8")


def _snapshot(campaign: Campaign) -> LearnerSnapshot | None:
    return LearnerSnapshot.objects.filter(campaign=campaign).first()


def _caught_up(campaign: Campaign) -> bool:
    campaign.refresh_from_db()
    snap = _snapshot(campaign)
    return snap is not None and snap.version == campaign.label_version


def _served(client: Client, url: str) -> int:
    match = re.search(r'data-item="(\d+)"', client.get(url).content.decode())
    assert match is not None
    return int(match.group(1))


def test_labels_through_the_page_drive_the_learner_and_its_queue(
    campaign: Campaign, annotator: Any, worker: Worker
) -> None:
    # Every label trains and is the queue's head: no gold, no evaluation set.
    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0, evaluation_size=0)
    texts = [f"review {i}" for i in range(120)]
    import_file(campaign, campaign.created_by, ("text\n" + "\n".join(texts)).encode(), "r.csv")
    assert EmbeddingJob.objects.filter(campaign=campaign).exists()
    wait_for(
        lambda: _caught_up(campaign), 60, "embeddings and the first learner update", worker.log
    )
    items = {i.pk: i for i in Item.objects.filter(campaign=campaign)}
    E = FakeEmbedder().encode([items[pk].text for pk in sorted(items)])
    row = {pk: r for r, pk in enumerate(sorted(items))}
    teacher = np.random.default_rng(0).standard_normal(E.shape[1])

    client = Client()
    client.force_login(annotator)
    url = reverse("campaign-label", args=[campaign.pk])
    for step in range(12):
        before = _snapshot(campaign)
        served = _served(client, url)
        assert before is not None and served == before.queue[0], f"step {step}"
        value = "positive" if E[row[served]] @ teacher > 0 else "negative"
        response = client.post(url, {"action": "label", "item": served, "value": value})
        assert response.status_code == 302
        wait_for(lambda: _caught_up(campaign), 30, f"the learner after label {step}", worker.log)
        after = _snapshot(campaign)
        assert after is not None and served not in after.queue
    snap = _snapshot(campaign)
    assert snap is not None and (snap.n_labels, snap.center_status) == (12, "optimal")

    client.post(url, {"action": "undo"})
    wait_for(lambda: _caught_up(campaign), 30, "the learner after undo", worker.log)
    snap = _snapshot(campaign)
    assert snap is not None and (snap.n_labels, snap.rebuilt) == (11, True)


def test_a_worker_killed_during_the_loop_loses_no_label_and_a_new_one_catches_up(
    campaign: Campaign, annotator: Any, worker: Worker, start_worker: Callable[..., Worker]
) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0, retrain_every=0, evaluation_size=0)
    texts = [f"sentence {i}" for i in range(60)]
    import_file(campaign, campaign.created_by, ("text\n" + "\n".join(texts)).encode(), "r.csv")
    wait_for(lambda: _caught_up(campaign), 60, "the first learner update", worker.log)
    start = campaign.label_version  # the finished embeddings counted as one change
    client = Client()
    client.force_login(annotator)
    url = reverse("campaign-label", args=[campaign.pk])
    served = _served(client, url)
    client.post(url, {"action": "label", "item": served, "value": "positive"})
    worker.kill()  # SIGKILL: mid-update or with the update still queued
    for _ in range(5):  # labeling goes on while no worker runs
        served = _served(client, url)
        response = client.post(url, {"action": "label", "item": served, "value": "negative"})
        assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.label_version == start + 6 and not _caught_up(campaign)

    rescuer = start_worker("rescuer")
    wait_for(lambda: _caught_up(campaign), 60, "the new worker to catch up", rescuer.log)
    snap = _snapshot(campaign)
    assert snap is not None and snap.n_labels == 6


def test_annotators_who_disagree_send_the_item_to_review(
    campaign: Campaign, manager: Any, worker: Worker
) -> None:
    from django.contrib.auth import get_user_model

    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0, overlap=2)
    import_file(campaign, campaign.created_by, b"text\nIt was fine I guess\n", "r.csv")
    wait_for(lambda: _caught_up(campaign), 60, "the first learner update", worker.log)
    url = reverse("campaign-label", args=[campaign.pk])
    for name, value in (("ann", "positive"), ("bob", "negative")):
        user = get_user_model().objects.create_user(name)
        campaign.annotators.add(user)
        client = Client()
        client.force_login(user)
        client.post(url, {"action": "label", "item": _served(client, url), "value": value})
    wait_for(lambda: _caught_up(campaign), 30, "the learner", worker.log)
    review = Client()
    review.force_login(manager)
    page = review.get(reverse("campaign-review", args=[campaign.pk])).content.decode()
    assert "It was fine I guess" in page
    assert "<strong>positive</strong> by ann" in page and "<strong>negative</strong> by bob" in page
