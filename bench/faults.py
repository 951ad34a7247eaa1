"""`make bench-faults`: annotators label over HTTP while the stack is broken on purpose.

The same topology as `make bench-loop` (gunicorn, one Celery worker, Redis; SQLite, or
PostgreSQL when run through scripts/with-postgres.sh): scripted annotators label through the
labeling page while, one after another, the worker is SIGKILLed (and a new one started 5 s
later), Redis is stopped for --redis-seconds, and (on the throwaway PostgreSQL of
scripts/with-postgres.sh) the database is restarted. Prints the acknowledged labels, the
lost ones (acknowledged but not stored), duplicate assignments, the 5xx answers (other than
503 while the database is down), and per fault the learner's catch-up time: from the end of
the fault until the learner holds every label acknowledged by then.

Targets (docs/platform.md, "Reliability"): 0 lost, 0 duplicates, 0 unexpected 5xx, catch-up
under 60 s after each fault.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bench._common import OUT_DIR, machine, write_rows
from bench.loop import ITEM, TOKEN, Annotator, _learner_ready, _opener, _setup
from bench.stack import Stack


@dataclass
class Tally:
    """What the annotators saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    status: dict[int, int] = field(default_factory=dict)  # HTTP status -> count
    unexpected_5xx: list[str] = field(default_factory=list)
    db_down: bool = False

    def count(self, code: int, what: str) -> None:
        with self.lock:
            self.status[code] = self.status.get(code, 0) + 1
            if code >= 500 and not (code == 503 and self.db_down):
                self.unexpected_5xx.append(f"{code} {what}")


def run_annotator(
    a: Annotator,
    base: str,
    campaign: int,
    label_of: dict[int, str],
    stop: threading.Event,
    tally: Tally,
    think: float,
    seed: int,
) -> None:
    """Label until ``stop``; any error (a 5xx, a refused connection) is counted and the page
    loaded again a moment later, as a person would."""
    url = f"{base}campaigns/{campaign}/label/"
    opener = _opener(base, a.session)
    rng = random.Random(seed)
    page = ""
    while not stop.is_set():
        try:
            if not page:
                page = opener.open(url, timeout=30).read().decode()
            time.sleep(rng.uniform(0.5 * think, 1.5 * think))
            match, token = ITEM.search(page), TOKEN.search(page)
            if not match or not match.group(1) or not token:
                return  # nothing left to serve
            item = int(match.group(1))
            a.served.append(item)
            form = {
                "csrfmiddlewaretoken": token.group(1),
                "action": "label",
                "item": item,
                "value": label_of[item],
            }
            request = urllib.request.Request(
                url,
                data=urllib.parse.urlencode(form).encode(),
                headers={"HX-Request": "true", "Referer": url},
            )
            with opener.open(request, timeout=60) as response:
                page = response.read().decode()
                tally.count(response.status, "label")
            a.submitted.append(item)  # acknowledged: it must be stored
        except urllib.error.HTTPError as exc:
            tally.count(exc.code, "label page")
            a.errors.append(f"HTTP {exc.code}")
            page = ""
            time.sleep(1.0)
        except OSError as exc:  # refused or reset: the web server itself is fine
            a.errors.append(f"{type(exc).__name__}: {exc}")
            page = ""
            time.sleep(1.0)


def _counts(campaign_id: int) -> tuple[int, int]:
    """(labels the learner trains on now, labels its stored state holds)."""
    from django.db import close_old_connections

    from labeling import evaluation
    from labeling.consensus import consensus
    from labeling.models import Campaign, LearnerSnapshot

    close_old_connections()
    campaign = Campaign.objects.get(pk=campaign_id)
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()
    # Labels on evaluation items are never trained on (docs/platform.md, "The evaluation set").
    training, _ = evaluation.split(consensus(campaign), evaluation.item_ids(campaign))
    return len(training.rows), (snapshot.n_labels if snapshot else 0)


def _catch_up(campaign_id: int, limit: float) -> float:
    """Seconds until the learner holds every label given by now (inf past ``limit``); the
    annotators go on labeling meanwhile, so later labels are not waited for."""
    from django.db import DatabaseError

    t0, target = time.monotonic(), None
    while time.monotonic() - t0 < limit:
        try:
            given, held = _counts(campaign_id)
            target = given if target is None else target
            if held >= target:
                return time.monotonic() - t0
        except DatabaseError:
            pass
        time.sleep(0.5)
    return float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-faults")
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds per answer")
    parser.add_argument("--redis-seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds between faults")
    args = parser.parse_args(argv)

    from labeling.demo import port_is_free, redis_argv, wait_until

    stack = Stack.prepare("faults", RESEND_SECONDS=os.environ.get("RESEND_SECONDS", "10"))
    env, procs, tmp, redis_port = stack.env, stack.procs, stack.tmp, stack.redis_port
    pg_ctl = os.environ.get("CARVE_TEST_PG_CTL", "").split()
    tally, stop = Tally(), threading.Event()
    faults: list[dict[str, Any]] = []
    try:
        stack.start_redis()
        import django

        django.setup()
        campaign_id, annotators, label_of = _setup(args.items, args.annotators)
        worker_argv, _ = stack.start_worker("faults")
        stack.start_web(2)
        base = stack.base
        wait_until(lambda: _learner_ready(campaign_id), 300, "embeddings and the first queue")
        threads = [
            threading.Thread(
                target=run_annotator,
                args=(a, base, campaign_id, label_of, stop, tally, args.think, i),
            )
            for i, a in enumerate(annotators)
        ]
        for t in threads:
            t.start()

        def child(name: str) -> subprocess.Popen[bytes]:
            return next(p for n, p, _ in procs.children if n == name)

        def fault(name: str, start: Any, end: Any) -> None:
            time.sleep(args.settle)
            t0 = time.monotonic()
            start()
            end()
            faults.append(
                {
                    "fault": name,
                    "seconds": round(time.monotonic() - t0, 1),
                    "catch_up_s": round(_catch_up(campaign_id, 120), 1),
                }
            )

        fault(
            "worker SIGKILL, new worker after 5 s",
            lambda: (os.killpg(child("worker").pid, signal.SIGKILL), time.sleep(5)),
            lambda: procs.start("worker", worker_argv, env),
        )
        fault(
            f"Redis stopped {args.redis_seconds:.0f} s",
            lambda: (child("redis").terminate(), time.sleep(args.redis_seconds)),
            lambda: (
                procs.start("redis", redis_argv(redis_port, tmp), env),
                wait_until(lambda: not port_is_free(redis_port), 20, "redis-server"),
            ),
        )
        if pg_ctl:

            def pg_stop() -> None:
                tally.db_down = True
                subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True)
                time.sleep(10)

            def pg_start() -> None:
                options = os.environ["CARVE_TEST_PG_OPTIONS"]
                subprocess.run([*pg_ctl, "-o", options, "start"], check=True, capture_output=True)
                time.sleep(2)  # in-flight requests of the outage still answer 503
                tally.db_down = False

            fault("PostgreSQL restart (10 s down)", pg_stop, pg_start)
        time.sleep(args.settle)
        stop.set()
        for t in threads:
            t.join(90)
        final_catch_up = _catch_up(campaign_id, 120)
        procs.check()
        return _report(campaign_id, annotators, tally, faults, final_catch_up, stack.db)
    finally:
        stop.set()
        stack.stop()


def _report(
    campaign_id: int,
    annotators: list[Annotator],
    tally: Tally,
    faults: list[dict[str, Any]],
    final_catch_up: float,
    db: str,
) -> int:
    from labeling.models import Label

    stored = set(
        Label.objects.filter(item__campaign_id=campaign_id, undone_at__isnull=True).values_list(
            "item_id", "annotator__username"
        )
    )
    acknowledged = {(item, a.name) for a in annotators for item in a.submitted}
    lost = len(acknowledged - stored)
    served: dict[int, set[str]] = {}
    for a in annotators:
        for item in a.served:
            served.setdefault(item, set()).add(a.name)
    duplicates = sum(1 for who in served.values() if len(who) > 1)
    print(f"Carve under faults: {len(annotators)} annotators; {db}; {machine()}")
    print(f"acknowledged labels: {len(acknowledged)}")
    print(f"lost labels: {lost}")
    print(f"duplicate assignments: {duplicates}")
    print(f"HTTP answers: {dict(sorted(tally.status.items()))}")
    print(f"unexpected 5xx: {len(tally.unexpected_5xx)}")
    for f in faults:
        print(f"  {f['fault']}: learner caught up {f['catch_up_s']} s after it ended")
    print(f"  end of run: learner caught up {final_catch_up:.1f} s after the last label")
    write_rows(OUT_DIR / "faults.csv", faults)
    worst = max([f["catch_up_s"] for f in faults] + [final_catch_up])
    ok = lost == 0 and duplicates == 0 and not tally.unexpected_5xx and worst < 60
    print("targets (0 lost, 0 duplicates, 0 unexpected 5xx, catch-up < 60 s):", end=" ")
    print("met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
