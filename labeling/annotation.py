"""Serving items to annotators and storing their labels (docs/platform.md, "The labeling loop").

- :func:`next_assignment` gives an annotator their current lease, or claims a new item: the
  learner's ranked queue first, then the rest in pool order; a share of gold items is mixed
  in. Claims lock the item row (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
  IMMEDIATE transactions serialise writers), count the item's live assignments, and insert a
  lease only while fewer than ``campaign.overlap`` exist. Two annotators never hold the same
  item unless it needs two labels; an expired lease no longer counts.
- :func:`submit_label` stores a label once (a double submission returns the first),
  :func:`skip` sets the item aside for this annotator, :func:`undo_last` withdraws the
  annotator's latest label (kept, marked undone) and leases its item to them again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from labeling import campaign_learner, consensus, evaluation, signals
from labeling.models import Assignment, Campaign, Item, Label

State = Assignment.State


def _labeled(campaign_id: int, item_id: int) -> None:
    """Send ``signals.items_labeled`` for one new label once the transaction commits (webhooks,
    docs/platform.md, "Webhooks")."""

    def send() -> None:
        signals.items_labeled.send(
            sender=Label, campaign_id=campaign_id, item_ids=[item_id], n_labels=1
        )

    transaction.on_commit(send, robust=True)


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.CARVE_LEASE_SECONDS)


def _live(now: Any) -> Q:
    """Assignments that occupy a slot of their item: labeled, or leased and not expired."""
    return Q(state=State.LABELED) | Q(state=State.LEASED, expires_at__gt=now)


def available_items(campaign: Campaign, user: Any, now: Any = None) -> QuerySet[Item]:
    """Items this annotator may be served now (a claim re-checks under a lock).

    Every condition is a subquery of one item, so the database walks the items in the
    caller's order and stops at its LIMIT instead of counting the assignments of every item
    first (docs/scaling.md, "Next item").
    """
    now = now or timezone.now()
    # The annotator's own expired lease does not exclude the item: they may get it back.
    settled_or_held = Assignment.objects.filter(item=OuterRef("pk"), annotator=user).filter(
        Q(state__in=[State.LABELED, State.SKIPPED]) | Q(state=State.LEASED, expires_at__gt=now)
    )
    items = Item.objects.filter(campaign=campaign).exclude(Exists(settled_or_held))
    live = Assignment.objects.filter(_live(now), item=OuterRef("pk"))
    if campaign.overlap <= 1:
        return items.exclude(Exists(live))
    busy = live.order_by().values("item").annotate(n=Count("pk")).values("n")
    return items.alias(busy=Coalesce(Subquery(busy), 0)).filter(busy__lt=campaign.overlap)


def _claim(item_id: int, user: Any, overlap: int) -> Assignment | None:
    now = timezone.now()
    with transaction.atomic():
        item = Item.objects.select_for_update(skip_locked=True).filter(pk=item_id).first()
        if item is None:  # being claimed by someone else right now (PostgreSQL), or gone
            return None
        mine = Assignment.objects.filter(item=item, annotator=user).first()
        if mine is not None and mine.state != State.LEASED:
            return None  # labeled or skipped by this annotator already
        others = (
            Assignment.objects.filter(item=item)
            .exclude(annotator=user)
            .filter(Q(state=State.LABELED) | Q(state=State.LEASED, expires_at__gt=now))
            .count()
        )
        if others >= overlap:
            return None
        if mine is not None:  # this annotator's own expired lease: renew it
            mine.expires_at = now + lease_duration()
            mine.save(update_fields=["expires_at", "updated_at"])
            return mine
        return Assignment.objects.create(
            item=item, annotator=user, state=State.LEASED, expires_at=now + lease_duration()
        )


def candidate_stages(
    campaign: Campaign, user: Any, ranked: list[int], rng: random.Random, limit: int = 50
) -> Iterator[list[int]]:
    """Item ids to try, stage by stage, each computed only if the earlier ones gave nothing:
    items still missing labels (overlap >= 2), gold items (with probability ``gold_rate``),
    evaluation items (with probability ``evaluation.SERVE_RATE``), the learner's ranked
    queue, then the rest in pool order."""
    available = available_items(campaign, user)
    if campaign.overlap > 1:  # items that already have a label need their second one first
        labeled = Assignment.objects.filter(item=OuterRef("pk"), state=State.LABELED)
        yield list(
            available.filter(Exists(labeled))
            .order_by("position")
            .values_list("pk", flat=True)[:limit]
        )
    if campaign.gold_rate and rng.random() < campaign.gold_rate:
        gold = list(available.exclude(gold="").values_list("pk", flat=True)[:limit])
        rng.shuffle(gold)
        yield gold
    # Evaluation items still missing labels, at evaluation.SERVE_RATE, never marked as such
    # (docs/platform.md, "The evaluation set"): the ranked queue never holds them.
    if rng.random() < evaluation.SERVE_RATE:
        held = list(available.filter(evaluation=True).values_list("pk", flat=True)[:limit])
        rng.shuffle(held)
        yield held
    if ranked:
        # evaluation=False: a queue ranked before the set grew may hold new evaluation items.
        still = set(available.filter(pk__in=ranked, evaluation=False).values_list("pk", flat=True))
        yield [pk for pk in ranked if pk in still]
    yield list(available.order_by("position").values_list("pk", flat=True)[:limit])


def current_assignment(campaign: Campaign, user: Any) -> Assignment | None:
    """The annotator's oldest unexpired lease in this campaign."""
    return (
        Assignment.objects.filter(
            item__campaign=campaign,
            annotator=user,
            state=State.LEASED,
            expires_at__gt=timezone.now(),
        )
        .select_related("item")
        .order_by("created_at", "pk")
        .first()
    )


def next_assignment(
    campaign: Campaign, user: Any, ranked: list[int] | None = None, rng: random.Random | None = None
) -> Assignment | None:
    """The item this annotator should label now, leased to them; None when nothing is left
    (or the campaign is stopped). ``ranked`` defaults to the learner's ranked queue."""
    if campaign.stopped_at is not None:
        return None
    current = current_assignment(campaign, user)
    if current is not None:
        return current
    rng = rng or random.Random()
    tried: set[int] = set()
    if ranked is None:
        ranked = campaign_learner.ranked_queue(campaign)
    for stage in candidate_stages(campaign, user, ranked, rng):
        for item_id in stage:
            if item_id in tried:
                continue
            tried.add(item_id)
            claimed = _claim(item_id, user, campaign.overlap)
            if claimed is not None:
                return claimed
    return None


@dataclass(frozen=True)
class Submitted:
    label: Label
    created: bool  # False: a double submission, the first label stands


def submit_label(item: Item, user: Any, value: str, comment: str = "") -> Submitted:
    """Store ``value`` as ``user``'s label of ``item`` (once) and close their assignment.

    The label is accepted even when the lease has expired meanwhile: the work is done and no
    label is lost (the item may then get one label more than ``overlap``).
    """
    if value not in item.campaign.labels:
        raise ValueError(f"{value!r} is not a label of this campaign")
    try:
        with transaction.atomic():
            label = Label.objects.create(item=item, annotator=user, value=value, comment=comment)
            Assignment.objects.update_or_create(
                item=item,
                annotator=user,
                defaults={"state": State.LABELED, "expires_at": timezone.now()},
            )
            campaign_learner.request_update(item.campaign_id)
            consensus.note_done(item.campaign_id, item.pk, added=True)
            _labeled(item.campaign_id, item.pk)
    except IntegrityError:
        existing = Label.objects.get(item=item, annotator=user, undone_at__isnull=True)
        return Submitted(existing, created=False)
    return Submitted(label, created=True)


def skip(item: Item, user: Any) -> bool:
    """Set a leased item aside for this annotator (others may still get it). A stale skip of
    an item they already labeled changes nothing. Returns whether it skipped."""
    return bool(
        Assignment.objects.filter(item=item, annotator=user, state=State.LEASED).update(
            state=State.SKIPPED, expires_at=timezone.now()
        )
    )


def undo_last(campaign: Campaign, user: Any, item_id: int | None = None) -> Label | None:
    """Withdraw the annotator's latest label in ``campaign`` and lease its item back to them.

    With ``item_id`` (what the page showed as "last label"), only a latest label on that item
    is withdrawn, so a double-clicked undo withdraws one label, not two. The item is leased
    back only while it has a free slot (someone else may hold it by now); otherwise the
    assignment becomes SKIPPED. The label row stays (``undone_at`` set): undo never loses data.
    Returns the withdrawn label, or None.
    """
    with transaction.atomic():
        label = (
            Label.objects.select_for_update()
            .filter(item__campaign=campaign, annotator=user, undone_at__isnull=True)
            .order_by("-created_at", "-pk")
            .first()
        )
        if label is None or (item_id is not None and label.item_id != item_id):
            return None
        Item.objects.select_for_update().filter(pk=label.item_id).exists()
        now = timezone.now()
        label.undone_at = now
        label.save(update_fields=["undone_at"])
        others = (
            Assignment.objects.filter(item_id=label.item_id)
            .exclude(annotator=user)
            .filter(Q(state=State.LABELED) | Q(state=State.LEASED, expires_at__gt=now))
            .count()
        )
        free = others < campaign.overlap
        Assignment.objects.filter(item=label.item_id, annotator=user).update(
            state=State.LEASED if free else State.SKIPPED,
            expires_at=now + lease_duration() if free else now,
        )
        campaign_learner.request_update(campaign.pk)
        consensus.note_done(campaign.pk, label.item_id, added=False)
    return label


def relabel(campaign: Campaign, user: Any, label_id: int, value: str) -> tuple[Label, Label] | None:
    """Change one of the annotator's own active labels in ``campaign`` to ``value``: the old
    label is withdrawn (``undone_at``, like an undo) and a new one takes its place, so the
    learner hears of it like any other label change. Returns (old, new) — the same label
    twice when the value did not change — or None when ``label_id`` is not an active label of
    this annotator in this campaign (docs/platform.md, "The labeling page")."""
    if value not in campaign.labels:
        raise ValueError(f"{value!r} is not a label of this campaign")
    with transaction.atomic():
        old = (
            Label.objects.select_for_update()
            .filter(pk=label_id, item__campaign=campaign, annotator=user, undone_at__isnull=True)
            .select_related("item")
            .first()
        )
        if old is None:
            return None
        if old.value == value:
            return old, old
        old.undone_at = timezone.now()
        old.save(update_fields=["undone_at"])
        new = Label.objects.create(item=old.item, annotator=user, value=value, comment=old.comment)
        campaign_learner.request_update(campaign.pk)  # one label for another: as many done
        _labeled(campaign.pk, old.item_id)
    return old, new


def _skipped(campaign: Campaign, user: Any) -> QuerySet[Assignment]:
    """The annotator's skipped items in ``campaign`` that still have a free slot."""
    now = timezone.now()
    mine = Assignment.objects.filter(item__campaign=campaign, annotator=user, state=State.SKIPPED)
    others = Assignment.objects.filter(_live(now), item=OuterRef("item")).exclude(annotator=user)
    if campaign.overlap <= 1:
        return mine.exclude(Exists(others))
    busy = others.order_by().values("item").annotate(n=Count("pk")).values("n")
    return mine.alias(busy=Coalesce(Subquery(busy), 0)).filter(busy__lt=campaign.overlap)


def skipped_count(campaign: Campaign, user: Any) -> int:
    """How many items this annotator skipped that they could still label. Skipped items never
    come back by themselves; :func:`unskip` brings them back."""
    return _skipped(campaign, user).count()


def unskip(campaign: Campaign, user: Any) -> int:
    """Put the annotator's skipped items (those with a free slot) back in their queue, as
    expired leases of their own: the next claim renews one. Returns how many came back."""
    ids = list(_skipped(campaign, user).values_list("pk", flat=True))
    return Assignment.objects.filter(pk__in=ids, state=State.SKIPPED).update(
        state=State.LEASED, expires_at=timezone.now()
    )


def recent_labels(campaign: Campaign, user: Any, limit: int = 10) -> list[Label]:
    """The annotator's latest active labels in ``campaign``, newest first, with their items."""
    return list(
        Label.objects.filter(item__campaign=campaign, annotator=user, undone_at__isnull=True)
        .select_related("item")
        .order_by("-created_at", "-pk")[:limit]
    )
