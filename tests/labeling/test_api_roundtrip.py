"""The REST API end to end on the real stack (redis-server and a Celery worker process).

A manager creates a campaign and imports texts by API (the worker imports and embeds them),
an annotator labels through ``next``/``labels`` while the worker keeps the learner up to date,
the manager retrains, exports the version as ONNX, and ``predict`` agrees with the ONNX graph
run in onnxruntime.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.embeddings.embedders import FakeEmbedder
from tests.support.clients import api_as
from tests.support.processes import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

N_TEXTS, N_LABELS = 90, 14


def _get(client: Any, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_create_import_label_retrain_export_and_predict_through_the_api(
    manager: Any, annotator: Any, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker("api", QUEUE_LENGTH="8")
    admin, labeler = api_as(manager), api_as(annotator)
    texts = [f"api review number {i}" for i in range(N_TEXTS)]
    E = FakeEmbedder().encode(texts)
    teacher = np.random.default_rng(7).standard_normal(E.shape[1])
    truth = {
        t: ("positive" if e @ teacher > 0 else "negative") for t, e in zip(texts, E, strict=True)
    }

    # 1. A campaign, created by API.
    created = admin.post(
        "/api/v1/campaigns/",
        {
            "name": "API round trip",
            "labels": ["negative", "positive"],
            "annotators": ["annotator"],
            "gold_rate": 0,
            "evaluation_size": 0,  # every label trains: the served item is the queue's head
            "retrain_every": 0,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    base = f"/api/v1/campaigns/{created.json()['id']}"

    # 2. Import on the worker (background) and poll the job; the worker then embeds.
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["text"], *([t] for t in texts)])
    upload = SimpleUploadedFile("reviews.csv", buffer.getvalue().encode(), "text/csv")
    queued = admin.post(
        f"{base}/imports/", {"file": upload, "background": "true"}, format="multipart"
    )
    assert queued.status_code == 202, queued.content
    job_url = queued.json()["url"]
    wait_for(
        lambda: _get(admin, job_url)["status"] in ("done", "failed"), 60, "the import", worker.log
    )
    job = _get(admin, job_url)
    assert job["status"] == "done" and job["result"]["n_created"] == N_TEXTS, job

    def caught_up() -> bool:
        learner = _get(admin, f"{base}/metrics/")["learner"]
        return learner is not None and learner["lag"] == 0

    wait_for(caught_up, 60, "embeddings and the first learner update", worker.log)
    assert _get(admin, f"{base}/metrics/")["embedding"]["n_done"] == N_TEXTS

    # 3. Label by API: each item served is the head of the worker's latest queue.
    id_to_text = {row["id"]: row["text"] for row in _get(admin, f"{base}/items/")["results"]}
    for step in range(N_LABELS):
        queue = _get(admin, f"{base}/metrics/")["learner"]["queue"]
        served = labeler.post(f"{base}/next/")
        assert served.status_code == 200, served.content
        item = served.json()["id"]
        assert item == queue[0], f"step {step}"
        value = truth[id_to_text[item]]
        posted = labeler.post(f"{base}/labels/", {"item": item, "value": value}, format="json")
        assert posted.status_code == 201, posted.content
        wait_for(caught_up, 30, f"the learner after label {step}", worker.log)
    metrics = _get(admin, f"{base}/metrics/")
    assert metrics["n_labels"] == N_LABELS and metrics["learner"]["n_labels"] == N_LABELS
    assert metrics["learner"]["center_status"] == "optimal"

    # 4. Retrain on the worker, poll the version.
    retrain = admin.post(f"{base}/retrain/")
    assert retrain.status_code == 202
    version_url = retrain["Location"]
    wait_for(
        lambda: _get(admin, version_url)["status"] in ("done", "failed"),
        120,
        "the model version",
        worker.log,
    )
    version = _get(admin, version_url)
    assert version["status"] == "done" and version["n_labels"] == N_LABELS, version

    # 5. Export ONNX; predict must agree with it on new texts.
    onnx = admin.get(f"{base}/models/{version['number']}/export/", {"as": "onnx"})
    assert onnx.status_code == 200
    session = ort.InferenceSession(onnx.content, providers=["CPUExecutionProvider"])
    new = [f"an unseen review {i}" for i in range(25)]
    (onnx_scores,) = session.run(["scores"], {"embedding": FakeEmbedder().encode(new)})
    predicted = labeler.post(f"{base}/predict/", {"texts": new}, format="json")
    assert predicted.status_code == 200, predicted.content
    body = predicted.json()
    assert body["model_version"] == version["number"]
    api_scores = np.array([row["scores"]["positive"] for row in body["predictions"]])
    np.testing.assert_allclose(api_scores, onnx_scores[:, 0], rtol=1e-5, atol=1e-7)
    assert [row["label"] for row in body["predictions"]] == [
        "positive" if s > 0 else "negative" for s in onnx_scores[:, 0]
    ]

    # 6. The labels come back out as CSV.
    export = admin.get(f"{base}/export/")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert len(rows) == N_LABELS and all(r["label"] == truth[r["text"]] for r in rows)
