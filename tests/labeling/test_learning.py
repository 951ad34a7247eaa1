"""The learner bridge: labels in the database -> learner state -> ranked queue."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F

import learner
from labeling import annotation, campaign_learner, consensus, review, tasks
from labeling.embeddings import chunks
from labeling.imports.write import import_file
from labeling.models import (
    Campaign,
    EmbeddingChunk,
    EmbeddingJob,
    Item,
    Label,
    LearnerPoint,
    LearnerSnapshot,
)
from tests.labeling.builders import embedded_campaign
from tests.support.locks import held_elsewhere

pytestmark = pytest.mark.django_db


def _teacher(E: np.ndarray) -> np.ndarray:
    w = np.random.default_rng(0).standard_normal(E.shape[1])
    return (E @ w > 0).astype(int)


def _label(items: list[Item], y: np.ndarray, who: Any, which: range) -> None:
    for i in which:
        annotation.submit_label(items[i], who, ["negative", "positive"][y[i]])


def test_nothing_to_do_before_the_embeddings(campaign: Campaign) -> None:
    assert campaign_learner.update_learner(campaign.pk).status == "no-embeddings"
    assert not LearnerSnapshot.objects.exists()


def test_without_labels_the_queue_holds_distinct_items(campaign: Campaign, settings: Any) -> None:
    settings.CARVE_QUEUE_LENGTH = 10
    items, _ = embedded_campaign(campaign)
    out = campaign_learner.update_learner(campaign.pk)
    assert out.status == "updated" and out.snapshot is not None
    queue = out.snapshot.queue
    assert len(queue) == len(set(queue)) == 10
    assert set(queue) <= {i.pk for i in items}
    assert out.snapshot.n_labels == 0 and out.snapshot.center_status == ""


def test_a_one_item_campaign_takes_a_second_import_and_its_learner_runs(
    campaign: Campaign, annotator: Any
) -> None:
    # Position 0 once made the next import start at 0 again (a duplicate key, a 500), and a
    # PCA projection of a one-item pool is not defined (the learner update failed).
    Campaign.objects.filter(pk=campaign.pk).update(projection_dim=16)  # below the fake 32-d
    items, _ = embedded_campaign(campaign, 1)
    annotation.submit_label(items[0], annotator, "positive")
    out = campaign_learner.update_learner(campaign.pk)
    assert out.status == "updated" and out.snapshot is not None
    assert out.snapshot.n_labels == 1 and out.snapshot.center_status
    import_file(campaign, campaign.created_by, b"text\nitem b\nitem c\n", "more.csv")
    positions = list(Item.objects.filter(campaign=campaign).values_list("position", flat=True))
    assert sorted(positions) == [0, 1, 2]
    fresh = Campaign.objects.get(pk=campaign.pk)
    assert campaign_learner.learner_config(fresh, 32, 1).projection is learner.Projection.NONE
    assert campaign_learner.learner_config(fresh, 32, 17).projection is learner.Projection.PCA


def test_labels_recentre_the_learner_and_the_queue_follows_its_scores(
    campaign: Campaign, annotator: Any
) -> None:
    items, E = embedded_campaign(campaign)
    y = _teacher(E)
    _label(items, y, annotator, range(12))
    out = campaign_learner.update_learner(campaign.pk)
    snap = out.snapshot
    assert snap is not None
    assert snap.n_labels == 12 and snap.center_status == "optimal"
    labeled = {items[i].pk for i in range(12)}
    assert not labeled & set(snap.queue)
    # The first queued item is the unlabeled item whose cut passes closest to the centre.
    state = learner.LearnerState.from_bytes(bytes(snap.state))
    scores = learner.score_pool(E, state.feature_map, state.gates, state.theta, state.config.task)
    scores[:12] = np.inf
    assert snap.queue[0] == items[int(np.argmin(scores))].pk


def test_new_labels_extend_the_state_and_an_undo_rebuilds_it(
    campaign: Campaign, annotator: Any
) -> None:
    items, E = embedded_campaign(campaign)
    y = _teacher(E)
    _label(items, y, annotator, range(8))
    assert campaign_learner.update_learner(
        campaign.pk
    ).snapshot.rebuilt  # first state: from scratch
    _label(items, y, annotator, range(8, 12))
    grown = campaign_learner.update_learner(campaign.pk).snapshot
    assert (grown.rebuilt, grown.n_labels) == (False, 12)
    annotation.undo_last(campaign, annotator)
    shrunk = campaign_learner.update_learner(campaign.pk).snapshot
    assert (shrunk.rebuilt, shrunk.n_labels) == (True, 11)
    # The rebuilt state is the one the labels alone give (docs/learner.md, "State").
    labels = [r[0] for r in shrunk.training]
    rows = [items.index(Item.objects.get(pk=pk)) for pk in labels]
    fresh, _ = learner.rebuild(
        campaign_learner.learner_config(campaign, E.shape[1]), E, E[rows], y[rows]
    )
    state = learner.LearnerState.from_bytes(bytes(shrunk.state))
    np.testing.assert_allclose(state.theta, fresh.theta, rtol=1e-6, atol=1e-9)


def test_other_settings_rebuild_the_state(campaign: Campaign, annotator: Any) -> None:
    items, E = embedded_campaign(campaign)
    _label(items, _teacher(E), annotator, range(6))
    campaign_learner.update_learner(campaign.pk)
    campaign.n_gates = 8
    campaign.save()
    snap = campaign_learner.update_learner(campaign.pk).snapshot
    assert snap.rebuilt
    assert learner.LearnerState.from_bytes(bytes(snap.state)).config.n_gates == 8


def test_a_run_that_finishes_after_a_newer_one_does_not_overwrite_it(
    campaign: Campaign,
) -> None:
    embedded_campaign(campaign)
    campaign_learner.update_learner(campaign.pk)
    LearnerSnapshot.objects.filter(campaign=campaign).update(version=10**6, queue=[1, 2])
    assert campaign_learner.update_learner(campaign.pk).status == "stale"
    assert LearnerSnapshot.objects.get().queue == [1, 2]


def test_requests_coalesce_into_one_task(
    campaign: Campaign, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        assert campaign_learner.request_update(campaign.pk)
        assert not campaign_learner.request_update(campaign.pk)
    campaign.refresh_from_db()
    assert len(callbacks) == 1
    assert (campaign.learner_pending, campaign.label_version) == (True, 2)
    campaign_learner.update_learner(campaign.pk)  # the task clears the flag when it starts
    campaign.refresh_from_db()
    assert not campaign.learner_pending


def test_disagreeing_annotators_keep_the_item_out_of_training(campaign: Campaign) -> None:
    items, _ = embedded_campaign(campaign, 10, overlap=2)
    a, b = (get_user_model().objects.create_user(n) for n in ("ann", "bob"))
    annotation.submit_label(items[0], a, "positive")
    annotation.submit_label(items[0], b, "negative")
    annotation.submit_label(items[1], a, "positive")
    annotation.submit_label(items[1], b, "positive")
    training = consensus.consensus(campaign)
    assert [row[0] for row in training.rows] == [items[1].pk]
    assert training.disagreements == [items[0].pk]
    assert Label.objects.count() == 4  # nothing is dropped from the database


def test_contradicting_labels_are_sent_to_review_as_suspects(
    campaign: Campaign, annotator: Any
) -> None:
    items, E = embedded_campaign(campaign, 20)
    # Two items with the same embedding, labeled both ways: no network fits both.
    E = E.copy()
    E[1] = E[0]
    job = EmbeddingJob.objects.get(campaign=campaign)
    EmbeddingChunk.objects.filter(campaign=campaign).delete()
    chunks.write(campaign.pk, job.model_name, 0, [i.text_sha256 for i in items], E)
    y = _teacher(E)
    _label(items, y, annotator, range(2, 10))
    annotation.submit_label(items[0], annotator, "positive")
    annotation.submit_label(items[1], annotator, "negative")
    snap = campaign_learner.update_learner(campaign.pk).snapshot
    # Soft cuts (docs/learner.md "Soft version space") admit both labels; the centre gets at
    # least one of them wrong, and that one is a suspect the manager reviews.
    assert snap.center_status == "optimal" and snap.conflicts == []
    assert {items[0].pk, items[1].pk} & set(snap.suspects)
    assert set(snap.suspects) <= {item.pk for item in items[:10]}
    assert set(snap.suspects[: settings.CARVE_REVIEW_SUSPECTS]) <= set(
        review.review_items(campaign)
    )


def test_saving_a_campaign_loaded_earlier_keeps_the_label_version(campaign: Campaign) -> None:
    stale_copy = Campaign.objects.get(pk=campaign.pk)
    campaign_learner.request_update(campaign.pk)
    stale_copy.name = "Renamed"
    stale_copy.save()
    campaign.refresh_from_db()
    assert (campaign.name, campaign.label_version, campaign.learner_pending) == (
        "Renamed",
        1,
        True,
    )


def _update_and_measure(campaign: Campaign) -> None:
    """What the update task and the measurement task it queues do, one after the other."""
    campaign_learner.update_learner(campaign.pk)
    campaign_learner.measure_learner(campaign.pk)


def test_each_update_records_gold_accuracy_and_diagnostics(
    campaign: Campaign, annotator: Any
) -> None:
    items, E = embedded_campaign(campaign, 40, labels=[""] * 40)
    y = _teacher(E)
    # The last 15 items carry gold labels from the same teacher.
    for item, cls in zip(items[25:], y[25:], strict=True):
        Item.objects.filter(pk=item.pk).update(gold=["negative", "positive"][cls])
    _label(items, y, annotator, range(10))
    campaign_learner.update_learner(campaign.pk)
    assert not LearnerPoint.objects.exists()  # the queue is stored first; measured apart
    campaign_learner.measure_learner(campaign.pk)
    point = LearnerPoint.objects.get(campaign=campaign)
    assert (point.n_labels, point.n_gold) == (10, 15)
    assert 0.0 <= point.gold_accuracy <= 1.0
    assert np.isfinite(point.log_volume) and 0.0 <= point.disagreement <= 1.0


def test_a_learner_update_pending_too_long_is_sent_again(campaign: Campaign, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    campaign_learner.request_update(campaign.pk)
    campaign.refresh_from_db()
    assert not campaign_learner.nudge(campaign)  # just requested
    long_ago = timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS + 1)
    Campaign.objects.filter(pk=campaign.pk).update(learner_requested_at=long_ago)
    campaign.refresh_from_db()
    assert campaign_learner.nudge(campaign)
    campaign.refresh_from_db()
    assert campaign.learner_requested_at > long_ago
    assert campaign_learner.pending_campaigns() == [campaign.pk]


def test_measurements_are_log_spaced_not_after_every_label(
    campaign: Campaign, annotator: Any
) -> None:
    items, E = embedded_campaign(campaign)
    y = _teacher(E)
    _label(items, y, annotator, range(10))
    _update_and_measure(campaign)
    _label(items, y, annotator, range(10, 12))
    _update_and_measure(campaign)
    assert list(LearnerPoint.objects.values_list("n_labels", flat=True)) == [10]
    _label(items, y, annotator, range(12, 15))
    _update_and_measure(campaign)
    assert list(LearnerPoint.objects.values_list("n_labels", flat=True)) == [10, 15]


def test_two_measurements_at_once_record_one_curve_point(
    campaign: Campaign, annotator: Any, monkeypatch: Any
) -> None:
    items, E = embedded_campaign(campaign)
    y = _teacher(E)
    _label(items, y, annotator, range(10))
    measure = campaign_learner._measure

    def concurrent(*args: Any, **kwargs: Any) -> LearnerPoint:
        # While this run measures, another update (one label behind) records its point.
        LearnerPoint.objects.create(campaign=campaign, n_labels=9)
        return measure(*args, **kwargs)

    monkeypatch.setattr(campaign_learner, "_measure", concurrent)
    _update_and_measure(campaign)
    assert list(LearnerPoint.objects.values_list("n_labels", flat=True)) == [9]


def test_a_second_agreeing_label_extends_the_state_instead_of_rebuilding(
    campaign: Campaign,
) -> None:
    items, E = embedded_campaign(campaign, 20, overlap=2)
    a, b = (get_user_model().objects.create_user(n) for n in ("ann", "bob"))
    annotation.submit_label(items[0], a, "positive")
    annotation.submit_label(items[1], a, "negative")
    campaign_learner.update_learner(campaign.pk)
    annotation.submit_label(items[0], b, "positive")  # agrees
    annotation.submit_label(items[2], a, "positive")
    snap = campaign_learner.update_learner(campaign.pk).snapshot
    assert (snap.rebuilt, snap.n_labels) == (False, 3)


def test_a_learner_left_behind_by_a_killed_worker_is_sent_again(
    campaign: Campaign, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    embedded_campaign(campaign, 10)
    campaign_learner.update_learner(campaign.pk)
    # A label change whose update started (flag cleared) and died with its worker.
    long_ago = timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS + 1)
    Campaign.objects.filter(pk=campaign.pk).update(
        label_version=F("label_version") + 1, learner_pending=False, learner_requested_at=long_ago
    )
    campaign.refresh_from_db()
    assert campaign_learner.pending_campaigns() == [campaign.pk]
    assert campaign_learner.nudge(campaign)
    campaign_learner.update_learner(campaign.pk)
    assert campaign_learner.pending_campaigns() == []


def test_a_campaign_edit_cannot_drop_a_label_in_use_and_keeps_a_concurrent_stop(
    campaign: Campaign, annotator: Any
) -> None:
    from django.utils import timezone

    from labeling.forms import CampaignForm

    import_file(campaign, campaign.created_by, b"text\nsomething\n", "d.csv")
    annotation.submit_label(Item.objects.get(), annotator, "negative")
    loaded = Campaign.objects.get(pk=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(stopped_at=timezone.now())
    data = {
        "name": "x",
        "labels_text": "bad\npositive",
        "depth": 2,
        "n_gates": 32,
        "projection_dim": 64,
        "radius": 1,
        "batch_size": 4,
        "seed": 0,
        "overlap": 1,
        "gold_rate": 0.1,
        "retrain_every": 50,
    }
    form = CampaignForm(data, instance=loaded)
    assert not form.is_valid()
    assert "Labels given must stay in the label set: 'negative'." in form.errors["labels_text"]
    form = CampaignForm({**data, "labels_text": "negative\npositive\nmixed"}, instance=loaded)
    assert form.is_valid(), form.errors
    form.save()
    campaign.refresh_from_db()
    assert campaign.labels == ["negative", "positive", "mixed"]
    assert campaign.stopped_at is not None  # the stale copy did not resume the campaign


def test_one_update_per_campaign_at_a_time_the_second_is_busy(
    campaign: Campaign, annotator: Any
) -> None:
    items, E = embedded_campaign(campaign)
    _label(items, _teacher(E), annotator, range(5))
    with held_elsewhere(f"learner:{campaign.pk}"):
        assert campaign_learner.update_learner(campaign.pk).status == "busy"
        assert not LearnerSnapshot.objects.exists()
    assert campaign_learner.update_learner(campaign.pk).status == "updated"


def test_an_update_that_saw_labels_arrive_meanwhile_sends_itself_again(
    campaign: Campaign, annotator: Any, monkeypatch: Any
) -> None:
    items, E = embedded_campaign(campaign)
    y = _teacher(E)
    _label(items, y, annotator, range(5))
    sent: list[int] = []
    monkeypatch.setattr(tasks.update_learner, "delay", sent.append)
    original = learner.recenter

    def label_meanwhile(state: Any) -> Any:  # a label lands while the centre is computed
        Campaign.objects.filter(pk=campaign.pk).update(label_version=F("label_version") + 1)
        return original(state)

    monkeypatch.setattr(learner, "recenter", label_meanwhile)
    assert tasks.update_learner(campaign.pk) == "updated"
    assert sent == [campaign.pk]
    monkeypatch.setattr(learner, "recenter", original)
    sent.clear()
    assert tasks.update_learner(campaign.pk) == "updated"
    assert sent == []  # caught up: no further message
