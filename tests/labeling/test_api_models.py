"""REST API: model versions, their JSON/npz export, and predictions with their errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import learner
from labeling import annotation, campaign_learner, model_versions
from labeling.embeddings.embedders import FakeEmbedder
from labeling.models import Campaign, Item
from tests.labeling.builders import embedded_campaign
from tests.support.clients import api_as as _api

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(campaign: Campaign, annotator: Any) -> Campaign:
    items, E = embedded_campaign(campaign, [f"review {i}" for i in range(30)])
    y = E @ np.random.default_rng(0).standard_normal(E.shape[1]) > 0
    for item, positive in zip(items[:12], y[:12], strict=True):
        annotation.submit_label(item, annotator, "positive" if positive else "negative")
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "done"
    return campaign


def test_versions_are_listed_with_metrics(trained: Campaign, annotator: Any) -> None:
    rows = _api(annotator).get(f"/api/v1/campaigns/{trained.pk}/models/").json()
    assert [r["number"] for r in rows] == [1]
    assert rows[0]["status"] == "done" and rows[0]["n_labels"] == 12
    assert rows[0]["embedding_model"] == "fake-32"


def test_json_and_npz_exports_predict_like_carve(trained: Campaign, annotator: Any) -> None:
    api = _api(annotator)
    url = f"/api/v1/campaigns/{trained.pk}/models/1/export/"
    doc = api.get(url).json()
    assert (doc["model_version"], doc["classes"]) == (1, ["negative", "positive"])
    from_json = learner.ReLUNetwork.from_dict(doc["network"])
    npz = api.get(url, {"as": "npz"})
    assert npz["Content-Type"] == "application/octet-stream"
    from_npz = learner.ReLUNetwork.from_npz(b"".join([npz.content]))
    E = FakeEmbedder().encode([f"new text {i}" for i in range(20)])
    np.testing.assert_allclose(from_json.scores(E), from_npz.scores(E), rtol=1e-12)
    assert api.get(url, {"as": "xml"}).status_code == 400
    assert api.get(f"/api/v1/campaigns/{trained.pk}/models/9/export/").status_code == 404


def test_predict_returns_labels_scores_and_the_version(trained: Campaign, annotator: Any) -> None:
    texts = ["a brand new review", "another one"]
    response = _api(annotator).post(
        f"/api/v1/campaigns/{trained.pk}/predict/", {"texts": texts}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["model_version"] == 1 and len(body["predictions"]) == 2
    net = learner.ReLUNetwork.from_dict(trained.models.get().network)
    expected = net.predict(FakeEmbedder().encode(texts))
    for row, cls in zip(body["predictions"], expected, strict=True):
        assert row["label"] == ["negative", "positive"][cls]
        assert (row["scores"]["positive"] > 0) == bool(cls)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "at least one text"),
        (["ok", 3], "non-empty strings"),
        (["ok", "  "], "non-empty strings"),
        (["t"] * 5, "At most 4 texts"),
    ],
)
def test_predict_refuses_bad_input(
    trained: Campaign, annotator: Any, settings: Any, texts: list[Any], message: str
) -> None:
    settings.CARVE_PREDICT_MAX_TEXTS = 4
    response = _api(annotator).post(
        f"/api/v1/campaigns/{trained.pk}/predict/", {"texts": texts}, format="json"
    )
    assert response.status_code == 400 and message in str(response.json()["texts"])


def test_predict_bounds_the_characters_of_one_request(
    trained: Campaign, annotator: Any, settings: Any
) -> None:
    """250 texts of ~9.5k characters once tied a web process up for 30 s."""
    settings.CARVE_PREDICT_MAX_CHARS = 1000
    url = f"/api/v1/campaigns/{trained.pk}/predict/"
    response = _api(annotator).post(url, {"texts": ["x" * 600, "y" * 600]}, format="json")
    assert response.status_code == 400 and "at most 1,000" in str(response.json()["texts"])
    assert _api(annotator).post(url, {"texts": ["x" * 600]}, format="json").status_code == 200


def test_predict_is_rate_limited_per_caller(
    trained: Campaign, annotator: Any, manager: Any, settings: Any
) -> None:
    settings.CARVE_PREDICT_RATE = "2/minute"
    url = f"/api/v1/campaigns/{trained.pk}/predict/"
    client = _api(annotator)
    assert [client.post(url, {"texts": ["ok"]}, format="json").status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    limited = client.post(url, {"texts": ["ok"]}, format="json")
    assert int(limited["Retry-After"]) > 0
    assert _api(manager).post(url, {"texts": ["ok"]}, format="json").status_code == 200


def test_predict_without_a_model_is_409(campaign: Campaign, annotator: Any) -> None:
    response = _api(annotator).post(
        f"/api/v1/campaigns/{campaign.pk}/predict/", {"texts": ["x"]}, format="json"
    )
    assert response.status_code == 409 and "no trained model yet" in response.json()["detail"]


def test_predict_on_another_embedding_model_is_409(
    trained: Campaign, annotator: Any, settings: Any
) -> None:
    settings.CARVE_EMBEDDER = "sentence-transformers"  # this server now embeds with MiniLM
    response = _api(annotator).post(
        f"/api/v1/campaigns/{trained.pk}/predict/", {"texts": ["x"]}, format="json"
    )
    assert response.status_code == 409 and "fake-32" in response.json()["detail"]


def test_model_endpoints_are_404_for_outsiders(trained: Campaign, outsider: Any) -> None:
    api = _api(outsider)
    base = f"/api/v1/campaigns/{trained.pk}"
    assert api.get(f"{base}/models/").status_code == 404
    assert api.get(f"{base}/models/1/export/").status_code == 404
    assert api.post(f"{base}/predict/", {"texts": ["x"]}, format="json").status_code == 404


def _run_onnx(data: bytes, E: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["scores"], {"embedding": E.astype(np.float32)})[0]


def test_the_onnx_export_runs_in_onnxruntime_and_matches_carve(
    trained: Campaign, annotator: Any
) -> None:
    response = _api(annotator).get(
        f"/api/v1/campaigns/{trained.pk}/models/1/export/", {"as": "onnx"}
    )
    assert response.status_code == 200
    net = learner.ReLUNetwork.from_dict(trained.models.get().network)
    E = FakeEmbedder().encode([f"unseen {i}" for i in range(50)])
    np.testing.assert_allclose(_run_onnx(response.content, E), net.scores(E), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("n_classes", "components", "depth"),
    [(2, 16, 2), (3, None, 2), (4, 8, 2), (2, 16, 3), (3, None, 4)],
)
def test_onnx_matches_projected_multiclass_and_deep_networks(
    n_classes: int, components: int | None, depth: int
) -> None:
    from labeling.onnx_export import to_onnx

    rng = np.random.default_rng(n_classes)
    pool = rng.standard_normal((200, 32))
    config = learner.LearnerConfig(
        task=learner.Task.BINARY if n_classes == 2 else learner.Task.MULTICLASS,
        n_classes=n_classes,
        n_gates=8 if depth == 2 else None,
        depth=depth,
        projection=learner.Projection.PCA if components else learner.Projection.NONE,
        n_components=components,
    )
    state = learner.init_state(config, pool)
    state = learner.with_labels(state, pool[:12], np.arange(12) % n_classes)
    state, _ = learner.recenter(state)
    net = learner.center_network(state)
    assert net.depth == depth
    data = to_onnx(net, [f"c{i}" for i in range(n_classes)])
    E = rng.standard_normal((40, 32)).astype(np.float32)
    np.testing.assert_allclose(_run_onnx(data, E), net.scores(E), rtol=1e-5, atol=1e-9)


# --- retrain and one version -----------------------------------------------------------------


def test_retrain_queues_the_next_version_for_managers_only(
    trained: Campaign, manager: Any, annotator: Any, outsider: Any
) -> None:
    url = f"/api/v1/campaigns/{trained.pk}/retrain/"
    assert _api(annotator).post(url).status_code == 403
    assert _api(outsider).post(url).status_code == 404
    response = _api(manager).post(url)
    assert response.status_code == 202
    body = response.json()
    assert (body["number"], body["status"], body["trigger"]) == (2, "queued", "manual")
    assert response["Location"].endswith(f"/api/v1/campaigns/{trained.pk}/models/2/")
    version = trained.models.get(number=2)
    assert version.created_by == manager
    assert model_versions.retrain(version.pk) == "done"
    polled = _api(annotator).get(f"/api/v1/campaigns/{trained.pk}/models/2/").json()
    assert polled["status"] == "done" and polled["n_labels"] == 12
    assert polled["metrics"] == version.__class__.objects.get(pk=version.pk).metrics != {}
    assert _api(annotator).get(f"/api/v1/campaigns/{trained.pk}/models/7/").status_code == 404


# --- metrics and diagnostics -----------------------------------------------------------------


def test_metrics_report_progress_agreement_learner_and_model(
    trained: Campaign, manager: Any, annotator: Any, django_user_model: Any
) -> None:
    from labeling import dashboard

    campaign_learner.update_learner(trained.pk)
    second = django_user_model.objects.create_user("second")
    trained.annotators.add(second)
    first_item = Item.objects.filter(campaign=trained).order_by("position").first()
    assert first_item is not None
    theirs = first_item.labels.get().value
    other = "negative" if theirs == "positive" else "positive"
    annotation.submit_label(first_item, second, other)  # a disagreement: in review

    response = _api(manager).get(f"/api/v1/campaigns/{trained.pk}/metrics/")
    assert response.status_code == 200, response.content
    body = response.json()
    trained.refresh_from_db()  # label_version moved on
    summary = dashboard.summarize(trained)
    assert (body["n_items"], body["n_labels"], body["n_done"]) == (30, 13, 12)
    assert body["n_review"] == summary.n_review >= 1
    assert sum(body["distribution"].values()) == 13
    assert {a["username"]: a["n_labels"] for a in body["annotators"]} == {
        "annotator": 12,
        "second": 1,
    }
    assert body["agreement"]["statistic"] == "Cohen's kappa"
    assert body["agreement"]["n_items"] == 1
    assert body["embedding"]["status"] == "done" and body["embedding"]["n_total"] == 30
    learner_state = body["learner"]
    assert learner_state["n_labels"] == 12 and learner_state["center_status"] == "optimal"
    assert learner_state["lag"] == summary.lag >= 1  # the new label is not reflected yet
    assert all(isinstance(i, int) for i in learner_state["queue"])
    assert [p["n_labels"] for p in body["curve"]] == [p.n_labels for p in summary.curve]
    assert body["latest_model"] == 1 and body["stopped"] is False


def test_metrics_of_an_empty_campaign_and_who_may_read_them(
    campaign: Campaign, manager: Any, annotator: Any, outsider: Any
) -> None:
    url = f"/api/v1/campaigns/{campaign.pk}/metrics/"
    body = _api(manager).get(url).json()
    assert (body["n_items"], body["n_labels"], body["embedding"], body["learner"]) == (
        0,
        0,
        None,
        None,
    )
    assert body["curve"] == [] and body["latest_model"] is None
    assert body["agreement"] == {"statistic": "", "value": None, "n_items": 0}
    assert _api(annotator).get(url).status_code == 403
    assert _api(outsider).get(url).status_code == 404


def test_a_depth_3_campaign_learns_trains_exports_and_predicts(
    campaign: Campaign, annotator: Any, manager: Any
) -> None:
    items, E = embedded_campaign(campaign, [f"deep review {i}" for i in range(40)], depth=3)
    y = E @ np.random.default_rng(1).standard_normal(E.shape[1]) > 0
    for item, positive in zip(items[:16], y[:16], strict=True):
        annotation.submit_label(item, annotator, "positive" if positive else "negative")
    assert campaign_learner.update_learner(campaign.pk).status == "updated"
    state = learner.LearnerState.from_bytes(bytes(campaign.learner.state))
    assert state.config.depth == 3 and state.gates.sizes == (8, 2)
    version = model_versions.request_retrain(campaign)
    assert model_versions.retrain(version.pk) == "done"
    api = _api(annotator)
    doc = api.get(f"/api/v1/campaigns/{campaign.pk}/models/1/export/").json()
    net = learner.ReLUNetwork.from_dict(doc["network"])
    assert net.depth == 3
    onnx = api.get(f"/api/v1/campaigns/{campaign.pk}/models/1/export/", {"as": "onnx"})
    new = FakeEmbedder().encode([f"another text {i}" for i in range(12)])
    np.testing.assert_allclose(_run_onnx(onnx.content, new), net.scores(new), rtol=1e-5, atol=1e-9)
    predicted = api.post(
        f"/api/v1/campaigns/{campaign.pk}/predict/", {"texts": ["a deep one"]}, format="json"
    ).json()
    assert predicted["model_version"] == 1
    detail = _api(manager).get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert detail["depth"] == 3
