"""The items page (docs/platform.md, "The items page"): find a campaign's items, read one
item's history, act on a selection (send to review, mark gold, delete), delete an upload.

The queries walk the items in position order and stop when a page is full (keyset
pagination on ``position``); every filter is an index look-up or an ``EXISTS`` of one item,
so a page costs about the same at 100 or 100,000 items (docs/scaling.md, "The items page").
Deleting items renumbers the later ones and moves their embedding rows with them, so the
pool stays rows ``0..n-1`` (docs/platform.md, "Embeddings").
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django import forms
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from labeling import evaluation
from labeling.campaign_learner import request_update
from labeling.consensus import recount_done
from labeling.embeddings import chunks
from labeling.embeddings.jobs import request_embedding
from labeling.embeddings.pool import current_embedding_model
from labeling.models import (
    Assignment,
    Campaign,
    Decision,
    EmbeddingChunk,
    EmbeddingJob,
    Item,
    Label,
    NearDuplicate,
    Upload,
)
from labeling.review import review_items

PAGE_SIZE = 50
#: The count shown above the list stops here ("10,000+"): counting further costs a scan.
COUNT_CAP = 10_000
#: Items one POST may name (a page holds PAGE_SIZE; "all matching" goes by the filter).
MAX_SELECTED = 1_000
MAX_POSITION = 2**31 - 1
#: Items per DELETE statement (SQLite allows 32,766 parameters).
DELETE_BATCH = 1_000
META_KEY = re.compile(r"^[^=\s]{1,100}$")

STATES = [
    ("", "any state"),
    ("unlabeled", "unlabeled"),
    ("partial", "partially labeled (fewer labels than the overlap)"),
    ("labeled", "labeled (as many labels as the overlap, or decided)"),
    ("skipped", "skipped by someone"),
]
YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]
REVIEW = [("", "any"), ("in", "in review (listed or sent)"), ("requested", "sent to review")]
LABEL_OF = [("final", "final label"), ("any", "any annotator's label")]


class ItemsQueryForm(forms.Form):
    """The items page's filters, read from the query string (every field optional)."""

    q = forms.CharField(required=False, max_length=200, strip=True, label="Text contains")
    state = forms.ChoiceField(required=False, choices=STATES)
    label = forms.ChoiceField(required=False)
    label_of = forms.ChoiceField(required=False, choices=LABEL_OF, label="Label is the")
    annotator = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    upload = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    gold = forms.ChoiceField(required=False, choices=YES_NO)
    evaluation = forms.ChoiceField(required=False, choices=YES_NO, label="Evaluation item")
    review = forms.ChoiceField(required=False, choices=REVIEW)
    meta = forms.CharField(required=False, max_length=300, label="Metadata", help_text="key=value")
    conf_min = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="Confidence ≥")
    conf_max = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="Confidence ≤")
    after = forms.IntegerField(required=False, min_value=-1, max_value=MAX_POSITION)
    before = forms.IntegerField(required=False, min_value=0, max_value=MAX_POSITION)

    #: What the query string carries besides the filters (the pages).
    PAGING = ("after", "before")

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        labels = [(name, name) for name in campaign.labels]
        self.fields["label"].choices = [("", "any label"), *labels]  # type: ignore[attr-defined]
        people = people_of(campaign)
        self.fields["annotator"].choices = [  # type: ignore[attr-defined]
            ("", "anyone"),
            *((pk, name) for pk, name in people),
        ]
        uploads = campaign.uploads.order_by("pk").values_list("pk", "filename")
        self.fields["upload"].choices = [  # type: ignore[attr-defined]
            ("", "any upload"),
            *((pk, f"{name} (#{pk})") for pk, name in uploads),
        ]

    def clean_meta(self) -> tuple[str, str] | None:
        raw = str(self.cleaned_data.get("meta") or "")
        if not raw:
            return None
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not META_KEY.match(key):
            raise ValidationError("Write the metadata filter as key=value.")
        return key, value.strip()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("conf_min"), data.get("conf_max")
        if low is not None and high is not None and low > high:
            raise ValidationError("The confidence range is empty (minimum above maximum).")
        return data


def people_of(campaign: Campaign) -> list[tuple[int, str]]:
    """Who may have labeled the campaign's items: its annotators and its creator."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(Q(campaigns=campaign) | Q(pk=campaign.created_by_id))
    return sorted({(u.pk, u.get_username()) for u in users}, key=lambda p: p[1])


# --- the query ---------------------------------------------------------------------------


def _active_labels(**filters: Any) -> QuerySet[Label]:
    return Label.objects.filter(item=OuterRef("pk"), undone_at__isnull=True, **filters)


def latest_decision() -> Subquery:
    """The value of the item's latest decision (the one that counts in training)."""
    latest = Decision.objects.filter(item=OuterRef("pk")).order_by("-created_at", "-pk")
    return Subquery(latest.values("value")[:1])


def latest_decisions() -> QuerySet[Decision]:
    """Each item's latest decision (no later one for the same item, ties broken by id)."""
    later = Decision.objects.filter(item=OuterRef("item")).filter(
        Q(created_at__gt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk"))
    )
    return Decision.objects.exclude(Exists(later))


def final_label_is(value: str) -> Q:
    """The item's final label is ``value``: its latest decision says so, or, undecided, its
    active labels all agree on it (labeling.consensus).

    Only ``EXISTS`` correlated on the item id, which PostgreSQL runs as hashed subplans (one
    pass over the decisions and the labels, then a hash probe per item), never a subquery per
    item (docs/scaling.md, "The items page")."""
    decided = Exists(Decision.objects.filter(item=OuterRef("pk")))
    by_decision = Exists(latest_decisions().filter(item=OuterRef("pk"), value=value))
    agreed = (
        ~decided
        & Exists(_active_labels(value=value))
        & ~Exists(_active_labels().exclude(value=value))
    )
    return Q(by_decision) | Q(agreed)


def matching(campaign: Campaign, data: dict[str, Any]) -> QuerySet[Item]:
    """The campaign's items that pass the cleaned filters ``data``, in position order."""
    qs = Item.objects.filter(campaign=campaign)
    if data.get("q"):
        # A substring, any case: PostgreSQL answers it from the trigram index on UPPER(text)
        # (migration 0018), which is what icontains compiles to there.
        qs = qs.filter(text__icontains=data["q"])
    state = data.get("state")
    if state == "unlabeled":
        qs = qs.filter(~Exists(_active_labels()))
    elif state in ("partial", "labeled"):
        done = Exists(Decision.objects.filter(item=OuterRef("pk")))
        if campaign.overlap > 1:
            # One grouped pass over the active labels (a hashed subplan on PostgreSQL), not
            # a count per item.
            full_ids = (
                Label.objects.filter(undone_at__isnull=True)
                .order_by()
                .values("item")
                .annotate(n=Count("pk"))
                .filter(n__gte=campaign.overlap)
                .values("item")
            )
            full = Q(pk__in=full_ids)
        else:
            full = Q(Exists(_active_labels()))
        if state == "labeled":
            qs = qs.filter(full | Q(done))
        else:
            qs = qs.filter(Exists(_active_labels())).exclude(full | Q(done))
    elif state == "skipped":
        skips = Assignment.objects.filter(item=OuterRef("pk"), state=Assignment.State.SKIPPED)
        qs = qs.filter(Exists(skips))
    if data.get("label"):
        if data.get("label_of") == "any":
            qs = qs.filter(Exists(_active_labels(value=data["label"])))
        else:
            qs = qs.filter(final_label_is(data["label"]))
    if data.get("annotator") is not None:
        qs = qs.filter(Exists(_active_labels(annotator_id=data["annotator"])))
    if data.get("upload") is not None:
        qs = qs.filter(upload_id=data["upload"])
    if data.get("gold") == "yes":
        qs = qs.exclude(gold="")
    elif data.get("gold") == "no":
        qs = qs.filter(gold="")
    if data.get("evaluation") in ("yes", "no"):
        qs = qs.filter(evaluation=data["evaluation"] == "yes")
    if data.get("review") == "requested":
        qs = qs.filter(review_requested_at__isnull=False)
    elif data.get("review") == "in":
        listed = review_items(campaign)
        qs = qs.filter(Q(review_requested_at__isnull=False) | Q(pk__in=listed))
    if data.get("meta"):
        key, value = data["meta"]
        # Cast: a plain text comparison (the key transform's own lookups compare JSON).
        as_text = Cast(KeyTextTransform(key, "metadata"), TextField())
        qs = qs.alias(meta_value=as_text).filter(meta_value=value)
    if data.get("conf_min") is not None:
        qs = qs.filter(confidence__gte=data["conf_min"])
    if data.get("conf_max") is not None:
        qs = qs.filter(confidence__lte=data["conf_max"])
    return qs.order_by("position")


@dataclass
class Page:
    """One page of the list: its items and the positions to seek from for its neighbours."""

    items: list[Item]
    count: int
    capped: bool  # count stopped at COUNT_CAP
    next_after: int | None = None
    prev_before: int | None = None
    labels: dict[int, list[Label]] = field(default_factory=dict)


def page_of(campaign: Campaign, data: dict[str, Any]) -> Page:
    """The page of ``matching`` items after position ``after`` (or before ``before``)."""
    if connection.vendor != "postgresql":
        # No transaction: SQLite's are IMMEDIATE here, a read would take the write lock.
        return _page_of(campaign, data)
    with transaction.atomic():
        # The planner prices the filters' EXISTS per item, so a campaign of 100,000 items
        # crosses jit_above_cost and compiling the query takes longer than running it
        # (docs/scaling.md, "The items page"). SET LOCAL: for these queries only.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        return _page_of(campaign, data)


def _page_of(campaign: Campaign, data: dict[str, Any]) -> Page:
    qs = matching(campaign, data)
    plain = (*ItemsQueryForm.PAGING, "label_of")  # label_of alone filters nothing
    filtered = any(value not in (None, "") for k, value in data.items() if k not in plain)
    if data.get("before") is not None:
        rows = list(qs.filter(position__lt=data["before"]).order_by("-position")[: PAGE_SIZE + 1])
        more_before = len(rows) > PAGE_SIZE
        items = rows[:PAGE_SIZE][::-1]
        more_after = bool(items) and qs.filter(position__gt=items[-1].position).exists()
    else:
        after = data.get("after")
        seek = qs if after is None else qs.filter(position__gt=after)
        rows = list(seek[: PAGE_SIZE + 1])
        more_after = len(rows) > PAGE_SIZE
        items = rows[:PAGE_SIZE]
        more_before = after is not None and after >= 0 and qs.filter(position__lte=after).exists()
    if filtered:
        count = qs.order_by()[: COUNT_CAP + 1].count()
    else:  # positions are 0..n-1: the count is the largest one, an index look-up
        top = Item.objects.filter(campaign=campaign).order_by("-position")
        last = top.values_list("position", flat=True).first()
        count = 0 if last is None else last + 1
    capped = filtered and count > COUNT_CAP
    page = Page(items, COUNT_CAP if capped else count, capped)
    if items and more_after:
        page.next_after = items[-1].position
    if items and more_before:
        page.prev_before = items[0].position
    given = Label.objects.filter(item__in=[i.pk for i in items], undone_at__isnull=True)
    for label in given.select_related("annotator").order_by("pk"):
        page.labels.setdefault(label.item_id, []).append(label)
    return page


# --- one item's history ------------------------------------------------------------------


@dataclass
class Event:
    at: Any
    what: str  # "label", "undone", "decision", "skip", "review"
    who: str
    value: str = ""
    comment: str = ""


def history(item: Item) -> list[Event]:
    """Everything that happened to ``item``, oldest first: labels (undone ones marked, with
    when), skips, manager decisions, a request for review."""
    events: list[Event] = []
    for label in item.labels.select_related("annotator").order_by("created_at", "pk"):
        who = label.annotator.get_username()
        events.append(Event(label.created_at, "label", who, label.value, label.comment))
        if label.undone_at:
            events.append(Event(label.undone_at, "undone", who, label.value))
    for decision in item.decisions.select_related("decided_by").order_by("created_at", "pk"):
        events.append(
            Event(
                decision.created_at, "decision", decision.decided_by.get_username(), decision.value
            )
        )
    skips = item.assignments.filter(state=Assignment.State.SKIPPED).select_related("annotator")
    for skip in skips:
        events.append(Event(skip.updated_at, "skip", skip.annotator.get_username()))
    if item.review_requested_at:
        events.append(Event(item.review_requested_at, "review", "a manager"))
    return sorted(events, key=lambda e: e.at)


def final_label(item: Item) -> str | None:
    """The label ``item`` trains with (labeling.consensus): the latest decision, else the
    value its active labels agree on; None when it has neither."""
    decision = item.decisions.order_by("-created_at", "-pk").values_list("value", flat=True)
    if decision:
        return decision[0]
    values = set(item.labels.filter(undone_at__isnull=True).values_list("value", flat=True))
    return values.pop() if len(values) == 1 else None


# --- actions -----------------------------------------------------------------------------


class ItemsActionForm(forms.Form):
    """A bulk action on the selected items (``ids``) or on all items matching the filter."""

    ACTIONS = [
        ("review", "Send to review"),
        ("gold", "Mark gold (final label)"),
        ("delete", "Delete"),
        ("delete_upload", "Delete an upload"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    ids = forms.CharField(required=False, max_length=20 * MAX_SELECTED)
    all_matching = forms.BooleanField(required=False)
    upload = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    confirm = forms.BooleanField(required=False)

    def clean_ids(self) -> list[int]:
        raw = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        out: list[int] = []
        for part in (p for value in raw for p in str(value).replace(",", " ").split()):
            # isascii: a superscript digit passes isdigit() and int() refuses it.
            if not (part.isascii() and part.isdigit()) or not 0 < int(part) < 2**63:
                raise ValidationError(f"{part[:20]!r} is not an item id.")
            out.append(int(part))
        if len(out) > MAX_SELECTED:
            raise ValidationError(f"Select at most {MAX_SELECTED} items, or all matching ones.")
        return list(dict.fromkeys(out))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        action = data.get("action")
        if action == "delete_upload":
            if not data.get("upload"):
                raise ValidationError("Name the upload to delete.")
        elif action and not data.get("ids") and not data.get("all_matching"):
            raise ValidationError("Select some items first.")
        return data


def send_to_review(items: QuerySet[Item]) -> int:
    """Put ``items`` on the review page (a decision takes them off). Returns how many."""
    return items.update(review_requested_at=timezone.now())


@dataclass(frozen=True)
class GoldResult:
    marked: int
    refused: list[int]  # item ids without a final label


def mark_gold(items: QuerySet[Item]) -> GoldResult:
    """Make each item's final label its gold label; items without one are left as they are."""
    marked, refused = 0, []
    rows = items.annotate(decided=latest_decision())
    with transaction.atomic():
        for item in rows.only("pk", "gold").iterator(chunk_size=1000):
            value: str | None = item.decided
            if value is None:
                values = set(
                    Label.objects.filter(item=item, undone_at__isnull=True).values_list(
                        "value", flat=True
                    )
                )
                value = values.pop() if len(values) == 1 else None
            if value is None:
                refused.append(item.pk)
                continue
            if item.gold != value:
                Item.objects.filter(pk=item.pk).update(gold=value)
            marked += 1
    return GoldResult(marked, refused)


class EmbeddingBusy(Exception):
    """Items cannot be deleted while the campaign's embedding job runs: its workers write
    rows by position."""


@dataclass(frozen=True)
class Deleted:
    items: int
    labels: int
    upload: str | None = None


def delete_items(
    campaign: Campaign, items: QuerySet[Item], upload: Upload | None = None
) -> Deleted:
    """Delete ``items`` (of ``campaign``) with their labels, assignments and decisions, and
    ``upload`` after them when given. Then renumber the later items so positions stay
    ``0..n-1``, move their embedding rows with them, and request a learner rebuild.

    All in one transaction under the campaign row's lock (the lock an import takes to number
    its items). Refused (:class:`EmbeddingBusy`) while an embedding job is queued or running.
    """
    with transaction.atomic():
        Campaign.objects.select_for_update().filter(pk=campaign.pk).first()
        active = (EmbeddingJob.Status.QUEUED, EmbeddingJob.Status.RUNNING)
        if EmbeddingJob.objects.filter(campaign=campaign, status__in=active).exists():
            raise EmbeddingBusy(
                "The campaign's items are being embedded; delete once the embedding job has "
                "finished."
            )
        # The ids first: deleting labels changes what a filter like "labeled" matches.
        doomed = sorted(items.filter(campaign=campaign).order_by().values_list("position", "pk"))
        positions = [position for position, _ in doomed]
        top = Item.objects.filter(campaign=campaign).order_by("-position").first()
        n_before = 0 if top is None else top.position + 1
        n_labels = 0
        for at in range(0, len(doomed), DELETE_BATCH):
            ids = [pk for _, pk in doomed[at : at + DELETE_BATCH]]
            n_labels += Label.objects.filter(item_id__in=ids).count()
            Label.objects.filter(item_id__in=ids).delete()
            Assignment.objects.filter(item_id__in=ids).delete()
            Decision.objects.filter(item_id__in=ids).delete()
            NearDuplicate.objects.filter(Q(item_id__in=ids) | Q(duplicate_of_id__in=ids)).delete()
            # Their dependent rows are gone: a plain DELETE (no collector loading the rows).
            batch = Item.objects.filter(pk__in=ids)
            batch._raw_delete(batch.db)
        if positions:
            _renumber(campaign, positions[0], n_before)
            _move_embeddings(campaign, positions, n_before)
        name = None
        if upload is not None:
            name = upload.filename
            upload.delete()
        if positions:
            n = n_before - len(positions)
            current = current_embedding_model(campaign)
            if n and (
                current is None or chunks.tiling(chunks.refs(campaign.pk, current, n), n) is None
            ):
                request_embedding(campaign)
            request_update(campaign.pk)  # the pool changed: the learner rebuilds
            # Deleted evaluation items leave the set short (docs/platform.md, "The evaluation
            # set"): topped up from the items nobody was served, as after an import.
            evaluation.top_up(campaign)
            recount_done(campaign)  # the labeling card's progress lost the deleted items
    return Deleted(len(positions), n_labels, name)


def _renumber(campaign: Campaign, first: int, n_before: int) -> None:
    """Close the holes the deletion left: the items after ``first`` take positions
    ``first..n-1`` in their order. In two steps, so no step ever puts two items at one
    position (the unique constraint is checked row by row)."""
    lifted = Item.objects.filter(campaign=campaign, position__gt=first)
    lifted.update(position=F("position") + n_before)
    table = Item._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET position = r.rn FROM ("  # noqa: S608 (table name, not input)
            f" SELECT id, ROW_NUMBER() OVER (ORDER BY position) - 1 AS rn FROM {table}"
            f" WHERE campaign_id = %s) AS r"
            f" WHERE {table}.id = r.id AND {table}.campaign_id = %s AND {table}.position >= %s",
            [campaign.pk, campaign.pk, n_before],
        )


def _move_embeddings(campaign: Campaign, deleted: Sequence[int], n_before: int) -> None:
    """Give the stored embedding chunks the rows of the renumbered items: a chunk with no
    deleted row moves down by the deleted rows before it (same items, same digest); a chunk
    that held deleted rows is written again without them (its digest recomputed), so nothing
    is embedded again."""
    first = deleted[0]
    stored = EmbeddingChunk.objects.filter(campaign=campaign, stop__gt=first).order_by("start")
    for ref in stored.values_list("pk", "model_name", "start", "stop", "dim", "rows_digest"):
        pk, model, start, stop, dim, digest = ref
        if stop > n_before:
            EmbeddingChunk.objects.filter(pk=pk).delete()  # rows no item had: stale anyway
            continue
        lo, hi = bisect.bisect_left(deleted, start), bisect.bisect_left(deleted, stop)
        new_start = start - lo
        if lo == hi:
            try:
                with transaction.atomic():
                    EmbeddingChunk.objects.filter(pk=pk).update(
                        start=new_start, stop=new_start + stop - start
                    )
            except IntegrityError:  # the same rows are stored already
                EmbeddingChunk.objects.filter(pk=pk).delete()
            continue
        kept = (stop - start) - (hi - lo)
        data = EmbeddingChunk.objects.filter(pk=pk).values_list("data", flat=True).first()
        EmbeddingChunk.objects.filter(pk=pk).delete()
        if kept == 0 or data is None:
            continue
        matrix = np.frombuffer(bytes(data), dtype="<f4").reshape(stop - start, dim)
        mask = np.ones(stop - start, dtype=bool)
        mask[[p - start for p in deleted[lo:hi]]] = False
        keys = list(
            Item.objects.filter(
                campaign=campaign, position__gte=new_start, position__lt=new_start + kept
            )
            .order_by("position")
            .values_list("text_sha256", flat=True)
        )
        if len(keys) == kept:
            chunks.write(campaign.pk, model, new_start, keys, matrix[mask], "items page")
