"""`make bench-scale`: a campaign of N items (100k, 1M) through the public paths.

Starts the stack of the other HTTP benchmarks (bench/stack.py: redis-server, one Celery
worker process, gunicorn; PostgreSQL through scripts/with-postgres.sh) and, for each N:

1. **import**: N texts (drawn with replacement from ../shared/data's SST-2 and MR sentences,
   each made unique by a numeric suffix; generated words when the data is absent) as CSV
   files of at most ``--file-rows`` rows, posted to ``POST /api/v1/campaigns/{id}/imports/``
   with ``background=true`` while the worker is stopped, then imported by the worker: items/s
   over the import jobs' run (their ``started_at``..``finished_at``), the upload requests'
   time, and the peak RSS of the web and worker processes;
2. **embedding**: the worker embeds the N items with the fake embedder; it is SIGKILLed at
   40 % of the job's progress (or ``--kill-after`` seconds after its first rows) and a new
   one started: items/s while the job had a live worker, chunk size, and the seconds from the
   kill until the new worker has taken the job over (bounded below by JOB_STALE_SECONDS,
   ``--stale-seconds``: 15). The real MiniLM embedder's items/s is measured once on a
   sample of ``--sample`` texts (a campaign of its own, a worker with
   EMBEDDER=sentence-transformers) and extrapolated to N;
3. **learner update**: ``--labels`` labels through the API (next/, labels/), then, with the
   worker stopped, one update in a process of its own
   (``labeling.campaign_learner.update_learner``): wall time and peak RSS, incremental and
   rebuilt from scratch (after a change of the campaign's seed through the API);
4. **next item**: the bench-loop harness (bench/loop.py): 20 annotators over HTTP, p50/p95 of
   submit to next item; then half as many labels with the worker stopped (the web path
   without the learner updates that share the machine);
5. **pages**: dashboard page, metrics endpoint, items listing (first and last page, labeled,
   unlabeled) and the CSV export, time to first byte and total (median of 3), with the
   campaign's few hundred labels and again after ``--export-labels`` labels are written
   (100,000 labels through the API would take the 2-core machine hours, so these are
   inserted with the ORM, spread over the annotators);
6. **database size**: pg_database_size and pg_total_relation_size of Carve's tables, per
   million items.

Prints every figure with its target and writes them to ``--csv`` (var/bench-scale.csv).
Targets and method: docs/scaling.md. ``--quick`` is a smoke run (N = 5,000, fewer labels)
that tests/bench/test_scale.py runs. Exit status 0 when every target is met, 1 when one is
missed (the figures are written either way).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import machine, write_rows
from bench.loop import Annotator, percentile, run_load
from bench.stack import Stack

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
SOURCES = ("sst2/train.csv", "mr-rt-polarity/all.csv")
LABELS = ["negative", "positive"]
MB = 1024 * 1024

# Targets of the scale-out issue (docs/scaling.md, "Targets").
TARGETS: dict[str, tuple[str, float]] = {
    "import_items_per_s": (">=", 20_000),
    "update_wall_s": ("<", 10),
    "update_peak_rss_mb": ("<", 2048),
    "next_item_p95_ms": ("<", 100),
    "page_ms": ("<", 300),
    "export_rows_per_s": (">=", 20_000),
}


# --- texts ---------------------------------------------------------------------------------


def source_texts(data_dir: Path = DATA_DIR) -> list[str]:
    """The sentences texts are drawn from: SST-2 train and MR (short review snippets), or
    an empty list when ../shared/data is absent."""
    texts: list[str] = []
    for name in SOURCES:
        path = data_dir / name
        if path.exists():
            with path.open(encoding="utf-8", newline="") as fh:
                texts.extend(row["text"] for row in csv.DictReader(fh) if row["text"].strip())
    return texts


# Words of generated texts when ../shared/data is absent.
# fmt: off
WORDS = [
    "film", "movie", "plot", "actor", "story", "scene", "music", "script", "director",
    "ending", "cast", "humour", "pace", "good", "bad", "great", "dull", "funny", "boring",
    "moving", "clever", "flat", "warm", "cold", "long", "short", "bright", "dark",
]
# fmt: on


def make_texts(n: int, pool: list[str], seed: int = 0, start: int = 0) -> Iterator[str]:
    """``n`` distinct texts: drawn with replacement from ``pool`` (or made of random words
    when it is empty), each followed by `` #<index>`` so that no two are equal."""
    rng = random.Random(seed)
    for i in range(start, start + n):
        if pool:
            base = pool[rng.randrange(len(pool))]
        else:
            base = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
        yield f"{base} #{i}"


def csv_file(texts: Iterator[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text"])
    for text in texts:
        writer.writerow([text])
    return buffer.getvalue().encode("utf-8")


# --- processes: peak resident memory -----------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM: peak resident set; VmRSS: now); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pids: list[int]) -> None:
    """Start the peak-RSS count (VmHWM) of these processes again from their current RSS."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_mb(pids: list[int]) -> float:
    """The largest VmHWM among ``pids`` (MiB): the peak of the busiest process."""
    return max((status_kb(p, "VmHWM") for p in pids), default=0) / 1024


# --- HTTP ----------------------------------------------------------------------------------


@dataclass
class Http:
    """A small HTTP client of one Carve server (token or session), timing each answer."""

    base: str
    token: str = ""
    session: str = ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes, float, float]:
        """(status, body, seconds to the first byte of the answer, seconds in all). With
        ``sink`` the body is handed over in pieces as it arrives and not kept."""
        url = urllib.parse.urlparse(self.base)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)
        head = dict(headers or {})
        if self.token:
            head["Authorization"] = f"Bearer {self.token}"
        if self.session:
            head["Cookie"] = f"sessionid={self.session}"
        try:
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=head)
            response = conn.getresponse()
            ttfb = time.perf_counter() - t0
            if sink is None:
                data = response.read()
            else:
                data = b""
                while piece := response.read(1 << 16):
                    sink(piece)
            return response.status, data, ttfb, time.perf_counter() - t0
        finally:
            conn.close()

    def json(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, data, _, _ = self.request(method, path, body, headers)
        return status, (json.loads(data) if data else None)

    def upload(self, path: str, filename: str, content: bytes, **fields: str) -> Any:
        boundary = "carve-bench-scale-boundary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, data, _, total = self.request("POST", path, body, headers)
        if status not in (201, 202):
            raise RuntimeError(f"import answered {status}: {data[:500]!r}")
        return json.loads(data), total


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


# --- figures -------------------------------------------------------------------------------


@dataclass
class Figures:
    """Every figure of one run, in order, for the printout and the CSV."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, n: int, name: str, value: float | str, unit: str, note: str = "") -> None:
        target = TARGETS.get(name)
        if name.startswith("page_ttfb_ms") or name.startswith("page_total_ms"):
            target = None  # pages: their total (and the export's rows/s) is checked
        if name.startswith("page_total_ms") and "export" not in name:
            target = TARGETS["page_ms"]
        met = ""
        if target is not None and isinstance(value, float | int):
            op, bound = target
            met = "met" if (value >= bound if op == ">=" else value < bound) else "MISSED"
        row = {
            "n": n,
            "figure": name,
            "value": round(value, 3) if isinstance(value, float) else value,
            "unit": unit,
            "target": f"{target[0]} {target[1]:g}" if target else "",
            "met": met,
            "note": note,
        }
        self.rows.append(row)
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        flag = f"  [{row['target']}: {met}]" if met else ""
        print(f"  N={n:>9,}  {name:<34} {shown:>12} {unit:<8}{flag}  {note}", flush=True)

    def missed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["met"] == "MISSED"]


# --- the run -------------------------------------------------------------------------------


@dataclass
class Setup:
    manager_token: str
    manager_session: str
    annotators: list[Annotator]  # sessions for the labeling page
    tokens: list[str]  # the same annotators' API tokens


def _users(n_annotators: int) -> Setup:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from labeling.tokens import create_token

    call_command("migrate", interactive=False, verbosity=0)
    users = get_user_model().objects
    manager = users.create_user("scale-manager", is_staff=True)
    client = Client()
    client.force_login(manager)
    annotators, tokens = [], []
    for i in range(n_annotators):
        user = users.create_user(f"scale-annotator-{i}")
        c = Client()
        c.force_login(user)
        annotators.append(Annotator(user.username, c.cookies["sessionid"].value))
        tokens.append(create_token(user, "bench-scale")[1])
    return Setup(
        create_token(manager, "bench-scale")[1],
        client.cookies["sessionid"].value,
        annotators,
        tokens,
    )


class Teacher(Mapping[int, str]):
    """The annotators' answers: a fixed linear rule on the fake embedding of the item's text
    (learnable), looked up by item id for the bench-loop harness."""

    def __init__(self) -> None:
        import numpy as np

        from labeling.embeddings.embedders import FakeEmbedder

        self.embedder = FakeEmbedder()
        self.w = np.random.default_rng(0).standard_normal(self.embedder.dim)

    def of_text(self, text: str) -> str:
        return LABELS[int(self.embedder.encode([text])[0] @ self.w > 0)]

    def __getitem__(self, item_id: int) -> str:
        from labeling.models import Item

        # Called from the harness's threads: each keeps its own connection (closed when the
        # benchmark ends), so no connection is opened per label.
        text = Item.objects.values_list("text", flat=True).get(pk=item_id)
        return self.of_text(text)

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Run:
    def __init__(self, stack: Stack, setup: Setup, args: argparse.Namespace) -> None:
        self.stack, self.setup, self.args = stack, setup, args
        self.api = Http(stack.base, token=setup.manager_token)
        self.page = Http(stack.base, session=setup.manager_session)
        self.figures = Figures()
        self.worker: tuple[list[str], dict[str, str]] | None = None
        self.teacher = Teacher()

    # processes

    def start_worker(self, **env: str) -> None:
        self.worker = self.stack.start_worker("scale", 1, **env)
        wait_for(lambda: len(self.worker_pids()) > 1, 120, "the worker's pool process")

    def stop_worker(self, sig: int = signal.SIGTERM) -> None:
        pid = self.stack.pid("worker")
        if pid is None:
            return
        # SIGTERM to the main process only: a warm shutdown lets the pool finish its task.
        # SIGKILL to the whole process group: the worker dies mid-task.
        if sig == signal.SIGKILL:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        for name, proc, _ in self.stack.procs.children:
            if name == "worker":
                proc.wait(120)
        # Stopped on purpose: not a child that died (Processes.check).
        self.stack.procs.children = [c for c in self.stack.procs.children if c[0] != "worker"]

    def worker_pids(self) -> list[int]:
        pid = self.stack.pid("worker")
        return process_tree(pid) if pid else []

    def web_pids(self) -> list[int]:
        pid = self.stack.pid("web")
        return process_tree(pid) if pid else []

    # the API

    def create_campaign(self, name: str) -> int:
        status, body = self.api.json(
            "POST",
            "/api/v1/campaigns/",
            {
                "name": name,
                "labels": LABELS,
                "gold_rate": 0,
                "retrain_every": 0,  # measures the learner, not model versions
                "annotators": [a.name for a in self.setup.annotators],
            },
        )
        if status != 201:
            raise RuntimeError(f"campaign create answered {status}: {body}")
        return int(body["id"])

    def metrics(self, campaign: int) -> dict[str, Any]:
        status, body = self.api.json("GET", f"/api/v1/campaigns/{campaign}/metrics/")
        if status != 200:
            raise RuntimeError(f"metrics answered {status}")
        return dict(body)

    def import_texts(self, campaign: int, n: int, seed: int) -> list[dict[str, Any]]:
        """Post N texts in files of --file-rows rows (background jobs) and return the jobs."""
        pool = source_texts()
        jobs, upload_s, rows, sent = [], 0.0, self.args.file_rows, 0
        texts = make_texts(n, pool, seed=seed)
        while sent < n:
            k = min(rows, n - sent)
            content = csv_file(next(texts) for _ in range(k))
            job, seconds = self.api.upload(
                f"/api/v1/campaigns/{campaign}/imports/",
                f"part-{sent // rows:03d}.csv",
                content,
                background="true",
            )
            jobs.append(job)
            upload_s += seconds
            sent += k
        self.upload_s = upload_s
        return jobs

    def job(self, campaign: int, job_id: int) -> dict[str, Any]:
        status, body = self.api.json("GET", f"/api/v1/campaigns/{campaign}/imports/{job_id}/")
        return dict(body)

    # phases

    def sample_real_embedder(self) -> float | None:
        """MiniLM items/s on --sample texts through a worker with the real embedder."""
        if self.args.sample <= 0:
            return None
        campaign = self.create_campaign("Scale: MiniLM sample")
        self.import_texts(campaign, self.args.sample, seed=99)
        self.start_worker(EMBEDDER="sentence-transformers")
        try:
            done = wait_for(
                lambda: (
                    (self.metrics(campaign).get("embedding") or {}).get("status")
                    in ("done", "failed")
                ),
                1800,
                "the MiniLM sample's embedding",
                every=0.5,
            )
            del done
            from labeling.models import EmbeddingJob

            job = EmbeddingJob.objects.filter(campaign_id=campaign).order_by("-pk").first()
            if job is None or job.status != "done" or not job.started_at or not job.finished_at:
                raise RuntimeError(f"MiniLM sample embedding ended {job and job.status}")
            seconds = (job.finished_at - job.started_at).total_seconds()
            rate = self.args.sample / seconds
            self.figures.add(
                self.args.sample,
                "embed_real_items_per_s",
                rate,
                "items/s",
                f"MiniLM on {job.device}, {self.args.sample} texts, model loaded",
            )
            return rate
        finally:
            self.stop_worker()

    def run(self, n: int, real_rate: float | None) -> None:
        from labeling.models import EmbeddingJob

        fig, args = self.figures, self.args
        print(f"\nN = {n:,}", flush=True)
        size0 = database_sizes()
        campaign = self.create_campaign(f"Scale {n}")

        # 1. import: files posted while the worker is stopped, then imported by it
        reset_peak(self.web_pids())
        jobs = self.import_texts(campaign, n, seed=n)
        fig.add(n, "upload_requests_s", self.upload_s, "s", f"{len(jobs)} files, 202 each")
        fig.add(n, "web_peak_rss_mb", peak_mb(self.web_pids()), "MiB", "gunicorn worker")
        t0 = time.perf_counter()
        self.start_worker()
        reset_peak(self.worker_pids())
        finals = [
            wait_for(
                lambda j=j: (
                    body
                    if (body := self.job(campaign, j["id"]))["status"] in ("done", "failed")
                    else None
                ),
                3600,
                "an import job",
                every=0.25,
            )
            for j in jobs
        ]
        wall = time.perf_counter() - t0
        failed = [f for f in finals if f["status"] != "done"]
        if failed:
            raise RuntimeError(f"import failed: {failed[0].get('errors') or failed[0]['error']}")
        started = min(_when(f["started_at"]) for f in finals)
        finished = max(_when(f["finished_at"]) for f in finals)
        fig.add(
            n,
            "import_items_per_s",
            n / (finished - started),
            "items/s",
            f"worker, {(finished - started):.1f} s from the first job's start to the last's end",
        )
        fig.add(n, "import_wall_s", wall, "s", "worker start to the last job done (polled)")
        fig.add(n, "import_worker_peak_rss_mb", peak_mb(self.worker_pids()), "MiB")

        # 2. embedding with the fake embedder; a SIGKILL at ~40 %, a new worker
        reset_peak(self.worker_pids())
        embed = self._embed_with_kill(campaign, n)
        job = EmbeddingJob.objects.filter(campaign_id=campaign).order_by("-pk").first()
        assert job is not None
        fig.add(n, "embed_fake_items_per_s", embed["rate"], "items/s", embed["note"])
        fig.add(n, "embed_wall_s", embed["wall"], "s", "first claim to done, kill included")
        fig.add(n, "embed_resume_after_kill_s", embed["resume"], "s", embed["resume_note"])
        fig.add(n, "embed_worker_peak_rss_mb", peak_mb(self.worker_pids()), "MiB", "new worker")
        fig.add(n, "embed_chunk_rows", embedding_chunk_rows(), "rows", "rows per stored chunk")
        if real_rate:
            fig.add(n, "embed_real_extrapolated_h", n / real_rate / 3600, "h", "MiniLM, CPU")
        wait_for(lambda: (self.metrics(campaign).get("learner") or {}).get("queue"), 1800, "queue")
        size1 = database_sizes()
        for table, (before, after) in _size_deltas(size0, size1).items():
            fig.add(n, f"db_mb_per_million_items[{table}]", (after - before) * 1e6 / n / MB, "MiB")

        # 3. labels through the API, the learner update in a process of its own
        t0 = time.perf_counter()
        given = self._label_via_api(campaign, args.labels)
        fig.add(n, "labels_via_api_per_s", given / (time.perf_counter() - t0), "labels/s")
        learner = wait_for(
            lambda: (
                m["learner"]
                if (m := self.metrics(campaign))["learner"]
                and m["learner"]["lag"] == 0
                # every label is in (labels on evaluation items are never trained on, so the
                # learner's own count can stay below; docs/platform.md, "The evaluation set")
                and m["n_labels"] >= given
                else None
            ),
            3600,
            "the learner catching up with the labels",
            every=1.0,
        )
        fig.add(n, "update_on_worker_s", learner["seconds"], "s", "the worker's last update")
        fig.add(n, "worker_peak_rss_mb", peak_mb(self.worker_pids()), "MiB", "embed + updates")
        self.stop_worker()
        one = measure_update(campaign, self.stack.env, args.profile and f"{args.profile}-{n}-inc")
        fig.add(n, "update_wall_s", one["wall_s"], "s", f"{given} labels, {one['how']}")
        fig.add(n, "update_peak_rss_mb", one["peak_mb"], "MiB", f"baseline {one['base_mb']:.0f}")
        status, _ = self.api.json("PATCH", f"/api/v1/campaigns/{campaign}/", {"seed": 1})
        assert status == 200, status
        two = measure_update(campaign, self.stack.env, args.profile and f"{args.profile}-{n}-re")
        fig.add(n, "update_rebuild_wall_s", two["wall_s"], "s", f"{given} labels, {two['how']}")
        fig.add(n, "update_rebuild_peak_rss_mb", two["peak_mb"], "MiB")

        # 4. next item with 20 annotators (the bench-loop harness)
        self.start_worker()
        wait_for(
            lambda: (m := self.metrics(campaign))["learner"] and m["learner"]["lag"] == 0,
            1800,
            "the learner after the new seed",
            every=1.0,
        )
        annotators = [Annotator(a.name, a.session) for a in self.setup.annotators]
        loop_wall = run_load(
            self.stack.base,
            campaign,
            annotators,
            self.teacher,
            args.loop_labels,
            args.loop_seconds,
            args.think,
        )
        latencies = [x * 1000 for a in annotators for x in a.latencies]
        errors = sum(len(a.errors) for a in annotators)
        if latencies:
            note = f"{len(latencies)} labels in {loop_wall:.0f} s, {errors} errors"
            fig.add(n, "next_item_p50_ms", statistics.median(latencies), "ms", note)
            fig.add(n, "next_item_p95_ms", percentile(latencies, 0.95), "ms", note)
        lags = [x for a in annotators for x in a.lags]
        if lags:
            fig.add(n, "learner_lag_p95_labels", percentile([float(x) for x in lags], 0.95), "")
        self.stop_worker()
        # The same load with the worker stopped: the web path alone, without the learner
        # updates that share this machine's two cores (docs/scaling.md, "Next item").
        if args.loop_labels and not args.quick:  # (the smoke run keeps to its minute)
            annotators = [Annotator(a.name, a.session) for a in self.setup.annotators]
            run_load(
                self.stack.base,
                campaign,
                annotators,
                self.teacher,
                args.loop_labels // 2,
                args.loop_seconds,
                args.think,
            )
            latencies = [x * 1000 for a in annotators for x in a.latencies]
            if latencies:
                note = f"{len(latencies)} labels, worker stopped (no learner updates)"
                fig.add(n, "next_item_p95_ms_web_only", percentile(latencies, 0.95), "ms", note)

        # 5. pages, with the labels so far and with --export-labels labels
        n_labels = self.metrics(campaign)["n_labels"]
        self._pages(n, campaign, f"{n_labels} labels")
        added = add_labels(campaign, min(args.export_labels, n) - n_labels, self.setup)
        total = n_labels + added
        self._pages(n, campaign, f"{total} labels", export_rows=total)
        size2 = database_sizes()
        fig.add(n, "db_total_mb", size2.get("(database)", 0) / MB, "MiB", "at the end")
        label_bytes = sum(
            after - before
            for table, (before, after) in _size_deltas(size1, size2).items()
            if table in ("labeling_label", "labeling_assignment")
        )
        if label_bytes and total:
            note = "labels and assignments"
            fig.add(n, "db_mb_per_100k_labels", label_bytes * 1e5 / total / MB, "MiB", note)

    def _embed_with_kill(self, campaign: int, n: int) -> dict[str, Any]:
        """Watch the campaign's embedding job; SIGKILL the worker once the job has embedded
        rows for --kill-after seconds or reported 40 %, start a new one, and time the
        takeover (kill to the job RUNNING under its next attempt) and the rest."""
        from django.db.models import Q

        from labeling.models import EmbeddingJob

        t0 = time.perf_counter()
        running = wait_for(
            lambda: (
                EmbeddingJob.objects.filter(campaign_id=campaign, status="running")
                .order_by("-pk")
                .first()
            ),
            600,
            "the embedding job's start",
            every=0.1,
        )
        job_id, first_attempt, claimed_t = running.pk, running.attempt, time.perf_counter()
        killed_at = moving_at = None
        n_at_kill = 0
        while killed_at is None:
            job = EmbeddingJob.objects.get(pk=job_id)
            if job.status != "running":
                break
            now = time.perf_counter()
            if job.n_done and moving_at is None:
                moving_at = now
            late = moving_at is not None and now - moving_at >= self.args.kill_after
            if late or (job.n_total and job.n_done >= 0.4 * job.n_total):
                n_at_kill, killed_at = job.n_done, now
                self.stop_worker(signal.SIGKILL)
                self.start_worker()
            time.sleep(0.05)
        resume, resume_note = float("nan"), "the job ended before the kill"
        resumed_t = time.perf_counter()
        if killed_at is not None:
            wait_for(
                lambda: (
                    EmbeddingJob.objects.filter(pk=job_id)
                    .filter(Q(status="done") | Q(status="running", attempt__gt=first_attempt))
                    .exists()
                ),
                900,
                "the embedding job's takeover",
                every=0.1,
            )
            resumed_t = time.perf_counter()
            resume = resumed_t - killed_at
            resume_note = (
                f"killed at {n_at_kill:,} rows reported; JOB_STALE_SECONDS="
                f"{self.stack.env['JOB_STALE_SECONDS']}"
            )
        job = wait_for(
            lambda: EmbeddingJob.objects.filter(pk=job_id, status__in=["done", "failed"]).first(),
            3600,
            "the embedding job",
            every=0.2,
        )
        if job.status != "done":
            raise RuntimeError(f"embedding failed: {job.error}")
        # Chunks stored before the kill are kept, so the job's work is its time with a live
        # worker: claim to kill, and takeover to done.
        alive = time.perf_counter() - resumed_t
        if killed_at is not None:
            alive += killed_at - claimed_t
        else:
            alive += resumed_t - claimed_t
        return {
            "rate": n / alive,
            "note": f"{n:,} rows in {alive:.1f} s with a live worker (planning included)",
            "wall": time.perf_counter() - t0,
            "resume": resume,
            "resume_note": resume_note,
        }

    def _label_via_api(self, campaign: int, n_labels: int) -> int:
        """``n_labels`` labels through next/ and labels/, by 4 annotators at once."""
        lock, given = threading.Lock(), [0]

        def annotate(token: str) -> None:
            client = Http(self.stack.base, token=token)
            while True:
                with lock:
                    if given[0] >= n_labels:
                        return
                    given[0] += 1
                status, item = client.json("POST", f"/api/v1/campaigns/{campaign}/next/")
                if status != 200:
                    with lock:
                        given[0] -= 1
                    return
                value = self.teacher.of_text(item["text"])
                status, _ = client.json(
                    "POST",
                    f"/api/v1/campaigns/{campaign}/labels/",
                    {"item": item["id"], "value": value},
                )
                if status not in (200, 201):
                    raise RuntimeError(f"label answered {status}")

        threads = [
            threading.Thread(target=annotate, args=(token,)) for token in self.setup.tokens[:4]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return given[0]

    def _pages(self, n: int, campaign: int, note: str, export_rows: int = 0) -> None:
        api = f"/api/v1/campaigns/{campaign}"
        pages: list[tuple[str, Http, str]] = [
            ("dashboard", self.page, f"/campaigns/{campaign}/dashboard/"),
            ("metrics", self.api, f"{api}/metrics/"),
            ("items_first_page", self.api, f"{api}/items/"),
            ("items_last_page", self.api, f"{api}/items/?offset={max(n - 100, 0)}"),
            ("items_labeled", self.api, f"{api}/items/?state=labeled"),
            ("items_unlabeled", self.api, f"{api}/items/?state=unlabeled"),
        ]
        if export_rows:
            pages.append(("export_csv", self.api, f"{api}/export/?as=csv"))
        for name, client, path in pages:
            runs = []
            for _ in range(self.args.repeat):
                lines = [0]

                def count(piece: bytes, lines: list[int] = lines) -> None:
                    lines[0] += piece.count(b"\n")

                status, _, ttfb, total = client.request("GET", path, sink=count)
                if status != 200:
                    raise RuntimeError(f"{name} answered {status}")
                runs.append((total, ttfb, lines[0]))
            total, ttfb, n_lines = sorted(runs)[len(runs) // 2]
            self.figures.add(n, f"page_ttfb_ms[{name}]", ttfb * 1000, "ms", note)
            self.figures.add(n, f"page_total_ms[{name}]", total * 1000, "ms", note)
            if name == "export_csv":
                self.figures.add(
                    n, "export_rows_per_s", (n_lines - 1) / total, "rows/s", f"{n_lines - 1} rows"
                )


def embedding_chunk_rows() -> int:
    """Rows per chunk of an embedding job (CARVE_EMBEDDING_CHUNK_ROWS where the settings have
    it; 4 batches of 64 before that)."""
    from django.conf import settings

    return int(getattr(settings, "CARVE_EMBEDDING_CHUNK_ROWS", 4 * 64))


def _when(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


UPDATE_SCRIPT = """
import cProfile, json, sys, time
import django
django.setup()
from labeling.campaign_learner import update_learner

def kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

campaign, profile = int(sys.argv[1]), sys.argv[2]
base = kb("VmRSS")
t0 = time.perf_counter()
if profile:
    prof = cProfile.Profile()
    out = prof.runcall(update_learner, campaign)
    prof.dump_stats(profile)
else:
    out = update_learner(campaign)
wall = time.perf_counter() - t0
snap = out.snapshot
print(json.dumps({
    "status": out.status, "wall_s": wall, "peak_mb": kb("VmHWM") / 1024, "base_mb": base / 1024,
    "how": ("rebuilt" if snap.rebuilt else "incremental") if snap else out.status,
    "n_labels": snap.n_labels if snap else 0,
}))
"""


def measure_update(campaign: int, env: dict[str, str], profile: str | None) -> dict[str, Any]:
    """One learner update of ``campaign`` in a fresh process (the worker is stopped):
    wall time of ``update_learner`` and the process's peak RSS (VmHWM), with the RSS of the
    process before the call (Django, numpy and the learner imported) as ``base_mb``."""
    if profile:
        Path(profile).parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", UPDATE_SCRIPT, str(campaign), f"{profile}.prof" if profile else ""],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"learner update failed:\n{out.stderr[-3000:]}")
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if result["status"] != "updated":
        raise RuntimeError(f"learner update: {result}")
    return result


def add_labels(campaign: int, count: int, setup: Setup) -> int:
    """Write ``count`` labels on unlabeled items, spread over the annotators (the export's
    and dashboard's load; through the ORM, as the API would take hours here)."""
    from django.contrib.auth import get_user_model

    from labeling.models import Item, Label

    if count <= 0:
        return 0
    users = list(get_user_model().objects.filter(username__in=[a.name for a in setup.annotators]))
    free = (
        Item.objects.filter(campaign_id=campaign)
        .exclude(labels__isnull=False)
        .order_by("position")
        .values_list("pk", flat=True)[:count]
    )
    rng = random.Random(count)
    batch: list[Label] = []
    added = 0
    for i, item_id in enumerate(free.iterator(chunk_size=10_000)):
        batch.append(
            Label(item_id=item_id, annotator=users[i % len(users)], value=rng.choice(LABELS))
        )
        if len(batch) == 10_000:
            Label.objects.bulk_create(batch)
            added += len(batch)
            batch = []
    Label.objects.bulk_create(batch)
    return added + len(batch)


def database_sizes() -> dict[str, int]:
    """Bytes of the database and of each of Carve's tables (with indexes and TOAST)."""
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        path = Path(str(settings.DATABASES["default"]["NAME"]))
        return {"(database)": path.stat().st_size if path.exists() else 0}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        sizes = {"(database)": int(cursor.fetchone()[0])}
        cursor.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND s.nspname = 'public' AND c.relname LIKE 'labeling_%'"
        )
        sizes.update({name: int(size) for name, size in cursor.fetchall()})
    return sizes


def _size_deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Tables (and the database) that grew by more than 64 kB."""
    return {k: (before.get(k, 0), v) for k, v in after.items() if v - before.get(k, 0) > 64 * 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-scale")
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--csv", type=Path, default=REPO_ROOT / "var" / "bench-scale.csv")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=5000, 5 annotators, few labels"
    )
    parser.add_argument("--file-rows", type=int, default=100_000, help="rows per import file")
    parser.add_argument("--sample", type=int, default=2000, help="MiniLM sample (0: none)")
    parser.add_argument("--labels", type=int, default=500, help="labels before the update")
    parser.add_argument("--loop-labels", type=int, default=400)
    parser.add_argument("--loop-seconds", type=float, default=300)
    parser.add_argument("--think", type=float, default=1.0)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--export-labels", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per page (median)")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--profile", default="", help="cProfile the updates to PREFIX-*.prof")
    parser.add_argument(
        "--kill-after",
        type=float,
        default=2.0,
        help="seconds of embedding before the worker is killed",
    )
    parser.add_argument(
        "--stale-seconds", type=int, default=15, help="JOB_STALE_SECONDS: a dead job's takeover"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.sample, args.labels, args.loop_labels = [5000], 0, 20, 30
        args.export_labels, args.repeat, args.think, args.file_rows = 5000, 1, 0.2, 2500
        args.stale_seconds, args.annotators, args.web_workers = 2, 5, 2

    stack = Stack.prepare("scale", JOB_STALE_SECONDS=str(args.stale_seconds), RESEND_SECONDS="5")
    run: Run | None = None
    try:
        stack.start_redis()
        import django

        django.setup()
        setup = _users(args.annotators)
        stack.start_web(args.web_workers)
        run = Run(stack, setup, args)
        print(
            f"Carve at scale: {stack.db}, {args.web_workers} gunicorn workers, 1 Celery worker "
            f"process; {machine()}",
            flush=True,
        )
        real_rate = run.sample_real_embedder()
        for n in args.n:
            run.run(n, real_rate)
        stack.procs.check()
    finally:
        stack.stop()
        if run is not None:
            write_rows(args.csv, run.figures.rows)
            print(f"\nfigures written to {args.csv}")
    missed = run.figures.missed()
    print(
        "targets:",
        "met"
        if not missed
        else "MISSED " + ", ".join(f"{r['figure']} at N={r['n']}" for r in missed),
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
