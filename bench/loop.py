"""Load benchmark of the labeling loop: ``make bench-loop``.

Starts redis-server, one Celery worker (one process) and gunicorn on loopback (SQLite in a temporary
directory, or PostgreSQL when DATABASE_URL names it), creates a campaign of 2,000 items and
runs 20 simulated annotators: HTTP clients that post a label with htmx headers (the response
is the next item) until 1,000 labels are in. Prints:

    next item p50: <ms> ms          submit -> next item, as the annotator's browser sees it
    next item p95: <ms> ms
    duplicate assignments: <n>      items served to two annotators (overlap is 1)
    lost labels: <n>                labels answered 200 whose row is not in the database
    learner lag p95: <n> labels     label changes not yet in the learner's queue at serve time

Every loop is bounded (labels and seconds) and everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import random
import re
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench._common import OUT_DIR, machine, write_rows
from bench.stack import Stack

ITEM = re.compile(r'data-item="(\d*)"')
LAG = re.compile(r'data-learner-lag="(-?\d+)"')
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Annotator:
    name: str
    session: str
    latencies: list[float] = field(default_factory=list)
    lags: list[int] = field(default_factory=list)
    served: list[int] = field(default_factory=list)
    submitted: list[int] = field(default_factory=list)  # items whose label got a 200
    errors: list[str] = field(default_factory=list)


def _opener(base: str, session: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    host = urllib.parse.urlparse(base).hostname or "127.0.0.1"
    jar.set_cookie(
        http.cookiejar.Cookie(
            0,
            "sessionid",
            session,
            None,
            False,
            host,
            False,
            False,
            "/",
            True,
            False,
            None,
            False,
            None,
            None,
            {},
        )
    )
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def run_annotator(
    a: Annotator,
    base: str,
    campaign: int,
    label_of: Mapping[int, str],
    budget: Budget,
    think: float,
    seed: int,
) -> None:
    url = f"{base}campaigns/{campaign}/label/"
    opener = _opener(base, a.session)
    rng = random.Random(seed)
    page = opener.open(url, timeout=30).read().decode()
    while budget.take():
        if think:  # reading the text: uniform in [think/2, 3 think/2]
            time.sleep(rng.uniform(0.5 * think, 1.5 * think))
        match, token = ITEM.search(page), TOKEN.search(page)
        if not match or not match.group(1) or not token:
            budget.give_back()
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
        t0 = time.perf_counter()
        try:
            with opener.open(request, timeout=60) as response:
                page = response.read().decode()
        except OSError as exc:
            a.errors.append(f"{type(exc).__name__}: {exc}")
            page = opener.open(url, timeout=30).read().decode()
            continue
        a.latencies.append(time.perf_counter() - t0)
        a.submitted.append(item)
        lag = LAG.search(page)
        if lag:
            a.lags.append(int(lag.group(1)))


class Budget:
    """Labels still to be given and a deadline, shared by the annotator threads."""

    def __init__(self, labels: int, seconds: float) -> None:
        self.left, self.deadline = labels, time.monotonic() + seconds
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0 or time.monotonic() > self.deadline:
                return False
            self.left -= 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.left += 1


def run_load(
    base: str,
    campaign: int,
    annotators: list[Annotator],
    label_of: Mapping[int, str],
    labels: int,
    seconds: float,
    think: float,
) -> float:
    """Let every annotator label in a thread of its own until ``labels`` labels are given or
    ``seconds`` have passed; returns the wall time."""
    budget = Budget(labels, seconds)
    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=run_annotator, args=(a, base, campaign, label_of, budget, think, i))
        for i, a in enumerate(annotators)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-loop")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=900, help="hard time limit")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean seconds an annotator reads before answering (0: answer at once)",
    )
    args = parser.parse_args(argv)

    from labeling.demo import wait_until

    stack = Stack.prepare("loop")
    try:
        stack.start_redis()
        import django

        django.setup()
        campaign_id, annotators, label_of = _setup(args.items, args.annotators)
        stack.start_worker()
        stack.start_web(args.web_workers)
        wait_until(lambda: _learner_ready(campaign_id), 300, "embeddings and the first queue")

        wall = run_load(
            stack.base, campaign_id, annotators, label_of, args.labels, args.seconds, args.think
        )
        stack.procs.check()
        return _report(campaign_id, annotators, wall, stack.db, args)
    finally:
        stack.stop()


def _setup(n_items: int, n_annotators: int) -> tuple[int, list[Annotator], dict[int, str]]:
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from labeling.embeddings.embedders import FakeEmbedder
    from labeling.imports.write import import_file
    from labeling.models import Campaign, Item

    call_command("migrate", interactive=False, verbosity=0)
    users = get_user_model().objects
    manager = users.create_user("bench-manager", is_staff=True)
    # No automatic retraining: this measures the loop (a retrain on the single worker process
    # would hold the learner updates back for its duration).
    campaign = Campaign.objects.create(
        name="Bench", created_by=manager, gold_rate=0, retrain_every=0
    )
    texts = [f"benchmark review number {i}" for i in range(n_items)]
    import_file(campaign, manager, ("text\n" + "\n".join(texts)).encode(), "bench.csv")
    # Annotators answer like a fixed linear teacher on the (fake) embeddings: learnable.
    E = FakeEmbedder().encode(texts)
    y = E @ np.random.default_rng(0).standard_normal(E.shape[1]) > 0
    by_text = dict(zip(texts, y, strict=True))
    label_of = {
        pk: ("positive" if by_text[text] else "negative")
        for pk, text in Item.objects.filter(campaign=campaign).values_list("pk", "text")
    }
    annotators = []
    for i in range(n_annotators):
        user = users.create_user(f"bench-annotator-{i}")
        campaign.annotators.add(user)
        client = Client()
        client.force_login(user)
        annotators.append(Annotator(user.username, client.cookies["sessionid"].value))
    return campaign.pk, annotators, label_of


def _learner_ready(campaign_id: int) -> bool:
    from labeling.models import LearnerSnapshot

    return LearnerSnapshot.objects.filter(campaign_id=campaign_id).exclude(queue=[]).exists()


def _report(
    campaign_id: int, annotators: list[Annotator], wall: float, db: str, args: argparse.Namespace
) -> int:
    from labeling.models import Label, LearnerSnapshot

    latencies = [x * 1000 for a in annotators for x in a.latencies]
    lags = [x for a in annotators for x in a.lags]
    served: dict[int, set[str]] = {}
    for a in annotators:
        for item in a.served:
            served.setdefault(item, set()).add(a.name)
    duplicates = sum(1 for who in served.values() if len(who) > 1)
    stored = set(
        Label.objects.filter(item__campaign_id=campaign_id, undone_at__isnull=True).values_list(
            "item_id", "annotator__username"
        )
    )
    submitted = {(item, a.name) for a in annotators for item in a.submitted}
    lost = len(submitted - stored)
    errors = [e for a in annotators for e in a.errors]
    snap = LearnerSnapshot.objects.get(campaign_id=campaign_id)
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    lag95 = percentile([float(x) for x in lags], 0.95) if lags else float("nan")
    print(
        f"Carve labeling loop: {len(submitted)} labels by {len(annotators)} annotators on "
        f"{args.items} items in {wall:.1f} s ({len(submitted) / wall:.1f} labels/s); {db}, "
        f"{args.web_workers} gunicorn workers, 1 Celery worker; {machine()}"
    )
    print(f"next item p50: {p50:.1f} ms")
    print(f"next item p95: {p95:.1f} ms")
    print(f"duplicate assignments: {duplicates}")
    print(f"lost labels: {lost}")
    print(f"learner lag p95: {lag95:.0f} labels")
    print(
        f"(learner: {snap.n_labels} labels in its last update, {snap.seconds:.2f} s per "
        f"update; HTTP errors: {len(errors)})"
    )
    write_rows(
        OUT_DIR / "loop.csv",
        [
            {
                "annotator": a.name,
                "labels": len(a.submitted),
                "p50_ms": statistics.median(a.latencies) * 1000 if a.latencies else "",
                "errors": len(a.errors),
            }
            for a in annotators
        ],
    )
    ok = p95 < 100 and duplicates == 0 and lost == 0
    print("targets (p95 < 100 ms, 0 duplicates, 0 lost):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
