"""The README's API walkthrough, run as it stands with bash, curl and jq against a live
server and a real Celery worker: the documented commands must keep working."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from labeling import tokens
from labeling.embeddings.embedders import FakeEmbedder
from labeling.models import Campaign, ModelVersion
from tests.support.processes import REPO_ROOT, Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
MARKER = "<!-- api-walkthrough: executed by tests/labeling/test_readme_api.py -->"


def walkthrough() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\n```sh\n(.*?)\n```", readme, re.DOTALL)
    assert match is not None, "the README lost its API walkthrough block"
    return match.group(1)


def run_walkthrough(url: str, token: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run the README's walkthrough with bash against ``url``, in ``workdir`` (given the demo
    reviews as reviews.csv), as a user with ``token`` would."""
    shutil.copy(REPO_ROOT / "labeling/data/demo_reviews.csv", workdir / "reviews.csv")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "CARVE_URL": url,
        "CARVE_TOKEN": token,
        "HOME": str(workdir),
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def documents(text: str) -> list[dict[str, Any]]:
    """The JSON objects that jq printed, in order (other output lines are skipped)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) != -1:
        try:
            value, at = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            at = start + 1
            continue
        found.append(value)
    return found


def test_the_block_covers_every_api_action() -> None:
    script = walkthrough()
    for path in ("imports/", "metrics/", "next/", "labels/", "retrain/", "models/", "predict/"):
        assert f"/{path}" in script or f"$api/{path}" in script, path
    assert "export/?as=onnx" in script and "export/?as=csv" in script


def test_the_readme_walkthrough_runs(
    manager: Any, live_server: Any, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; `make test-deps` installs it (apt-get)")
    worker = start_worker("readme")
    _, token = tokens.create_token(manager, "readme")
    done = run_walkthrough(live_server.url, token, tmp_path)
    log = worker.log.read_text(errors="replace")[-3000:]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- worker ---\n{log}"

    campaign = Campaign.objects.get(name="Reviews")
    n_items = campaign.items.count()
    assert n_items == sum(1 for _ in (REPO_ROOT / "labeling/data/demo_reviews.csv").open()) - 1
    version = ModelVersion.objects.get(campaign=campaign)
    # Labels on evaluation items measure the model and are never trained on
    # (docs/platform.md, "The evaluation set").
    n_evaluation = campaign.items.filter(evaluation=True, labels__isnull=False).distinct().count()
    assert version.status == "done" and version.n_labels == 20 - n_evaluation
    assert "embedding: done" in done.stdout and "model version 1: done" in done.stdout
    printed = documents(done.stdout)
    with (tmp_path / "labels.csv").open(newline="") as f:
        labels = list(csv.DictReader(f))
    assert len(labels) == 20 and {row["label"] for row in labels} <= {"negative", "positive"}
    metrics = next(d for d in printed if "stop_suggested" in d)
    assert metrics["n_labels"] == 20 and metrics["n_review"] == 0
    imported = next(d for d in printed if "result" in d)
    assert imported["status"] == "done" and imported["result"]["n_created"] == n_items
    session = ort.InferenceSession(
        (tmp_path / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    (scores,) = session.run(["scores"], {"embedding": FakeEmbedder().encode(["What a film!"])})
    prediction = next(d for d in printed if "predictions" in d)
    assert prediction["model_version"] == 1
    predicted = prediction["predictions"][0]
    np.testing.assert_allclose(predicted["scores"]["positive"], scores[0, 0], rtol=1e-5)
