"""Web and workers that share no disk (docs/platform.md, "Workers on other machines"): the
web server and two Celery workers run as separate processes, each with its own empty
CARVE_DATA_DIR and its own loopback address, against one PostgreSQL and one Redis. The
README's API walkthrough (import, embedding, labels, learner updates, retrain, ONNX export,
predict) runs through them; then one worker's data directory is deleted, the other worker is
stopped, and the campaign carries on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from labeling import tokens
from labeling.models import Campaign, EmbeddingChunk, Label, LearnerSnapshot, ModelVersion
from tests.labeling.test_readme_api import documents, run_walkthrough
from tests.support.processes import REPO_ROOT, Worker, database_url, free_port, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]


@pytest.fixture
def postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (make test-postgres): SQLite is the single-machine mode, whose "
            "locks live in CARVE_DATA_DIR"
        )


class Web:
    """gunicorn on ``host``:<free port>, in its own process, logging to ``log``."""

    def __init__(self, host: str, env: dict[str, str], log: Path) -> None:
        self.url, self.log = f"http://{host}:{free_port()}", log
        bind = self.url.removeprefix("http://")
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", bind, "-w", "2"],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, 60, "gunicorn", log)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"gunicorn exited: {self.log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def machines(postgres: None, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Three "machines": web on 127.0.0.2, workers worker-a and worker-b, each with its own
    empty data directory."""
    common = {
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": redis_url,
        # Small chunks that take a moment each, so both workers get some of the job.
        "EMBEDDING_CHUNK_ROWS": "16",
        "FAKE_EMBED_DELAY_MS": "60",
        # No pools kept in process memory: every learner update reads its machine's cache or
        # the database, so deleting a worker's data directory is felt by its next update.
        "POOL_MEMORY_MB": "0",
    }
    dirs = {name: tmp_path / name for name in ("web", "worker-a", "worker-b")}
    for path in dirs.values():
        path.mkdir()
    started: dict[str, Any] = {}
    try:
        for name in ("worker-a", "worker-b"):
            env = worker_env(CARVE_DATA_DIR=str(dirs[name]), **common)
            started[name] = Worker(name, env, tmp_path / f"{name}.log")
        env = worker_env(CARVE_DATA_DIR=str(dirs["web"]), ALLOWED_HOSTS="127.0.0.2", **common)
        started["web"] = Web("127.0.0.2", env, tmp_path / "web.log")
        yield {"dirs": dirs, **started}
    finally:
        for process in started.values():
            process.stop()


def _api(web: Web, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{web.url}/api/v1/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _trained(campaign: Campaign) -> int:
    """Items with a label outside the evaluation set: what the learner trains on (labels per
    item 1; docs/platform.md, "The evaluation set")."""
    labeled = Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
    return labeled.filter(item__evaluation=False).values("item").distinct().count()


def test_web_and_two_workers_without_a_shared_disk(
    manager: Any, machines: dict[str, Any], tmp_path: Path
) -> None:
    web, a, b = machines["web"], machines["worker-a"], machines["worker-b"]
    _, token = tokens.create_token(manager, "no-shared-disk")
    done = run_walkthrough(web.url, token, tmp_path)
    logs = "\n".join(p.log.read_text(errors="replace")[-2000:] for p in (web, a, b))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- logs ---\n{logs}"
    campaign = Campaign.objects.get(name="Reviews")
    version = ModelVersion.objects.get(campaign=campaign)
    assert (version.status, version.n_labels) == ("done", _trained(campaign)) and version.n_labels
    predicted = next(d for d in documents(done.stdout) if "predictions" in d)
    assert predicted["model_version"] == 1
    # The embedding job's chunks were shared by both workers, and nothing went to a file the
    # other processes would need: each read the matrix from the database.
    by = set(EmbeddingChunk.objects.filter(campaign=campaign).values_list("worker", flat=True))
    assert {w.split("@")[0] for w in by} == {"worker-a", "worker-b"}, by
    assert not list(machines["dirs"]["web"].rglob("*.npy"))

    # Worker A loses its whole data directory, and worker B goes away: A carries on alone.
    shutil.rmtree(machines["dirs"]["worker-a"])
    b.stop()
    base = f"campaigns/{campaign.pk}"
    for _ in range(10):
        item = _api(web, token, "POST", f"{base}/next/")
        _api(web, token, "POST", f"{base}/labels/", {"item": item["id"], "value": "positive"})
    trained = _trained(campaign)
    wait_for(
        lambda: LearnerSnapshot.objects.filter(campaign=campaign, n_labels=trained).exists(),
        90,
        "worker A's learner update after its data directory was deleted",
        a.log,
    )
    second = _api(web, token, "POST", f"{base}/retrain/")
    wait_for(
        lambda: _api(web, token, "GET", f"{base}/models/{second['number']}/")["status"] == "done",
        120,
        "the retrain on worker A",
        a.log,
    )
    assert ModelVersion.objects.get(campaign=campaign, number=second["number"]).n_labels == trained
    # A rebuilt its cache from the database.
    assert list((machines["dirs"]["worker-a"] / "cache" / "embeddings").rglob("*.npz"))
