"""Several campaigns labeling at once on real worker processes (docs/platform.md, "Workers and
queues").

Learner updates of different campaigns run in parallel on different worker processes, while
those of one campaign never overlap (its lock, docs/platform.md, "Reliability"); and with a
worker dedicated to the default queue, a long model-version fit of one campaign (on the
"slow" queue) does not hold up another campaign's learner update.

The evidence is what the workers record: the log line every learner update ends with
("learner of campaign N: ... 0.42 s (...)", stamped to the millisecond when the update is
done, with the update's duration), Celery's own task lines, and the times the workers write
on the rows (the snapshot's ``updated_at``, the version's ``started_at``/``finished_at``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import redis

from labeling import annotation, model_versions, tasks
from labeling.models import Campaign, Item, LearnerSnapshot, ModelVersion
from tests.labeling.builders import embedded_campaign
from tests.support.processes import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

#: The log line's clock has milliseconds and the duration two decimals, so a start computed
#: from them may come out up to ~6 ms early; two runs closer than this are not called
#: overlapping. A real double run overlaps for a whole update (a tenth of a second and more).
ROUNDING = 0.02

RUN = re.compile(
    r"^(\S+ \S+) INFO labeling\.campaign_learner \[(\d+)\] "
    r"learner of campaign (\d+): .*?([\d.]+) s \(",
    flags=re.M,
)
TASK_RECEIVED = re.compile(r"Task labeling\.tasks\.\w+\[([\w-]+)\] received")
TASK_ENDED = re.compile(r"Task labeling\.tasks\.\w+\[([\w-]+)\] (?:succeeded|raised|retry)")
BUSY = re.compile(r"Task labeling\.tasks\.update_learner\[[\w-]+\] succeeded in \S+: 'busy'")


class Run:
    """One learner update as its worker logged it: [start, end] inside the campaign's lock."""

    def __init__(self, campaign: int, pid: int, start: float, end: float) -> None:
        self.campaign, self.pid, self.start, self.end = campaign, pid, start, end

    def overlaps(self, other: Run) -> bool:
        return self.start < other.end - ROUNDING and other.start < self.end - ROUNDING

    def __repr__(self) -> str:
        return f"<campaign {self.campaign} pid {self.pid} {self.start:.3f}-{self.end:.3f}>"


def _runs(workers: list[Worker]) -> list[Run]:
    runs = []
    for worker in workers:
        for stamp, pid, campaign, seconds in RUN.findall(worker.log.read_text(errors="replace")):
            end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            runs.append(Run(int(campaign), int(pid), end - float(seconds), end))
    return sorted(runs, key=lambda run: run.start)


def _settled(workers: list[Worker], broker: str) -> bool:
    """No message waits in a queue, and every task a worker took has ended (so every update
    it ran is in its log)."""
    client = redis.Redis.from_url(broker)
    if client.llen("celery") or client.llen("slow"):
        return False
    logs = [w.log.read_text(errors="replace") for w in workers]
    received = {i for log in logs for i in TASK_RECEIVED.findall(log)}
    return received == {i for log in logs for i in TASK_ENDED.findall(log)}


def _caught_up(campaign: Campaign) -> bool:
    campaign.refresh_from_db()
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()
    return (
        not campaign.learner_pending
        and snapshot is not None
        and snapshot.version == campaign.label_version
    )


def _label(items: list[Item], E: Any, annotator: Any, i: int) -> None:
    annotation.submit_label(items[i], annotator, "positive" if E[i, 0] > 0 else "negative")


def _new_campaign(name: str, manager: Any, annotator: Any) -> Campaign:
    campaign = Campaign.objects.create(name=name, created_by=manager)
    campaign.annotators.add(annotator)
    return campaign


def test_updates_of_four_campaigns_run_in_parallel_on_two_workers_never_twice_at_once(
    manager: Any, annotator: Any, start_worker: Callable[..., Worker], redis_url: str
) -> None:
    campaigns = [_new_campaign(f"campaign {k}", manager, annotator) for k in range(4)]
    pools = [embedded_campaign(c, 200, retrain_every=0) for c in campaigns]
    start, rounds = 30, 12
    for (items, E), _ in zip(pools, campaigns, strict=True):
        for i in range(start):  # queues one update per campaign (coalesced)
            _label(items, E, annotator, i)
    # Two worker processes (one pool process each), consuming both queues as by default.
    workers = [start_worker("one"), start_worker("two")]

    for r in range(start, start + rounds):  # labels arrive on all four campaigns at once
        for (items, E), campaign in zip(pools, campaigns, strict=True):
            _label(items, E, annotator, r)
            # A second message for the same campaign, as the resend sweep or a page's nudge
            # may send: the two workers take both, and the campaign's lock must keep them
            # from running at once.
            tasks.update_learner.delay(campaign.pk)
        time.sleep(0.25)

    wait_for(
        lambda: all(_caught_up(c) for c in campaigns) and _settled(workers, redis_url),
        90,
        "every learner to hold every label",
        workers[0].log,
    )
    for campaign in campaigns:
        snapshot = LearnerSnapshot.objects.get(campaign=campaign)
        assert snapshot.n_labels == start + rounds, campaign.pk
    runs = _runs(workers)
    logs = [w.log.read_text(errors="replace") for w in workers]
    ids = {c.pk for c in campaigns}
    assert {run.campaign for run in runs} == ids
    assert len(runs) >= 2 * len(campaigns)

    # (a) Updates of different campaigns overlapped in time: they ran in parallel.
    parallel = [
        (a, b)
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
        if a.campaign != b.campaign and a.overlaps(b)
    ]
    assert parallel, f"no two campaigns were ever updated at once: {runs}"
    assert all(a.pid != b.pid for a, b in parallel)  # one pool process runs one at a time
    # (b) Updates of one campaign never overlapped...
    for campaign in ids:
        mine = [run for run in runs if run.campaign == campaign]
        twice = [(a, b) for i, a in enumerate(mine) for b in mine[i + 1 :] if a.overlaps(b)]
        assert not twice, f"two updates of campaign {campaign} ran at once: {twice}"
    # ... although both workers tried: duplicates found the campaign's lock taken ("busy"),
    # and no update was overtaken by a later one of its campaign ("stale").
    busy = sum(len(BUSY.findall(log)) for log in logs)
    assert busy >= 1, "no update ever met another of its campaign: (b) tested nothing"
    assert not any(": 'stale'" in log for log in logs)
    print(
        f"{len(runs)} learner updates, {len(parallel)} overlapping pairs of two campaigns, "
        f"{busy} duplicate messages answered 'busy'"
    )


def test_a_long_fit_of_one_campaign_does_not_hold_up_another_campaigns_learner(
    manager: Any, annotator: Any, start_worker: Callable[..., Worker]
) -> None:
    big = _new_campaign("big", manager, annotator)
    small = _new_campaign("small", manager, annotator)
    # 300 labels: the convex fit of a model version takes several seconds (13 s here), far
    # longer than a learner update of the small campaign (a tenth of a second).
    big_items, big_E = embedded_campaign(big, 400, retrain_every=0)
    for i in range(300):
        _label(big_items, big_E, annotator, i)
    small_items, small_E = embedded_campaign(small, 60, retrain_every=0)
    for i in range(5):
        _label(small_items, small_E, annotator, i)
    # One worker per queue, as a deployment with dedicated workers runs them.
    fast = start_worker("fast", queues=["celery"])
    slow = start_worker("slow", queues=["slow"])
    wait_for(
        lambda: _caught_up(big) and _caught_up(small), 60, "the first learner updates", fast.log
    )

    version = model_versions.request_retrain(big)
    wait_for(
        lambda: ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.RUNNING,
        60,
        "the big campaign's fit to start",
        slow.log,
    )
    _label(small_items, small_E, annotator, 5)
    wait_for(lambda: _caught_up(small), 30, "the small campaign's learner", fast.log)
    running = ModelVersion.objects.get(pk=version.pk).status
    wait_for(
        lambda: ModelVersion.objects.get(pk=version.pk).status == ModelVersion.Status.DONE,
        120,
        "the big campaign's fit",
        slow.log,
    )

    version.refresh_from_db()
    snapshot = LearnerSnapshot.objects.get(campaign=small)
    assert snapshot.n_labels == 6
    # The small campaign's update was stored while the big one's fit ran, as the rows the
    # two workers wrote say.
    assert running == ModelVersion.Status.RUNNING
    assert version.started_at is not None and version.finished_at is not None
    assert version.started_at < snapshot.updated_at < version.finished_at
    # Each worker took only its queue's tasks.
    fast_log, slow_log = fast.log.read_text(), slow.log.read_text()
    assert "labeling.tasks.update_learner[" in fast_log
    assert "labeling.tasks.update_learner[" not in slow_log
    assert "labeling.tasks.retrain[" in slow_log
    for task in ("retrain", "measure_learner", "embed_campaign"):
        assert f"labeling.tasks.{task}[" not in fast_log, task
