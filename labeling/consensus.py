"""Which class each item trains with: its agreeing active labels, or a manager's decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Exists, F, Min, OuterRef

from labeling.models import Campaign, Decision, Label


@dataclass(frozen=True)
class Training:
    """Consensus labels: one row per item whose active labels agree, or that a manager decided."""

    # [item id, class index], ordered by the item's first label (or decision). The learner
    # state depends only on the item's embedding and class, so a second agreeing label (or
    # its undo) leaves the rows as they are and the stored state is extended, not rebuilt.
    rows: list[list[Any]]
    disagreements: list[int]  # item ids whose annotators disagree, not decided yet


def consensus(campaign: Campaign) -> Training:
    index = {name: i for i, name in enumerate(campaign.labels)}
    decided: dict[int, tuple[int, str]] = {}
    for decision_id, item_id, value in (
        Decision.objects.filter(item__campaign=campaign)
        .order_by("created_at", "pk")
        .values_list("pk", "item_id", "value")
    ):
        decided[item_id] = (decision_id, value)  # the latest one wins
    labels = Label.objects.filter(item__campaign=campaign, undone_at__isnull=True).order_by("pk")
    by_item: dict[int, list[tuple[int, str]]] = {}
    for label_id, item_id, value in labels.values_list("pk", "item_id", "value"):
        by_item.setdefault(item_id, []).append((label_id, value))
    for item_id in decided:
        by_item.setdefault(item_id, [])
    rows, disagreements = [], []

    def first_seen(kv: tuple[int, list[tuple[int, str]]]) -> int:
        item_id, given = kv
        return given[0][0] if given else 10**12 + decided[item_id][0]

    for item_id, given in sorted(by_item.items(), key=first_seen):
        if item_id in decided:
            decision_id, value = decided[item_id]
            if value in index:
                rows.append([item_id, index[value]])
            continue
        values = {value for _, value in given}
        if len(values) > 1:
            disagreements.append(item_id)
        elif next(iter(values)) in index:
            rows.append([item_id, index[next(iter(values))]])
    return Training(rows, disagreements)


def disagreements(campaign: Campaign) -> list[int]:
    """:attr:`Training.disagreements` of :func:`consensus` (items whose active labels
    disagree and that no manager decided, by their first label), computed by the database:
    the review page and the dashboard need only these, not every label in Python
    (docs/scaling.md, "Dashboard and metrics")."""
    decided = Decision.objects.filter(item=OuterRef("item_id"))
    return list(
        Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
        .values("item_id")
        .annotate(n_values=Count("value", distinct=True), first=Min("pk"))
        .filter(n_values__gt=1)
        .filter(~Exists(decided))
        .order_by("first")
        .values_list("item_id", flat=True)
    )


# --- items fully labeled (docs/scaling.md, "The labeling card's progress") ---------------


def items_done(campaign: Campaign, overlap: int | None = None) -> int:
    """Items with all the labels they need (``overlap`` active labels, or more), counted: a
    pass over the campaign's labels. The labeling card reads ``Campaign.n_fully_labeled``
    instead, which :func:`note_done` keeps and :func:`recount_done` sets."""
    return (
        Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
        .order_by()
        .values("item")
        .annotate(n=Count("pk"))
        .filter(n__gte=campaign.overlap if overlap is None else overlap)
        .count()
    )


def recount_done(campaign: Campaign) -> int:
    """Set ``Campaign.n_fully_labeled`` from a full count, under the campaign row's lock: after
    a change of ``overlap`` or a deletion of items (docs/scaling.md, "The labeling card's
    progress"). Returns it."""
    with transaction.atomic():
        overlap = (
            Campaign.objects.select_for_update()
            .filter(pk=campaign.pk)
            .values_list("overlap", flat=True)
            .first()
        )
        if overlap is None:
            return 0
        n = items_done(campaign, overlap)
        Campaign.objects.filter(pk=campaign.pk).update(n_fully_labeled=n)
    return n


def note_done(campaign_id: int, item_id: int, added: bool) -> None:
    """Keep ``Campaign.n_fully_labeled`` after one active label of ``item_id`` was added
    (``added``) or withdrawn: the item counts once it has ``overlap`` active labels.

    Call after ``labeling.campaign_learner.request_update`` in the same transaction: its
    UPDATE holds the campaign row's lock until the commit, and every label change takes it,
    so the item's active labels counted here include every committed change (no two
    concurrent labels of one item both see the count below ``overlap``)."""
    overlap = Campaign.objects.values_list("overlap", flat=True).get(pk=campaign_id)
    n = Label.objects.filter(item_id=item_id, undone_at__isnull=True).count()
    if added and n == overlap:
        step = F("n_fully_labeled") + 1
    elif not added and n == overlap - 1:
        step = F("n_fully_labeled") - 1
    else:
        return
    Campaign.objects.filter(pk=campaign_id).update(n_fully_labeled=step)
