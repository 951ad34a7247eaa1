"""The model's suggestion (docs/platform.md, "Suggestions"): calibration and suggestions in the
learner snapshot, calibrated model versions (predict, ONNX, Item.confidence), and where the
labeling card shows the suggestion (Campaign.show_suggestions)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

import learner
from labeling import annotation, campaign_learner, model_versions, suggestions
from labeling.embeddings.embedders import FakeEmbedder
from labeling.imports.write import import_file
from labeling.models import Assignment, Campaign, Item, LearnerPoint, LearnerSnapshot
from learner.calibration import Calibration
from tests.labeling.builders import embedded_campaign
from tests.support.clients import api_as

pytestmark = pytest.mark.django_db


def _label(items: list[Item], E: np.ndarray, who: Any, n: int) -> None:
    y = E @ np.random.default_rng(0).standard_normal(E.shape[1]) > 0
    for item, positive in zip(items[:n], y[:n], strict=True):
        annotation.submit_label(item, who, "positive" if positive else "negative")


def test_the_snapshot_gets_calibration_estimate_and_suggestions(
    campaign: Campaign, annotator: Any, settings: Any
) -> None:
    settings.CARVE_QUEUE_LENGTH = 8
    items, E = embedded_campaign(campaign, [f"review {i}" for i in range(60)])
    _label(items, E, annotator, 6)
    early = campaign_learner.update_learner(campaign.pk).snapshot
    assert early is not None and early.calibration == {} and early.estimate == {}
    assert {v[2] for v in early.suggestions.values()} == {"learning"}
    assert all(v[1] is None for v in early.suggestions.values())
    point = campaign_learner.measure_learner(campaign.pk)  # 6 labels: too few to calibrate
    assert point is not None and point.cv_accuracy is None
    early.refresh_from_db()
    assert early.calibration["status"] == "too_few_labels" and early.estimate == {}

    _label(items, E, annotator, 24)
    campaign_learner.update_learner(campaign.pk)
    # The measurement (off the update's path) fits the calibration and stores it.
    point = campaign_learner.measure_learner(campaign.pk)
    assert point is not None
    snapshot = LearnerSnapshot.objects.get(campaign=campaign)
    cal = snapshot.calibration
    assert cal["status"] == "fitted" and cal["temperature"] > 0 and cal["labels"] == 24
    assert cal["log_loss"] <= cal["log_loss_raw"]
    assert snapshot.estimate == {
        "accuracy": cal["accuracy"],
        "n": cal["n_labels"],
        "folds": cal["n_folds"],
    }
    assert LearnerPoint.objects.get(pk=point.pk).cv_accuracy == cal["accuracy"]
    # The next update uses the fitted temperature for its suggestions, and keeps it.
    annotation.submit_label(items[30], annotator, "positive")
    again = campaign_learner.update_learner(campaign.pk).snapshot
    assert again is not None and again.calibration == cal
    assert set(again.suggestions) == {str(pk) for pk in again.queue}
    for cls, probability, reason in again.suggestions.values():
        assert cls in (0, 1) and 0.5 <= probability <= 1
        assert reason in ("unsure", "new", "informative")
    # Other learner settings: the old temperature no longer applies.
    Campaign.objects.filter(pk=campaign.pk).update(n_gates=16)
    rebuilt = campaign_learner.update_learner(campaign.pk).snapshot
    assert rebuilt is not None and rebuilt.calibration == {} and rebuilt.estimate == {}


def test_a_model_version_is_calibrated_and_writes_item_predictions(
    campaign: Campaign, annotator: Any
) -> None:
    items, E = embedded_campaign(campaign, [f"review {i}" for i in range(40)])
    _label(items, E, annotator, 20)
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "done"
    version.refresh_from_db()
    cal = Calibration.from_dict(version.metrics["calibration"])
    assert cal.fitted and cal.temperature > 0
    net = learner.ReLUNetwork.from_dict(version.network)

    # Every item's predicted class and calibrated confidence, in bulk.
    probs = cal.probabilities(net.scores(E), net.task)
    rows = list(Item.objects.filter(campaign=campaign).order_by("position"))
    assert [r.predicted for r in rows] == list(probs.argmax(axis=1))
    np.testing.assert_allclose([r.confidence for r in rows], probs.max(axis=1), rtol=1e-6)

    # predict returns the same calibrated probabilities; ONNX computes them in its graph.
    texts = ["a brand new review", "another one", "and a third"]
    body = (
        api_as(annotator)
        .post(f"/api/v1/campaigns/{campaign.pk}/predict/", {"texts": texts}, format="json")
        .json()
    )
    got = np.array(
        [
            [r["probabilities"]["negative"], r["probabilities"]["positive"]]
            for r in body["predictions"]
        ]
    )
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    for row, p in zip(body["predictions"], got, strict=True):
        assert row["confidence"] == pytest.approx(p.max())
        assert row["label"] == ["negative", "positive"][int(p.argmax())]
    response = api_as(annotator).get(
        f"/api/v1/campaigns/{campaign.pk}/models/1/export/", {"as": "onnx"}
    )
    import onnxruntime

    session = onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    E_new = FakeEmbedder().encode(texts).astype(np.float32)
    (onnx_probs,) = session.run(["probabilities"], {"embedding": E_new})
    np.testing.assert_allclose(onnx_probs, got, rtol=1e-5, atol=1e-9)


def test_onnx_applies_the_temperature_for_multiclass() -> None:
    import onnxruntime

    from labeling.onnx_export import to_onnx

    rng = np.random.default_rng(3)
    pool = rng.standard_normal((100, 16))
    config = learner.LearnerConfig(task=learner.Task.MULTICLASS, n_classes=3, n_gates=8)
    state = learner.init_state(config, pool)
    state, _ = learner.recenter(learner.with_labels(state, pool[:12], np.arange(12) % 3))
    net = learner.center_network(state)
    data = to_onnx(net, ["a", "b", "c"], temperature=0.02)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    E = rng.standard_normal((10, 16)).astype(np.float32)
    (probs,) = session.run(["probabilities"], {"embedding": E})
    expected = Calibration.from_dict({"status": "fitted", "temperature": 0.02}).probabilities(
        net.scores(E), net.task
    )
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-9)


# --- where the card shows it --------------------------------------------------------------


def _card(campaign: Campaign, annotator: Any, item: Item) -> str:
    """The label page with ``item`` leased to ``annotator``."""
    Assignment.objects.filter(annotator=annotator).delete()
    Assignment.objects.create(
        item=item, annotator=annotator, expires_at=timezone.now() + timedelta(minutes=10)
    )
    client = Client()
    client.force_login(annotator)
    response = client.get(f"/campaigns/{campaign.pk}/label/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-item="{item.pk}"' in html
    return html


@pytest.mark.parametrize(
    ("mode", "shown"),
    [
        ("off", {"normal": False, "gold": False, "evaluation": False}),
        ("auto", {"normal": True, "gold": False, "evaluation": False}),
        ("all", {"normal": True, "gold": True, "evaluation": True}),
    ],
)
def test_show_suggestions_on_normal_gold_and_evaluation_items(
    campaign: Campaign, annotator: Any, mode: str, shown: dict[str, bool]
) -> None:
    body = "text,label\nplain item,\ngold item,positive\nheld item,\n"
    import_file(campaign, campaign.created_by, body.encode(), "d.csv")
    by_text = {i.text: i for i in Item.objects.filter(campaign=campaign)}
    Item.objects.filter(pk=by_text["held item"].pk).update(evaluation=True)
    Campaign.objects.filter(pk=campaign.pk).update(show_suggestions=mode)
    LearnerSnapshot.objects.create(
        campaign=campaign,
        state=b"",
        suggestions={str(i.pk): [1, 0.87, "informative"] for i in by_text.values()},
    )
    campaign.refresh_from_db()
    for kind, text in (
        ("normal", "plain item"),
        ("gold", "gold item"),
        ("evaluation", "held item"),
    ):
        item = Item.objects.get(pk=by_text[text].pk)
        html = _card(campaign, annotator, item)
        assert ("Model suggests" in html) is shown[kind], (mode, kind)
        if shown[kind]:
            assert 'id="suggestion-label">positive<' in html and "87%" in html


def test_reasons_in_plain_words_and_the_model_version_fallback(
    campaign: Campaign, annotator: Any
) -> None:
    import_file(campaign, campaign.created_by, b"text\na\nb\nc\n", "d.csv")
    a, b, c = Item.objects.filter(campaign=campaign).order_by("position")
    snapshot = LearnerSnapshot(
        campaign=campaign,
        suggestions={str(a.pk): [0, 0.52, "unsure"], str(b.pk): [1, None, "learning"]},
    )
    got = suggestions.for_item(campaign, a, snapshot)
    assert got is not None and got.percent == 52
    assert got.explanation == "the model is unsure: 52% negative"
    assert got.text == "Model suggests: negative · 52% (the model is unsure: 52% negative)"
    learning = suggestions.for_item(campaign, b, snapshot)
    assert learning is not None and learning.percent is None
    assert learning.text == "Model suggests: positive (the model is still learning)"
    assert suggestions.for_item(campaign, c, snapshot) is None
    c.predicted, c.confidence = 1, 0.91
    fallback = suggestions.for_item(campaign, c, snapshot)
    assert fallback is not None and (fallback.label, fallback.percent) == ("positive", 91)
    snapshot.state = b""
    snapshot.save()
    html = _card(campaign, annotator, a)
    assert "The model is unsure: 52% negative" in html
    # The buttons stay as they are: no pre-selected or highlighted answer.
    assert "autofocus" not in html and "aria-pressed" not in html


def test_write_predictions_updates_only_the_campaigns_pool_items_in_batches(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    """The bulk UPDATE ... FROM VALUES (SQLite and PostgreSQL), over several batches."""
    from labeling.embeddings.pool import Pool
    from labeling.models import Upload

    upload = Upload.objects.create(
        campaign=campaign,
        filename="d.csv",
        uploaded_by=manager,
        text_column="text",
        n_rows=0,
        n_created=0,
        n_blank=0,
        n_duplicates=0,
    )
    made = [
        Item.objects.create(
            campaign=campaign, upload=upload, text=f"t{i}", text_sha256=f"{i:064d}", position=i
        )
        for i in range(7)
    ]
    other = Campaign.objects.create(name="other", created_by=manager)
    stranger = Item.objects.create(
        campaign=other, upload=upload, text="x", text_sha256="x" * 64, position=0
    )
    rng = np.random.default_rng(0)
    E = rng.standard_normal((6, 8)).astype(np.float32)  # the last item is not embedded
    pool = Pool(E, np.array([m.pk for m in made[:6]], dtype=np.int64), "k")
    config = learner.LearnerConfig(task=learner.Task.BINARY, n_classes=2, n_gates=4)
    state = learner.init_state(config, E)
    state, _ = learner.recenter(learner.with_labels(state, E[:4], [0, 1, 0, 1]))
    net = learner.center_network(state)
    calibration = {"status": "fitted", "temperature": 0.05}
    model_versions.PREDICTION_BATCH, old = 4, model_versions.PREDICTION_BATCH
    try:
        assert model_versions.write_predictions(campaign, net, pool, calibration) == 6
    finally:
        model_versions.PREDICTION_BATCH = old
    probs = Calibration.from_dict(calibration).probabilities(net.scores(E), net.task)
    rows = list(Item.objects.filter(campaign=campaign).order_by("position"))
    assert [r.predicted for r in rows[:6]] == list(probs.argmax(axis=1))
    np.testing.assert_allclose([r.confidence for r in rows[:6]], probs.max(axis=1), rtol=1e-6)
    assert rows[6].predicted is None and rows[6].confidence is None
    stranger.refresh_from_db()
    assert stranger.predicted is None
