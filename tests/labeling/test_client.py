"""The Python client (carve_client) against a live server and a real Celery worker: the
README's example run as it stands, the whole flow with its answers checked, and the errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow.parquet as pq
import pytest

from carve_client import (
    ApiError,
    CarveError,
    Client,
    ImportRefused,
    NotFound,
    PermissionDenied,
    Progress,
)
from labeling import tokens
from labeling.embeddings.embedders import FakeEmbedder
from labeling.models import Campaign, ModelVersion
from tests.support.processes import REPO_ROOT, Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
MARKER = "<!-- client-example: executed by tests/labeling/test_client.py -->"
REVIEWS = REPO_ROOT / "labeling/data/demo_reviews.csv"
N_REVIEWS = sum(1 for _ in REVIEWS.open()) - 1


def example() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\n```python\n(.*?)\n```", readme, re.DOTALL)
    assert match is not None, "the README lost its Python client example"
    return match.group(1)


def label_by_rule(text: str) -> str:
    words = ("great", "love", "best", "fun", "delicious")
    return "positive" if any(w in text.lower() for w in words) else "negative"


def test_the_example_covers_every_client_action() -> None:
    code = example()
    for call in (
        "create_campaign(",
        "import_file(",
        "import_dataframe(",
        "wait_for_embeddings(",
        "next_item(",
        ".label(",
        "retrain(",
        "download_onnx(",
        "predict(",
        ".export(",
        "export_dataframe(",
    ):
        assert call in code, call


def test_the_readme_client_example_runs(
    manager: Any, live_server: Any, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker("client-readme")
    _, token = tokens.create_token(manager, "client-readme")
    shutil.copy(REVIEWS, tmp_path / "reviews.csv")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "CARVE_URL": live_server.url,
        "CARVE_TOKEN": token,
        "HOME": str(tmp_path),
        "OPENBLAS_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = worker.log.read_text(errors="replace")[-3000:]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- worker ---\n{log}"

    campaign = Campaign.objects.get(name="Reviews")
    assert campaign.items.count() == N_REVIEWS + 2
    assert campaign.items.filter(metadata__source="survey").count() == 2
    version = ModelVersion.objects.get(campaign=campaign)
    n_evaluation = campaign.items.filter(evaluation=True, labels__isnull=False).distinct().count()
    assert version.status == "done" and version.n_labels == 20 - n_evaluation
    with (tmp_path / "labels.csv").open(newline="") as f:
        labels = list(csv.DictReader(f))
    assert len(labels) == 20
    assert all(row["label"] == label_by_rule(row["text"]) for row in labels)
    session = ort.InferenceSession(
        (tmp_path / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in session.get_outputs()] == ["scores", "probabilities"]
    # Two predictions printed (label, confidence, probabilities), then the DataFrame's head.
    printed = [line for line in done.stdout.splitlines() if line.startswith(("positive", "neg"))]
    assert len(printed) == 2
    assert "final_label" in done.stdout


def test_the_whole_flow_through_the_client(
    manager: Any, live_server: Any, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    start_worker("client-flow")
    _, token = tokens.create_token(manager, "client-flow")
    with Client(live_server.url, token, poll_interval=0.2) as carve:
        campaign = carve.create_campaign(
            "Client flow", ["negative", "positive"], instructions="Positive?", gold_rate=0.0
        )
        assert campaign.labels == ["negative", "positive"] and campaign.n_items == 0
        assert campaign.settings["gold_rate"] == 0.0 and campaign.instructions == "Positive?"
        assert campaign.id in {c.id for c in carve.campaigns()}

        # A file (as bytes; small, so imported during the request) and a DataFrame on a worker.
        first = carve.import_file(campaign.id, REVIEWS.read_bytes(), filename="reviews.csv")
        assert first.status == "done" and first.n_created == N_REVIEWS
        frame = pd.DataFrame(
            {"text": [f"Extra review number {i}, quite fun." for i in range(30)], "n": range(30)}
        )
        steps: list[Progress] = []
        second = carve.import_dataframe(
            campaign.id, frame, text_column="text", background=True, progress=steps.append
        )
        assert second.status == "done" and second.n_created == 30
        assert steps and steps[-1].stage == "import" and steps[-1].status == "done"
        n_items = N_REVIEWS + 30
        assert carve.campaign(campaign.id).n_items == n_items

        seen: list[Progress] = []
        embedded = carve.wait_for_embeddings(campaign.id, timeout=240, progress=seen.append)
        assert embedded.status == "done" and embedded.n_done == embedded.n_total == n_items
        assert seen[-1] == Progress("embedding", n_items, n_items, "done")

        given = []
        for _ in range(20):
            item = carve.next_item(campaign.id)
            assert item is not None
            given.append(carve.label(campaign.id, item.id, label_by_rule(item.text)))
        assert all(g.created for g in given)
        repeat = carve.label(campaign.id, given[0].item, given[0].value)
        assert repeat.id == given[0].id and not repeat.created

        version = carve.retrain(campaign.id, wait=True, timeout=240)
        assert version.status == "done" and version.number == 1 and version.n_labels > 0
        assert [v.number for v in carve.models(campaign.id)] == [1]

        onnx_path = carve.download_onnx(campaign.id, path=tmp_path)  # the newest version
        assert onnx_path == tmp_path / f"campaign-{campaign.id}-v1.onnx"
        texts = ["What a film!", "Dull and far too long.", "The best soup in town."]
        predictions = carve.predict(campaign.id, texts, batch_size=2)  # two requests
        assert len(predictions) == 3 and {p.model_version for p in predictions} == {1}
        session = ort.InferenceSession(onnx_path.read_bytes(), providers=["CPUExecutionProvider"])
        scores, probabilities = session.run(None, {"embedding": FakeEmbedder().encode(texts)})
        for i, p in enumerate(predictions):
            assert p.label in campaign.labels and sum(p.probabilities.values()) == pytest.approx(1)
            assert p.confidence == pytest.approx(p.probabilities[p.label])
            np.testing.assert_allclose(p.scores["positive"], scores[i, 0], rtol=1e-5)
            np.testing.assert_allclose(p.probabilities["positive"], probabilities[i, 1], rtol=1e-5)

        # Label export: one row per label by default, one per item on request.
        path = carve.export(campaign.id, "csv", path=tmp_path / "out" / "labels.csv")
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 20 and {int(r["item"]) for r in rows} == {g.item for g in given}
        jsonl = carve.export(campaign.id, "jsonl", rows="items", items="all", path=tmp_path)
        assert jsonl.name == f"campaign-{campaign.id}-labels.jsonl"
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert len(records) == n_items
        parquet = carve.export(campaign.id, "parquet", path=tmp_path / "labels.parquet")
        assert pq.read_table(parquet).num_rows == 20
        assert not list(tmp_path.glob(".labels.parquet.*"))  # the temporary file was renamed

        labeled = carve.export_dataframe(campaign.id)
        assert len(labeled) == 20 and set(labeled["label"]) <= {"negative", "positive"}
        every = carve.export_dataframe(campaign.id, rows="items", items="all")
        assert len(every) == n_items and (every["final_label"] != "").sum() == 20
        assert set(every["text"]) >= set(frame["text"])


def test_errors_carry_the_status_and_the_servers_message(
    manager: Any, annotator: Any, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    _, token = tokens.create_token(manager, "client-errors")
    _, annotator_token = tokens.create_token(annotator, "client-errors")

    bad = Client(live_server.url, "carve_not-a-token")
    with pytest.raises(PermissionDenied) as denied:
        bad.campaigns()
    bad.close()
    assert denied.value.status == 401 and denied.value.message == "Invalid or revoked token."

    carve = Client(live_server.url, token, max_retries=2, max_retry_wait=0.2)
    with pytest.raises(NotFound) as missing:
        carve.campaign(987654)
    assert missing.value.status == 404
    with pytest.raises(NotFound):
        carve.export(987654, "csv", path=tmp_path / "never.csv")
    assert not (tmp_path / "never.csv").exists()

    with pytest.raises(ApiError) as refused:
        carve.create_campaign("One label", ["only"])
    assert refused.value.status == 400 and refused.value.message.startswith("labels: ")

    campaign = carve.create_campaign("Errors", ["negative", "positive"], annotators=["annotator"])
    with Client(live_server.url, annotator_token) as annotating:
        with pytest.raises(PermissionDenied) as forbidden:
            annotating.create_campaign("Mine", ["a", "b"])
        assert forbidden.value.status == 403
        assert annotating.campaign(campaign.id).name == "Errors"  # reading is allowed

    with pytest.raises(ImportRefused) as bad_file:
        carve.import_file(campaign.id, b"text,label\n", filename="empty.csv")
    assert bad_file.value.status == 400 and bad_file.value.errors
    assert bad_file.value.errors[0] in bad_file.value.message

    with pytest.raises(ApiError) as untrained:
        carve.predict(campaign.id, ["What a film!"])
    assert untrained.value.status == 409 and "no trained model" in untrained.value.message
    with pytest.raises(NotFound):
        carve.latest_model(campaign.id)

    # 429 is retried after Retry-After, at most max_retries times, each wait capped.
    settings.CARVE_PREDICT_RATE = "1/minute"
    with pytest.raises(ApiError):
        carve.predict(campaign.id, ["What a film!"])  # 409, and the minute's one request
    started = time.monotonic()
    with pytest.raises(ApiError) as limited:
        carve.predict(campaign.id, ["What a film!"])
    assert limited.value.status == 429 and limited.value.retry_after is not None
    assert limited.value.retry_after > 1 and time.monotonic() - started >= 0.4
    carve.close()

    with pytest.raises(CarveError, match="CARVE_TOKEN"):
        Client(live_server.url, "")


def test_an_interrupted_download_leaves_no_partial_file(tmp_path: Path) -> None:
    """Ctrl-C (or a full disk, or a progress callback that raises) in the middle of a
    download: the hidden temporary file next to the target is removed, as it is when the
    connection breaks off."""
    import httpx

    body = b"x" * (3 * 64 * 1024)
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=body, headers={"Content-Disposition": 'attachment; filename="f.csv"'}
        )
    )

    def interrupt(progress: Progress) -> None:
        if progress.done:
            raise KeyboardInterrupt

    with Client("http://carve.test", "carve_x", transport=transport) as carve:
        carve._export_jobs = False  # the streamed export
        with pytest.raises(KeyboardInterrupt):
            carve.export(1, "csv", path=tmp_path, progress=interrupt)
        assert list(tmp_path.iterdir()) == []
        assert carve.export(1, "csv", path=tmp_path).read_bytes() == body
