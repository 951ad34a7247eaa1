"""What a label export holds, item by item, read in position order a chunk at a time.

Every format (``labeling/exports/formats.py``) is written from :func:`chunks`: one query for
the items of a chunk, one for their active labels and one for their decisions, so a campaign
of any size is exported in constant memory (docs/platform.md, "Label export").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q

from labeling.models import Campaign, Decision, Item, Label, ModelVersion

#: Items fetched per query (and one Parquet row group, one Arrow record batch).
CHUNK_ITEMS = 2000

FINAL_DECISION, FINAL_CONSENSUS = "decision", "consensus"


@dataclass(frozen=True)
class RawLabel:
    """One annotator's active label of an item."""

    annotator: str
    annotator_id: int
    label: str
    comment: str
    created_at: datetime


@dataclass(frozen=True)
class Record:
    """One item, as every export format writes it."""

    item: int
    position: int
    text: str
    metadata: dict[str, Any]
    # The manager's latest decision ("decision"), else the value all the item's active labels
    # agree on ("consensus"; the rule of labeling/consensus.py), else "" for both.
    final_label: str
    final_source: str
    labels: list[RawLabel]
    gold: str
    evaluation: bool
    predicted: str  # the served model's class name, "" when the item has no prediction
    confidence: float | None
    model_version: int | None  # the latest finished model version's number


@dataclass(frozen=True)
class Plan:
    """What an export of one campaign covers, settled before the first row is written."""

    campaign: Campaign
    labeled_only: bool
    meta_keys: list[str]  # every metadata key of the exported items, in first-seen order
    label_names: list[str]
    model_version: int | None
    n_items: int = 0  # the items the export covers, counted in the metadata pass
    # Called with each chunk before it is written: an export job's progress and heartbeat
    # (docs/platform.md, "Export jobs"); it may raise to stop the export.
    progress: Callable[[list[Record]], None] | None = None


def _items(campaign: Campaign, labeled_only: bool) -> Any:
    items = Item.objects.filter(campaign=campaign)
    if labeled_only:
        active = Label.objects.filter(item=OuterRef("pk"), undone_at__isnull=True)
        items = items.filter(
            Q(Exists(active)) | Q(Exists(Decision.objects.filter(item=OuterRef("pk"))))
        )
    return items.order_by("position")


def plan(campaign: Campaign, *, labeled_only: bool = True) -> Plan:
    """The export's columns: the metadata keys come from one pass over the items' metadata,
    read in chunks (a CSV header and a Parquet schema need them before the first row)."""
    keys: dict[str, None] = {}
    n_items = 0
    for metadata in (
        _items(campaign, labeled_only)
        .values_list("metadata", flat=True)
        .iterator(chunk_size=CHUNK_ITEMS)
    ):
        n_items += 1
        for key in metadata or {}:
            keys.setdefault(str(key), None)
    latest = (
        ModelVersion.objects.filter(campaign=campaign, status=ModelVersion.Status.DONE)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )
    return Plan(campaign, labeled_only, list(keys), list(campaign.labels), latest, n_items)


def chunks(export: Plan, size: int | None = None) -> Iterator[list[Record]]:
    """The exported items in position order, ``size`` (:data:`CHUNK_ITEMS`) at a time: each
    chunk seeks past the last position of the one before (no OFFSET), and its labels and
    decisions are fetched for its range of positions only: three queries a chunk."""
    size = size or CHUNK_ITEMS
    items = _items(export.campaign, export.labeled_only)
    names = export.label_names
    last = -1
    while True:
        rows = list(
            items.filter(position__gt=last).values_list(
                "pk",
                "position",
                "text",
                "metadata",
                "gold",
                "evaluation",
                "predicted",
                "confidence",
            )[:size]
        )
        if not rows:
            return
        first, last = rows[0][1], rows[-1][1]
        # The chunk's labels and decisions by its range of positions (a join on the items'
        # (campaign, position) index) rather than an IN over 2,000 ids that Django would
        # prepare one by one; an item of the range left out of a labeled-only export has no
        # active label and no decision, so the range brings exactly the chunk's.
        span = {"item__campaign_id": export.campaign.pk, "item__position__range": (first, last)}
        given: dict[int, list[RawLabel]] = {}
        for item_id, user_id, username, value, comment, created_at in (
            Label.objects.filter(**span, undone_at__isnull=True)
            .order_by("pk")
            .values_list(
                "item_id", "annotator_id", "annotator__username", "value", "comment", "created_at"
            )
        ):
            given.setdefault(item_id, []).append(
                RawLabel(username, user_id, value, comment, created_at)
            )
        decided: dict[int, str] = {}
        for item_id, value in (
            Decision.objects.filter(**span)
            .order_by("created_at", "pk")
            .values_list("item_id", "value")
        ):
            decided[item_id] = value  # the latest one wins, as in labeling/consensus.py
        chunk = []
        for pk, position, text, metadata, gold, evaluation, predicted, confidence in rows:
            labels = given.get(pk, [])
            final, source = "", ""
            if pk in decided:
                final, source = decided[pk], FINAL_DECISION
            elif labels and len({label.label for label in labels}) == 1:
                final, source = labels[0].label, FINAL_CONSENSUS
            chunk.append(
                Record(
                    item=pk,
                    position=position,
                    text=text,
                    metadata=metadata or {},
                    final_label=final,
                    final_source=source,
                    labels=labels,
                    gold=gold,
                    evaluation=evaluation,
                    predicted=names[predicted]
                    if predicted is not None and predicted < len(names)
                    else "",
                    confidence=confidence,
                    model_version=export.model_version if predicted is not None else None,
                )
            )
        if export.progress is not None:
            export.progress(chunk)
        yield chunk


def meta_text(value: Any) -> str | None:
    """A metadata value as one flat cell: strings as they are, anything else as JSON."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
