"""Model versions: retrain on demand and every N labels, metrics on held-out gold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import learner
from labeling import annotation, campaign_learner, model_versions, tasks
from labeling.models import Campaign, Item, ModelVersion
from tests.labeling.builders import embedded_campaign
from tests.support.locks import held_elsewhere

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready(campaign: Campaign) -> tuple[list[Item], np.ndarray, np.ndarray]:
    """60 embedded items; the last 20 carry gold labels from a linear teacher."""
    items, E = embedded_campaign(campaign, 60)
    y = (E @ np.random.default_rng(0).standard_normal(E.shape[1]) > 0).astype(int)
    for item, cls in zip(items[40:], y[40:], strict=True):
        Item.objects.filter(pk=item.pk).update(gold=["negative", "positive"][cls])
    return items, E, y


def _label(items: list[Item], y: np.ndarray, who: Any, n: int) -> None:
    for i in range(n):
        annotation.submit_label(items[i], who, ["negative", "positive"][y[i]])


def test_a_version_holds_both_candidates_scores_and_the_better_network(
    campaign: Campaign, annotator: Any, ready: Any
) -> None:
    items, E, y = ready
    _label(items, y, annotator, 20)
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "done"
    version.refresh_from_db()
    m = version.metrics
    assert (version.status, version.n_labels, m["n_gold"]) == ("done", 20, 20)
    assert 0 <= m["centre"]["gold_accuracy"] <= 1 and 0 <= m["convex"]["gold_accuracy"] <= 1
    better = "convex" if m["convex"]["gold_accuracy"] > m["centre"]["gold_accuracy"] else "centre"
    assert version.chosen == better and m["gold_accuracy"] == m[better]["gold_accuracy"]
    assert version.embedding_model == "fake-32"
    # The stored network predicts what its reported accuracy says.
    net = learner.ReLUNetwork.from_dict(version.network)
    gold_rows = list(range(40, 60))
    accuracy = float(np.mean(net.predict(E[gold_rows]) == y[gold_rows]))
    assert accuracy == pytest.approx(m["gold_accuracy"])


def test_a_retrain_waits_for_an_update_another_worker_is_running(
    campaign: Campaign, annotator: Any, ready: Any, monkeypatch: Any
) -> None:
    """With several workers, the retrain's own learner update can find another worker's
    update running ("busy"), one that may have started before the newest label: the version
    waits for it and then trains on every label."""
    items, _, y = ready
    _label(items, y, annotator, 12)
    real, calls = campaign_learner.update_learner, []

    def busy_twice(campaign_id: int) -> campaign_learner.UpdateOutcome:
        calls.append(campaign_id)
        if len(calls) <= 2:
            return campaign_learner.UpdateOutcome("busy")
        return real(campaign_id)

    monkeypatch.setattr(campaign_learner, "update_learner", busy_twice)
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "done"
    version.refresh_from_db()
    assert (version.n_labels, len(calls)) == (12, 3)


def test_without_labels_the_version_fails_with_a_reason(campaign: Campaign, ready: Any) -> None:
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "failed"
    version.refresh_from_db()
    assert version.status == "failed" and "Nothing to train on yet" in version.error


def test_a_version_is_fitted_once(campaign: Campaign, annotator: Any, ready: Any) -> None:
    items, _, y = ready
    _label(items, y, annotator, 5)
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "done"
    assert model_versions.retrain(version.pk) == "nothing"


def test_versions_are_numbered_per_campaign(campaign: Campaign) -> None:
    assert [model_versions.request_retrain(campaign).number for _ in range(3)] == [1, 2, 3]


def test_a_version_is_queued_automatically_every_n_labels(
    campaign: Campaign, annotator: Any, ready: Any
) -> None:
    items, _, y = ready
    Campaign.objects.filter(pk=campaign.pk).update(retrain_every=5)
    _label(items, y, annotator, 4)
    tasks.update_learner(campaign.pk)
    assert not ModelVersion.objects.exists()
    _label(items[4:], y[4:], annotator, 1)
    tasks.update_learner(campaign.pk)
    tasks.update_learner(campaign.pk)  # no new labels: no second version
    auto = ModelVersion.objects.get()
    assert (auto.trigger, auto.n_labels, auto.status) == ("auto", 5, "queued")


def test_a_manual_version_also_queues_the_automatic_one_it_makes_due(
    campaign: Campaign, annotator: Any, ready: Any
) -> None:
    """The fit trains on every label first; if that crosses ``retrain_every``, the automatic
    version is queued as the learner task would have."""
    items, _, y = ready
    Campaign.objects.filter(pk=campaign.pk).update(retrain_every=5)
    _label(items, y, annotator, 5)
    manual = model_versions.request_retrain(campaign)
    assert model_versions.retrain(manual.pk) == "done"
    versions = list(ModelVersion.objects.order_by("number").values_list("trigger", "n_labels"))
    assert versions == [("manual", 5), ("auto", 5)]


def test_retrain_now_is_for_managers_and_the_dashboard_lists_versions(
    campaign: Campaign, manager: Any, annotator: Any, ready: Any
) -> None:
    url = reverse("campaign-retrain", args=[campaign.pk])
    client = Client()
    client.force_login(annotator)
    assert client.post(url).status_code == 403
    client.force_login(manager)
    assert client.post(url).status_code == 302
    version = ModelVersion.objects.get()
    assert (version.trigger, version.created_by) == ("manual", manager)
    page = client.get(reverse("campaign-dashboard", args=[campaign.pk])).content.decode()
    assert "v1" in page and "Queued" in page


def test_a_version_whose_worker_died_is_redone_and_resent(
    campaign: Campaign, annotator: Any, ready: Any, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    items, _, y = ready
    _label(items, y, annotator, 5)
    version = model_versions.request_retrain(campaign)
    dead = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    ModelVersion.objects.filter(pk=version.pk).update(status="running", started_at=dead)
    assert model_versions.pending_versions() == [version.pk]
    assert model_versions.nudge(campaign) == 1  # never sent: sent now
    assert model_versions.nudge(campaign) == 0  # just sent
    assert model_versions.retrain(version.pk) == "done"
    assert model_versions.pending_versions() == []


def test_a_running_version_is_not_taken_twice(campaign: Campaign, ready: Any) -> None:
    from django.utils import timezone

    version = model_versions.request_retrain(campaign)
    ModelVersion.objects.filter(pk=version.pk).update(status="running", started_at=timezone.now())
    with held_elsewhere(f"version:{version.pk}"):  # the run that has it is alive
        assert model_versions.retrain(version.pk) == "nothing"
        assert model_versions.pending_versions() == []


def test_a_lost_database_connection_hands_the_version_back(
    campaign: Campaign, ready: Any, monkeypatch: Any
) -> None:
    from django.db import OperationalError

    version = model_versions.request_retrain(campaign)

    def disconnected(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection lost")

    monkeypatch.setattr(model_versions, "_fit", disconnected)
    with pytest.raises(OperationalError):
        model_versions.retrain(version.pk)
    version.refresh_from_db()
    assert version.status == "queued"


def test_a_version_whose_worker_died_is_taken_over_at_once_a_live_one_is_left_alone(
    campaign: Campaign, annotator: Any, ready: Any
) -> None:
    """A fit holds its version's lock (labeling.locks); a RUNNING version whose lock is free
    lost its worker and is re-sent and redone now, not after the task's time limit."""
    items, _, y = ready
    _label(items, y, annotator, 5)
    version = model_versions.request_retrain(campaign)
    ModelVersion.objects.filter(pk=version.pk).update(
        status="running", started_at=timezone.now(), attempt=1
    )
    with held_elsewhere(f"version:{version.pk}"):  # its worker is alive
        assert version.pk not in model_versions.pending_versions()
        assert model_versions.retrain(version.pk) == "nothing"
    assert version.pk in model_versions.pending_versions()  # now its worker is gone
    assert model_versions.retrain(version.pk) == "done"
    version.refresh_from_db()
    assert (version.status, version.attempt) == ("done", 2)


def test_a_version_whose_worker_keeps_dying_is_failed_with_the_reason(
    campaign: Campaign, settings: Any
) -> None:
    version = model_versions.request_retrain(campaign)
    ModelVersion.objects.filter(pk=version.pk).update(
        status="running", attempt=settings.CARVE_JOB_MAX_ATTEMPTS
    )
    assert model_versions.retrain(version.pk) == "nothing"
    version.refresh_from_db()
    assert version.status == "failed" and "stopped 3 times" in version.error
