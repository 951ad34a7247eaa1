"""The ``carve`` command run as a real subprocess against a live server (and a real Celery
worker for the README's block): its output, its files and its documented exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pyarrow.parquet as pq
import pytest

from carve_client.cli import EXIT_API, EXIT_DENIED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from labeling import tokens
from labeling.models import Campaign, ModelVersion
from tests.support.processes import REPO_ROOT, Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
MARKER = "<!-- cli-example: executed by tests/labeling/test_cli.py -->"
#: The console script that `pip install -e .` puts next to the interpreter.
CARVE = Path(sys.executable).parent / "carve"
REVIEWS = REPO_ROOT / "labeling/data/demo_reviews.csv"


def cli_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\n```sh\n(.*?)\n```", readme, re.DOTALL)
    assert match is not None, "the README lost its command-line block"
    return match.group(1)


def environment(url: str, token: str, home: Path) -> dict[str, str]:
    return {
        "PATH": f"{CARVE.parent}:/usr/local/bin:/usr/bin:/bin",
        "CARVE_URL": url,
        "CARVE_TOKEN": token,
        "HOME": str(home),
        "COLUMNS": "200",
    }


def carve(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CARVE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_console_script_is_installed() -> None:
    assert CARVE.exists(), "`pip install -e .` (make install) puts `carve` in the venv"
    shown = subprocess.run([str(CARVE), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == EXIT_OK
    for command in ("campaigns", "import", "wait-embeddings", "next", "label", "export"):
        assert command in shown.stdout
    # python -m carve_client is the same command.
    same = subprocess.run(
        [sys.executable, "-m", "carve_client", "predict", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert same.returncode == EXIT_OK and "Usage: carve predict" in same.stdout


def test_the_readme_command_line_block_runs(
    manager: Any, live_server: Any, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    if shutil.which("jq") is None:
        pytest.fail("jq is not installed; `make test-deps` installs it (apt-get)")
    worker = start_worker("cli-readme")
    _, token = tokens.create_token(manager, "cli-readme")
    shutil.copy(REVIEWS, tmp_path / "reviews.csv")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", cli_block()],
        cwd=tmp_path,
        env=environment(live_server.url, token, tmp_path),
        capture_output=True,
        text=True,
        timeout=280,
    )
    log = worker.log.read_text(errors="replace")[-3000:]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- worker ---\n{log}"

    campaign = Campaign.objects.get(name="Reviews")
    assert campaign.labels == ["negative", "positive"]
    assert campaign.items.count() == sum(1 for _ in REVIEWS.open()) - 1
    assert campaign.items.filter(labels__isnull=False).distinct().count() == 20
    version = ModelVersion.objects.get(campaign=campaign)
    assert version.status == "done"
    assert "embedding: done" in done.stdout and "model version 1: done" in done.stdout
    assert pq.read_table(tmp_path / "labels.parquet").num_rows == 20
    session = ort.InferenceSession(
        (tmp_path / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].name == "embedding"
    predicted = [line.split("\t") for line in done.stdout.splitlines() if line.count("\t") == 2]
    assert [row[2] for row in predicted] == ["What a film!", "Dull and far too long."]
    assert all(row[0] in campaign.labels and 0 <= float(row[1]) <= 1 for row in predicted)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"number": 1, "status": "done", "n_labels": version.n_labels}


def test_exit_codes(
    manager: Any, annotator: Any, live_server: Any, redis_url: str, tmp_path: Path
) -> None:
    """0 ok, 1 API error, 2 usage, 3 timeout, 4 not found or not allowed; the server's
    message on stderr. A broker but no worker: the embedding job stays queued."""
    _, token = tokens.create_token(manager, "cli-codes")
    _, annotator_token = tokens.create_token(annotator, "cli-codes")
    env = environment(live_server.url, token, tmp_path)

    made = carve(env, "--json", "create", "Codes", "-l", "negative", "-l", "positive", cwd=tmp_path)
    assert made.returncode == EXIT_OK, made.stderr
    campaign = json.loads(made.stdout)
    assert campaign["labels"] == ["negative", "positive"] and "raw" not in campaign
    cid = str(campaign["id"])
    listed = carve(env, "--json", "campaigns", cwd=tmp_path)
    assert listed.returncode == EXIT_OK and [c["id"] for c in json.loads(listed.stdout)] == [
        campaign["id"]
    ]

    # Usage errors: a missing option, no token, an unknown format.
    assert carve(env, "label", "1", cwd=tmp_path).returncode == EXIT_USAGE
    no_token = carve({**env, "CARVE_TOKEN": ""}, "campaigns", cwd=tmp_path)
    assert no_token.returncode == EXIT_USAGE and "CARVE_TOKEN" in no_token.stderr
    bad_format = carve(env, "export", "-c", cid, "--format", "xls", cwd=tmp_path)
    assert bad_format.returncode == EXIT_USAGE

    # Not found or not allowed: a bad token, an unknown campaign, an annotator's create.
    bad_token = carve({**env, "CARVE_TOKEN": "carve_nope"}, "campaigns", cwd=tmp_path)
    assert bad_token.returncode == EXIT_DENIED
    assert "Invalid or revoked token." in bad_token.stderr and bad_token.stdout == ""
    unknown = carve(env, "export", "-c", "987654", "-o", "x.csv", cwd=tmp_path)
    assert unknown.returncode == EXIT_DENIED and "404" in unknown.stderr
    assert not (tmp_path / "x.csv").exists()
    annotating = {**env, "CARVE_TOKEN": annotator_token}
    denied = carve(annotating, "create", "Mine", "-l", "a", "-l", "b", cwd=tmp_path)
    assert denied.returncode == EXIT_DENIED and "403" in denied.stderr

    # API errors: invalid fields, a refused file, predict without a model.
    one_label = carve(env, "create", "One", "-l", "only", cwd=tmp_path)
    assert one_label.returncode == EXIT_API and "labels:" in one_label.stderr
    (tmp_path / "empty.csv").write_text("text,label\n")
    refused = carve(env, "import", "empty.csv", "-c", cid, cwd=tmp_path)
    assert refused.returncode == EXIT_API and "400" in refused.stderr
    untrained = carve(env, "predict", "What a film!", "-c", cid, cwd=tmp_path)
    assert untrained.returncode == EXIT_API and "no trained model" in untrained.stderr

    # An import during the request succeeds; no worker embeds it, so the wait times out.
    shutil.copy(REVIEWS, tmp_path / "reviews.csv")
    imported = carve(env, "--json", "import", "reviews.csv", "-c", cid, cwd=tmp_path)
    assert imported.returncode == EXIT_OK, imported.stderr
    assert json.loads(imported.stdout)["status"] == "done"
    waited = carve(env, "wait-embeddings", "-c", cid, "--timeout", "1", cwd=tmp_path)
    assert waited.returncode == EXIT_TIMEOUT and "timeout" in waited.stderr
    # Items are served without embeddings; the annotator is not on this campaign: 404.
    served = carve({**env, "CARVE_CAMPAIGN": cid}, "--json", "next", cwd=tmp_path)
    assert served.returncode == EXIT_OK, served.stderr
    item = json.loads(served.stdout)
    assert set(item) == {"id", "text", "lease_expires_at"}
    labeled = carve(env, "label", str(item["id"]), "positive", "-c", cid, cwd=tmp_path)
    assert labeled.returncode == EXIT_OK and labeled.stdout.strip().endswith(": positive")
    not_on_it = carve(annotating, "next", "-c", cid, cwd=tmp_path)
    assert not_on_it.returncode == EXIT_DENIED
