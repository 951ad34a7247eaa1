"""Items in review (disagreements, contradictions, suspect labels) and a manager's decision."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from labeling.campaign_learner import request_update
from labeling.consensus import disagreements
from labeling.models import Campaign, Decision, Item, LearnerSnapshot


def review_items(campaign: Campaign, disagreed: list[int] | None = None) -> list[int]:
    """Items a manager should look at, and no decision was made since: annotators disagree;
    the learner found their labels contradictory (its last conflict groups, hard cuts); or
    its centre gets their label wrong (its suspects, most wrong first, at most
    ``CARVE_REVIEW_SUSPECTS``; docs/learner.md "Suspect labels").

    ``disagreed``: :func:`labeling.consensus.disagreements` when the caller has it already.
    """
    snapshot = (
        LearnerSnapshot.objects.filter(campaign=campaign).only("conflicts", "suspects").first()
    )
    conflicted = {pk for group in (snapshot.conflicts if snapshot else []) for pk in group}
    decided = set(
        Decision.objects.filter(item__campaign=campaign).values_list("item_id", flat=True)
    )
    suspects = [pk for pk in (snapshot.suspects if snapshot else []) if pk not in decided]
    # Sent to review from the items page (docs/platform.md, "The items page"): first, until
    # a decision clears the request.
    requested = list(
        Item.objects.filter(campaign=campaign, review_requested_at__isnull=False)
        .order_by("review_requested_at", "pk")
        .values_list("pk", flat=True)
    )
    out = (
        requested
        + (disagreements(campaign) if disagreed is None else disagreed)
        + sorted(conflicted - decided)
        + suspects[: settings.CARVE_REVIEW_SUSPECTS]
    )
    return list(dict.fromkeys(out))


def decide(item: Item, user: Any, value: str) -> Decision:
    """Record a manager's verdict on ``item`` and queue a learner update."""
    if value not in item.campaign.labels:
        raise ValueError(f"{value!r} is not a label of this campaign")
    with transaction.atomic():
        decision = Decision.objects.create(item=item, value=value, decided_by=user)
        Item.objects.filter(pk=item.pk).update(review_requested_at=None)
        request_update(item.campaign_id)
    return decision
