"""`make demo`: Carve on one machine, with a demo campaign, until Ctrl-C.

    python -m labeling.demo [--port 8000] [--data reviews.csv] [--data-dir var]

Starts redis-server (on a free loopback port), one Celery worker and gunicorn, all bound to
127.0.0.1; migrates the SQLite database; creates a demo admin (campaign manager) and a demo
annotator and prints their credentials; creates a sentiment campaign from ``--data``, else
SST-2 through the ``datasets`` library when it is installed and the hub answers, else the
sample CSV that ships with Carve (labeling/data/demo_reviews.csv, written for the project);
prints ``Carve is running at http://127.0.0.1:N/`` once the page answers, reports when the
worker has embedded the campaign, and on Ctrl-C stops everything it started.

Environment variables are the same as for the web app (EMBEDDER, EMBEDDING_MODEL, ...).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_GOLD_SHARE = 0.1  # of the built-in data's items keep their label as gold
SAMPLE_CSV = Path(__file__).resolve().parent / "data" / "demo_reviews.csv"
CAMPAIGN_NAME = "Demo: sentiment"
ADMIN, ANNOTATOR = "demo-admin", "demo-annotator"
SST2_ROWS = 2000


class DemoError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


def _say(message: str) -> None:
    print(message, flush=True)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


#: Times the demo starts a worker that exited again before it gives up.
MAX_RESTARTS = 5


class Processes:
    """Child processes, each in its own process group, stopped in reverse order.

    A child started with ``restart=True`` (the Celery worker) is started again when it exits,
    up to :data:`MAX_RESTARTS` times: the web server and Redis keep running, and the work the
    worker had is re-sent by the next one (docs/platform.md, "Reliability"). Any other child
    that exits stops the demo.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.restartable: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarts: dict[str, int] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str], *, restart: bool = False
    ) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
            )
        self.children = [c for c in self.children if c[0] != name] + [(name, proc, log)]
        if restart:
            self.restartable[name] = (argv, env)
        return proc

    def check(self) -> None:
        for name, proc, log in list(self.children):
            if proc.poll() is None:
                continue
            tail = log.read_text(errors="replace")[-3000:]
            if name in self.restartable and self.restarts.get(name, 0) < MAX_RESTARTS:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                _say(f"{name} exited with code {proc.returncode}; starting it again.")
                self.start(name, *self.restartable[name], restart=True)
                continue
            raise DemoError(f"{name} exited with code {proc.returncode}; its log ends:\n{tail}")

    def stop(self) -> None:
        for _name, proc, _log in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc, _log in reversed(self.children):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (mode 600 from creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def redis_argv(port: int, workdir: Path, binary: str = "redis-server") -> list[str]:
    """A throwaway redis-server on 127.0.0.1:``port`` that persists nothing (jobs live in the
    database; a lost message is re-sent from there)."""
    return [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(workdir),
    ]  # fmt: skip


#: Every queue of config/settings.py's CELERY_TASK_QUEUES (docs/platform.md, "Workers and
#: queues"): learner updates on "celery", the long work on "slow".
WORKER_QUEUES = ("celery", "slow")


def celery_worker_argv(
    name: str, concurrency: int, loglevel: str = "INFO", queues: Sequence[str] = WORKER_QUEUES
) -> list[str]:
    """``celery worker`` for this project (the demo, the HTTP benchmarks and the integration
    tests), consuming ``queues``: by default all of them, so one worker does everything."""
    return [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-l", loglevel,
        "-c", str(concurrency), "-n", f"{name}@%h", "-Q", ",".join(queues),
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def gunicorn_argv(port: int, workers: int, *, access_log: bool = False) -> list[str]:
    """gunicorn serving Carve on 127.0.0.1:``port``."""
    argv = [
        sys.executable, "-m", "gunicorn", "config.wsgi",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
    ]  # fmt: skip
    return argv + (["--access-logfile", "-"] if access_log else [])


def _secret(path: Path, nbytes: int = 32) -> str:
    """A random secret kept in ``path`` (mode 600), created on first use."""
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(nbytes) + "\n")
    return path.read_text(encoding="utf-8").strip()


def _sst2_csv() -> tuple[bytes, str]:
    """Up to SST2_ROWS SST-2 training sentences as CSV, via the datasets library (online)."""
    # Without a network the datasets library retries for ~25 s: ask the hub once first.
    socket.create_connection(("huggingface.co", 443), timeout=3).close()
    # datasets reads the offline switches when it is imported, so clear them before; the
    # embedding model still loads from its package (labeling.embeddings.embedders sets its own).
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ.pop("HF_DATASETS_OFFLINE", None)
    import datasets  # the demo extra: pip install -e ".[demo]"

    table = datasets.load_dataset("stanfordnlp/sst2", split=f"train[:{SST2_ROWS}]")
    names = table.features["label"].names  # ["negative", "positive"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    for row in table:
        writer.writerow([row["sentence"].strip(), names[row["label"]]])
    return out.getvalue().encode("utf-8"), "sst2-train.csv"


def demo_data(
    path: str | None, fetch_sst2: Callable[[], tuple[bytes, str]] = _sst2_csv
) -> tuple[bytes, str, str]:
    """(file bytes, file name, where it came from) for the demo campaign."""
    if path:
        file = Path(path)
        if not file.is_file():
            raise DemoError(f"DATA={path}: no such file")
        return file.read_bytes(), file.name, f"your file {file}"
    try:
        data, name = fetch_sst2()
        return data, name, f"SST-2 (first {SST2_ROWS} training sentences, via datasets)"
    except Exception as exc:  # no datasets package, offline, hub error: all mean "fall back"
        if isinstance(exc, ImportError):
            reason = "the datasets library is not installed"
        elif isinstance(exc, OSError):
            reason = f"no network: the dataset hub cannot be reached ({type(exc).__name__})"
        else:
            reason = f"SST-2 could not be loaded ({type(exc).__name__}: {exc})"
        return (
            SAMPLE_CSV.read_bytes(),
            SAMPLE_CSV.name,
            f"the sample CSV shipped with Carve ({reason})",
        )


def _setup_database(data_arg: str | None) -> tuple[Any, dict[str, str]]:
    """Migrate, create the demo users and campaign; returns (campaign, credentials)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from labeling.imports.parse import UploadRejected
    from labeling.imports.write import import_file
    from labeling.models import Campaign
    from labeling.permissions import MANAGER_GROUP

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    from django.conf import settings

    creds_file = Path(settings.CARVE_DATA_DIR) / "demo-credentials.json"
    creds: dict[str, str] = (
        json.loads(creds_file.read_text(encoding="utf-8")) if creds_file.exists() else {}
    )
    for name in (ADMIN, ANNOTATOR):
        creds.setdefault(name, secrets.token_urlsafe(9))
    _write_private(creds_file, json.dumps(creds))

    users = get_user_model().objects
    admin, _ = users.get_or_create(username=ADMIN, defaults={"is_staff": True})
    admin.is_staff = admin.is_superuser = True
    admin.set_password(creds[ADMIN])
    admin.save()
    admin.groups.add(Group.objects.get_or_create(name=MANAGER_GROUP)[0])
    annotator, _ = users.get_or_create(username=ANNOTATOR)
    annotator.set_password(creds[ANNOTATOR])
    annotator.save()

    campaign = Campaign.objects.filter(name=CAMPAIGN_NAME).order_by("pk").first()
    if campaign is None:
        campaign = Campaign.objects.create(
            name=CAMPAIGN_NAME,
            instructions="Is the text's overall sentiment negative or positive? "
            "Judge the verdict, not single words.",
            created_by=admin,
        )
    campaign.annotators.add(annotator)
    if campaign.items.exists():
        _say(f"Campaign “{campaign.name}” already has {campaign.items.count()} items; reusing it.")
    else:
        data, name, source = demo_data(data_arg)
        try:
            outcome = import_file(campaign, admin, data, name)
        except UploadRejected as exc:
            raise DemoError("The demo data was rejected:\n  " + "\n  ".join(exc.errors)) from None
        _say(f"Demo data: {source}: {outcome.n_created} texts imported.")
        if not data_arg:
            _keep_some_gold(campaign)
    return campaign, creds


def _keep_some_gold(campaign: Any, share: float = DEMO_GOLD_SHARE) -> int:
    """Keep the gold label of a seeded ``share`` of the demo's items and drop the rest.

    The demo data comes fully labeled; a real campaign has a small gold set. With every item
    gold, annotators would never see the model's suggestions (hidden on gold items by default,
    docs/platform.md, "Suggestions"). Returns how many gold items are kept.
    """
    from labeling.models import Item

    ids = sorted(
        Item.objects.filter(campaign=campaign).exclude(gold="").values_list("pk", flat=True)
    )
    keep = set(random.Random(campaign.seed).sample(ids, round(share * len(ids))))
    Item.objects.filter(pk__in=[pk for pk in ids if pk not in keep]).update(gold="")
    _say(f"Kept the gold label of {len(keep)} items (1 in {round(1 / share)}), as a gold set.")
    return len(keep)


def _report_embedding(campaign: Any, started: float, reported: dict[str, bool]) -> None:
    from labeling.embeddings import jobs

    job = jobs.latest_job(campaign)
    if job is None or reported.get(f"{job.pk}-{job.status}"):
        return
    if job.status == job.Status.DONE:
        seconds = time.monotonic() - started
        rate = (job.n_done - job.n_cached) / seconds if seconds else 0.0
        _say(
            f"Embeddings ready: {job.n_done} items, {job.dim} dimensions, {job.model_name} on "
            f"{job.device or 'cache'} ({job.n_cached} from cache; {seconds:.1f} s since start, "
            f"{rate:.0f} items/s)."
        )
        reported[f"{job.pk}-{job.status}"] = True
    elif job.status == job.Status.FAILED:
        _say(f"The embedding job failed: {job.error}")
        reported[f"{job.pk}-{job.status}"] = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
    parser.add_argument("--data", help="CSV or JSONL to label (default: SST-2, else the sample)")
    parser.add_argument("--data-dir", default=os.environ.get("CARVE_DATA_DIR", "var"))
    args = parser.parse_args(argv)
    t0 = time.monotonic()

    data_dir = (REPO_ROOT / args.data_dir).resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        _say("redis-server is not installed (make demo installs it with apt-get).")
        return 1
    if not port_is_free(args.port):
        _say(f"Port {args.port} is in use; choose another with `make demo PORT=N`.")
        return 1

    redis_port = free_port()
    env = dict(os.environ)
    env.update(
        CARVE_DATA_DIR=str(data_dir),
        SECRET_KEY=_secret(data_dir / ".demo-secret-key", 50),
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        DJANGO_SETTINGS_MODULE="config.settings",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),
    )
    env.pop("DATABASE_URL", None)  # the demo is the single-machine mode: SQLite in data_dir
    env.pop("SECRET_KEY_FILE", None)
    os.environ.update(env)
    os.environ.pop("DATABASE_URL", None)

    procs = Processes(log_dir)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the demo like Ctrl-C, at any stage

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C raises KeyboardInterrupt even when started from a script that ignores SIGINT
    # (background jobs of a non-interactive shell inherit SIG_IGN).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        procs.start("redis", redis_argv(redis_port, data_dir, redis_bin), env)

        def redis_listens() -> bool:
            procs.check()
            return not port_is_free(redis_port)

        wait_until(redis_listens, 20, "redis-server")
        import django

        django.setup()
        campaign, creds = _setup_database(args.data)
        procs.start("worker", celery_worker_argv("demo", concurrency=2), env, restart=True)
        procs.start("web", gunicorn_argv(args.port, workers=2, access_log=True), env)
        base = f"http://127.0.0.1:{args.port}/"

        def page_answers() -> bool:
            procs.check()
            return answers(base + "healthz") and answers(base + "accounts/login/")

        wait_until(page_answers, 90, "the web server")
        _say("")
        _say(f"Carve is running at {base}")
        _say(f"  campaign:  {base}campaigns/{campaign.pk}/")
        _say(f"  admin:     {ADMIN} / {creds[ADMIN]}  (campaign manager, staff)")
        _say(f"  annotator: {ANNOTATOR} / {creds[ANNOTATOR]}")
        _say(f"  logs:      {log_dir}/  ·  started in {time.monotonic() - t0:.1f} s")
        _say("Press Ctrl-C to stop.")
        reported: dict[str, bool] = {}
        while True:
            procs.check()
            _report_embedding(campaign, t0, reported)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except DemoError as exc:
        _say(str(exc))
        return 1
    finally:
        _say("Stopping Carve...")
        procs.stop()
        _say("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
