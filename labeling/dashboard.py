"""What the campaign manager's dashboard shows, computed from the database."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from labeling import review
from labeling.agreement import cohen_kappa, fleiss_kappa
from labeling.models import Campaign, Decision, Item, Label, LearnerPoint, LearnerSnapshot


@dataclass(frozen=True)
class AnnotatorStats:
    username: str
    n_labels: int
    last_hour: int
    per_hour: float  # over the span from their first to their last label (at least 1 minute)
    gold_accuracy: float | None
    n_gold: int


@dataclass(frozen=True)
class Agreement:
    statistic: str  # "Cohen's kappa", "Fleiss' kappa", or "" when nothing is overlapped
    value: float | None
    n_items: int


@dataclass
class Summary:
    n_items: int
    n_done: int  # items with a label (or a manager's decision)
    n_labels: int
    n_review: int
    n_gold: int
    annotators: list[AnnotatorStats] = field(default_factory=list)
    agreement: Agreement = Agreement("", None, 0)
    distribution: list[tuple[str, int]] = field(default_factory=list)
    curve: list[LearnerPoint] = field(default_factory=list)
    snapshot: LearnerSnapshot | None = None
    lag: int = 0  # label changes the learner has not reflected yet


def agreement(campaign: Campaign, labels: list[tuple[int, int, str]]) -> Agreement:
    """Cohen's kappa when two annotators share the overlapped items, else Fleiss' kappa over
    the items with exactly ``campaign.overlap`` labels."""
    by_item: dict[int, dict[int, str]] = defaultdict(dict)
    for item_id, annotator_id, value in labels:
        by_item[item_id][annotator_id] = value
    shared = {i: r for i, r in by_item.items() if len(r) >= 2}
    if not shared:
        return Agreement("", None, 0)
    raters = {a for r in shared.values() for a in r}
    if len(raters) == 2:
        a, b = sorted(raters)
        pairs = [(r[a], r[b]) for r in shared.values()]
        return Agreement(
            "Cohen's kappa", cohen_kappa([p[0] for p in pairs], [p[1] for p in pairs]), len(pairs)
        )
    m = max(2, campaign.overlap)
    full = [list(r.values()) for r in shared.values() if len(r) == m]
    return Agreement("Fleiss' kappa", fleiss_kappa(full) if full else None, len(full))


def summarize(campaign: Campaign) -> Summary:
    now = timezone.now()
    active = Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
    rows = list(
        active.values_list("item_id", "annotator_id", "annotator__username", "value", "created_at")
    )
    gold = dict(Item.objects.filter(campaign=campaign).exclude(gold="").values_list("pk", "gold"))
    decided = set(
        Decision.objects.filter(item__campaign=campaign).values_list("item_id", flat=True)
    )
    per: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        per[row[2]].append(row)
    annotators = []
    for name, given in sorted(per.items()):
        times = [r[4] for r in given]
        hours = max((max(times) - min(times)).total_seconds(), 60.0) / 3600
        on_gold = [r for r in given if r[0] in gold]
        annotators.append(
            AnnotatorStats(
                username=name,
                n_labels=len(given),
                last_hour=sum(t > now - timedelta(hours=1) for t in times),
                per_hour=len(given) / hours,
                gold_accuracy=(
                    sum(r[3] == gold[r[0]] for r in on_gold) / len(on_gold) if on_gold else None
                ),
                n_gold=len(on_gold),
            )
        )
    counts = Counter(r[3] for r in rows)
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).first()
    return Summary(
        n_items=campaign.items.count(),
        n_done=len({r[0] for r in rows} | decided),
        n_labels=len(rows),
        n_review=len(review.review_items(campaign)),
        n_gold=len(gold),
        annotators=annotators,
        agreement=agreement(campaign, [(r[0], r[1], r[3]) for r in rows]),
        distribution=[(name, counts.get(name, 0)) for name in campaign.labels],
        curve=list(LearnerPoint.objects.filter(campaign=campaign).filter(~Q(n_labels=0))),
        snapshot=snapshot,
        lag=campaign.label_version - (snapshot.version if snapshot else 0),
    )
