"""What the campaign manager's dashboard shows, computed from the database."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q
from django.utils import timezone

from labeling import evaluation, review
from labeling.agreement import cohen_kappa, fleiss_kappa
from labeling.models import Campaign, Decision, Label, LearnerPoint, LearnerSnapshot


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
    n_evaluation: int = 0  # items in the reserved evaluation set
    estimate: Estimate | None = None  # the model's accuracy as honestly as we can tell now
    stop: evaluation.StopEstimate = evaluation.StopEstimate(False, None, "")


@dataclass(frozen=True)
class Estimate:
    """The centre's accuracy: on the evaluation set once it has ``evaluation.MIN_LABELS``
    labels, else cross-validated on the training labels (docs/platform.md, "The evaluation
    set")."""

    kind: str  # "evaluation" or "cross-validated"
    accuracy: float
    low: float
    high: float
    n: int

    @property
    def caption(self) -> str:
        if self.kind == "evaluation":
            return f"evaluation set ({self.n} labeled items, Wilson 95 % interval)"
        return f"cross-validated estimate (from training labels; {self.n} labels)"


def estimate(curve: list[LearnerPoint], snapshot: LearnerSnapshot | None) -> Estimate | None:
    """The latest trusted evaluation point, else the learner's cross-validated estimate
    (``snapshot.estimate``: {"accuracy", "n", "folds"}) with a Wilson interval on its n."""
    for point in reversed(curve):
        if point.eval_accuracy is not None and point.n_eval >= evaluation.MIN_LABELS:
            low, high = point.eval_low or 0.0, point.eval_high or 1.0
            return Estimate("evaluation", point.eval_accuracy, low, high, point.n_eval)
    cv = snapshot.estimate if snapshot is not None else None
    if isinstance(cv, dict) and cv.get("accuracy") is not None and cv.get("n"):
        n = int(cv["n"])
        low, high = evaluation.wilson(round(float(cv["accuracy"]) * n), n)
        return Estimate("cross-validated", float(cv["accuracy"]), low, high, n)
    return None


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
    """The dashboard's figures in two aggregate passes over the campaign's active labels (by
    annotator and label, then the items with two labels or more), so Python sees a row per
    annotator and label and per overlapped item, never one per label (docs/scaling.md,
    "Dashboard and metrics")."""
    now = timezone.now()
    active = Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
    on_gold = ~Q(item__gold="")
    cells = list(
        active.values("annotator_id", "value")
        .annotate(
            n=Count("pk"),
            first=Min("created_at"),
            last=Max("created_at"),
            last_hour=Count("pk", filter=Q(created_at__gt=now - timedelta(hours=1))),
            n_gold=Count("pk", filter=on_gold),
            right=Count("pk", filter=on_gold & Q(value=F("item__gold"))),
        )
        .order_by()
    )
    counts: Counter[str] = Counter()
    per: dict[int, dict[str, Any]] = {}
    for cell in cells:
        counts[cell["value"]] += cell["n"]
        row = per.get(cell["annotator_id"])
        if row is None:
            per[cell["annotator_id"]] = dict(cell)
            continue
        for key in ("n", "last_hour", "n_gold", "right"):
            row[key] += cell[key]
        row["first"], row["last"] = min(row["first"], cell["first"]), max(row["last"], cell["last"])
    names = dict(get_user_model().objects.filter(pk__in=per).values_list("pk", "username"))
    annotators = []
    for annotator_id, row in sorted(per.items(), key=lambda kv: names[kv[0]]):
        hours = max((row["last"] - row["first"]).total_seconds(), 60.0) / 3600
        annotators.append(
            AnnotatorStats(
                username=names[annotator_id],
                n_labels=row["n"],
                last_hour=row["last_hour"],
                per_hour=row["n"] / hours,
                gold_accuracy=row["right"] / row["n_gold"] if row["n_gold"] else None,
                n_gold=row["n_gold"],
            )
        )
    # Items with two labels or more: agreement, disagreements, and how many items are done.
    overlapped = (
        active.values("item_id")
        .annotate(n=Count("pk"), n_values=Count("value", distinct=True), first=Min("pk"))
        .filter(n__gte=2)
        .order_by()
    )
    groups = list(overlapped)
    ids: Any = [g["item_id"] for g in groups]
    if len(ids) > OVERLAP_LIST:  # too long for an IN list: the database joins them itself
        ids = overlapped.values("item_id")
    shared = list(active.filter(item_id__in=ids).values_list("item_id", "annotator_id", "value"))
    decided = set(
        Decision.objects.filter(item__campaign=campaign).values_list("item_id", flat=True)
    )
    disagreements = [
        g["item_id"]
        for g in sorted(groups, key=lambda g: g["first"])
        if g["n_values"] > 1 and g["item_id"] not in decided
    ]
    n_labels = sum(counts.values())
    n_labeled = n_labels - sum(g["n"] - 1 for g in groups)
    # Decided items without an active label are done too.
    n_decided_only = (
        Decision.objects.filter(item__campaign=campaign)
        .exclude(Exists(Label.objects.filter(item=OuterRef("item"), undone_at__isnull=True)))
        .aggregate(n=Count("item_id", distinct=True))["n"]
    )
    # Not the stored learner state (its bytes grow with the labels): the page needs none.
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).defer("state", "training").first()
    last = campaign.items.aggregate(m=Max("position"))["m"]
    curve = list(LearnerPoint.objects.filter(campaign=campaign).filter(~Q(n_labels=0)))
    return Summary(
        # Positions run 0..n-1 (items are append-only; docs/platform.md, "Uploads"): the
        # largest one is an index look-up, a count reads every item.
        n_items=0 if last is None else last + 1,
        n_done=n_labeled + n_decided_only,
        n_labels=n_labels,
        n_review=len(review.review_items(campaign, disagreements)),
        n_gold=campaign.items.exclude(gold="").count(),
        annotators=annotators,
        agreement=agreement(campaign, shared),
        distribution=[(name, counts.get(name, 0)) for name in campaign.labels],
        curve=curve,
        snapshot=snapshot,
        lag=campaign.label_version - (snapshot.version if snapshot else 0),
        n_evaluation=campaign.items.filter(evaluation=True).count(),
        estimate=estimate(curve, snapshot),
        stop=evaluation.stop_estimate(curve),
    )


#: Overlapped items whose labels are fetched by a list of ids; more go through a subquery.
OVERLAP_LIST = 5000
