"""Writing a parsed file into a campaign, all or nothing, and the embedding job it needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from labeling import consensus, evaluation, queue, signals
from labeling.embeddings import jobs as embedding_jobs
from labeling.imports.parse import (
    ImportLimits,
    ParsedUpload,
    UploadRejected,
    list_some,
    parse_upload,
)
from labeling.models import Assignment, Campaign, Item, Label, Upload, text_key


def import_limits() -> ImportLimits:
    """The upload limits from settings (CARVE_UPLOAD_MAX_*)."""
    return ImportLimits(
        max_bytes=settings.CARVE_UPLOAD_MAX_BYTES,
        max_rows=settings.CARVE_UPLOAD_MAX_ROWS,
        max_text_chars=settings.CARVE_UPLOAD_MAX_TEXT_CHARS,
        max_columns=settings.CARVE_UPLOAD_MAX_COLUMNS,
    )


@dataclass(frozen=True)
class ImportOutcome:
    upload: Upload
    parsed: ParsedUpload
    n_created: int
    n_existing: int  # distinct texts of the file already in the campaign (merged)
    n_labels: int = 0  # labels of the "imported" annotator written (Label Studio annotations)


def parse_file(
    campaign: Campaign,
    data: bytes,
    filename: str,
    *,
    text_column: str | None = None,
    gold_column: str | None = None,
) -> ParsedUpload:
    """Check a file against the campaign's label set and the upload limits (no database
    writes); raises :class:`labeling.imports.parse.UploadRejected` listing every problem."""
    return parse_upload(
        data,
        filename,
        campaign.labels,
        import_limits(),
        text_column=text_column,
        gold_column=gold_column,
    )


def import_file(
    campaign: Campaign,
    user: Any,
    data: bytes,
    filename: str,
    *,
    text_column: str | None = None,
    gold_column: str | None = None,
) -> ImportOutcome:
    """Validate the whole file, then create its items in one transaction.

    Raises :class:`labeling.imports.parse.UploadRejected` (nothing written) for a bad file. Texts
    already in the campaign (from an earlier upload) are merged into the existing items.
    """
    parsed = parse_file(campaign, data, filename, text_column=text_column, gold_column=gold_column)
    return write_items(campaign, user, parsed, filename)


def write_items(
    campaign: Campaign, user: Any, parsed: ParsedUpload, filename: str
) -> ImportOutcome:
    """Create the items of a parsed file in one transaction (or a savepoint of the caller's),
    or raise :class:`UploadRejected` writing nothing when a text already in the campaign has
    a different gold label."""
    keys = [text_key(item.text) for item in parsed.items]
    with transaction.atomic():
        # Lock the campaign row so two concurrent uploads number their items in turn.
        Campaign.objects.select_for_update().filter(pk=campaign.pk).first()
        existing = _existing(campaign, keys)
        clashes = [
            f"line {item.lines[0]} ({existing[key]!r} before, {item.gold!r} now)"
            for item, key in zip(parsed.items, keys, strict=True)
            if key in existing and existing[key] and item.gold and item.gold != existing[key]
        ]
        if clashes:
            raise UploadRejected(
                [
                    "Texts already in the campaign have a different gold label: "
                    + list_some(clashes, "; ", "; and")
                    + "."
                ]
            )
        last = Item.objects.filter(campaign=campaign).aggregate(m=Max("position"))["m"]
        start = 0 if last is None else last + 1  # (not `last or -1`: position 0 is falsy)
        new = [
            (item, key) for item, key in zip(parsed.items, keys, strict=True) if key not in existing
        ]
        upload = Upload.objects.create(
            campaign=campaign,
            filename=filename[:255],
            uploaded_by=user,
            text_column=parsed.text_column,
            gold_column=parsed.gold_column or "",
            n_rows=parsed.n_rows,
            n_created=len(new),
            n_blank=parsed.n_blank,
            n_duplicates=parsed.n_duplicates + len(parsed.items) - len(new),
        )
        _insert_items(
            (
                (
                    campaign.pk,
                    upload.pk,
                    item.text,
                    key,
                    item.gold or "",
                    item.metadata,
                    start + i,
                    item.predicted,
                    item.confidence,
                )
                for i, (item, key) in enumerate(new)
            )
        )
        n_labels = _write_labels(campaign, parsed, keys)
        if new:
            embedding_jobs.request_embedding(campaign)
            # The pool grew: draw the evaluation set's share of it (docs/platform.md,
            # "The evaluation set").
            evaluation.top_up(campaign)
    return ImportOutcome(upload, parsed, len(new), len(parsed.items) - len(new), n_labels)


#: Username of the annotator that imported annotations are attributed to.
IMPORTED_USERNAME = "imported"


def imported_annotator() -> Any:
    """The "imported" user, created on demand with an unusable password: it cannot sign in,
    it only holds labels that came with a file (docs/platform.md, "Uploads")."""
    users = get_user_model().objects
    user = users.filter(username=IMPORTED_USERNAME).first()
    if user is None:
        user = users.model(username=IMPORTED_USERNAME)
        user.set_unusable_password()
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:  # created by a concurrent import meanwhile
            user = users.get(username=IMPORTED_USERNAME)
    return user


def _write_labels(campaign: Campaign, parsed: ParsedUpload, keys: list[str]) -> int:
    """Store the labels of a Label Studio file's annotations as the "imported" annotator's,
    with the LABELED assignments a submitted label has; raise :class:`UploadRejected` when
    that annotator already labeled one of the texts differently. Returns the labels added."""
    wanted = {
        key: item for item, key in zip(parsed.items, keys, strict=True) if item.label is not None
    }
    if not wanted:
        return 0
    user = imported_annotator()
    item_ids: dict[str, int] = {}
    have: dict[int, str] = {}
    wanted_keys = list(wanted)
    for i in range(0, len(wanted_keys), KEY_BATCH):
        item_ids.update(
            Item.objects.filter(campaign=campaign, text_sha256__in=wanted_keys[i : i + KEY_BATCH])
            .order_by()
            .values_list("text_sha256", "pk")
        )
    ids = list(item_ids.values())
    for i in range(0, len(ids), KEY_BATCH):
        have.update(
            Label.objects.filter(
                item_id__in=ids[i : i + KEY_BATCH], annotator=user, undone_at__isnull=True
            ).values_list("item_id", "value")
        )
    clashes = [
        f"{parsed.unit} {item.lines[0]} ({have[item_ids[key]]!r} before, {item.label!r} now)"
        for key, item in wanted.items()
        if item_ids[key] in have and have[item_ids[key]] != item.label
    ]
    if clashes:
        raise UploadRejected(
            [
                "Texts already in the campaign have a different imported label: "
                + list_some(clashes, "; ", "; and")
                + "."
            ]
        )
    fresh = [
        (item_ids[key], item.label) for key, item in wanted.items() if item_ids[key] not in have
    ]
    if not fresh:
        return 0
    Label.objects.bulk_create(
        [Label(item_id=pk, annotator=user, value=value or "") for pk, value in fresh],
        batch_size=1000,
    )
    now = timezone.now()
    fresh_ids = [pk for pk, _ in fresh]
    held: set[int] = set()
    for i in range(0, len(fresh_ids), KEY_BATCH):
        batch = fresh_ids[i : i + KEY_BATCH]
        held.update(
            Assignment.objects.filter(item_id__in=batch, annotator=user).values_list(
                "item_id", flat=True
            )
        )
        Assignment.objects.filter(item_id__in=batch, annotator=user).update(
            state=Assignment.State.LABELED, expires_at=now
        )
    Assignment.objects.bulk_create(
        [
            Assignment(item_id=pk, annotator=user, state=Assignment.State.LABELED, expires_at=now)
            for pk in fresh_ids
            if pk not in held
        ],
        batch_size=1000,
    )
    _labels_changed(campaign)
    # Webhooks hear of the imported labels once the import commits (docs/platform.md,
    # "Webhooks").
    campaign_id, labeled = campaign.pk, fresh_ids
    transaction.on_commit(
        lambda: signals.items_labeled.send(
            sender=Label, campaign_id=campaign_id, item_ids=labeled, n_labels=len(fresh)
        ),
        robust=True,
    )
    return len(fresh)


def _labels_changed(campaign: Campaign) -> None:
    """What a submitted label does to the campaign row, for many labels at once: bump
    ``label_version``, queue one learner update (as ``campaign_learner.request_update``,
    a layer above imports: docs/architecture.md, "Import rule") and recount the items fully
    labeled (docs/scaling.md, "The labeling card's progress")."""
    Campaign.objects.filter(pk=campaign.pk).update(label_version=F("label_version") + 1)
    sent = Campaign.objects.filter(pk=campaign.pk, learner_pending=False).update(
        learner_pending=True, learner_requested_at=timezone.now()
    )
    if sent:
        queue.send_on_commit(queue.UPDATE_LEARNER, campaign.pk)
    consensus.recount_done(campaign)


#: Keys looked up per query when a file is checked against the campaign's items.
KEY_BATCH = 5000
#: The columns of :func:`_insert_items`' rows, in order.
ITEM_COLUMNS = (
    "campaign",
    "upload",
    "text",
    "text_sha256",
    "gold",
    "metadata",
    "position",
    "predicted",
    "confidence",
)


def _existing(campaign: Campaign, keys: list[str]) -> dict[str, str]:
    """Text key -> gold of the campaign's items among ``keys``, in batches of KEY_BATCH (a
    campaign's first file skips the look-up)."""
    if not keys or not Item.objects.filter(campaign=campaign).exists():
        return {}
    found: dict[str, str] = {}
    for i in range(0, len(keys), KEY_BATCH):
        found.update(
            Item.objects.filter(campaign=campaign, text_sha256__in=keys[i : i + KEY_BATCH])
            .order_by()
            .values_list("text_sha256", "gold")
        )
    return found


def _insert_items(rows: Iterator[tuple[Any, ...]]) -> None:
    """Insert item rows (values of ITEM_COLUMNS) in the caller's transaction: with COPY on
    PostgreSQL, which takes a fifth of the time of batched INSERTs built by the ORM and no
    model instance per row (docs/scaling.md, "Import"); with bulk_create elsewhere."""
    if connection.vendor != "postgresql":
        fields = [
            name if name not in ("campaign", "upload") else f"{name}_id" for name in ITEM_COLUMNS
        ]
        batch: list[Item] = []
        for row in rows:
            batch.append(Item(**dict(zip(fields, row, strict=True))))
            if len(batch) == 1000:
                Item.objects.bulk_create(batch)
                batch = []
        Item.objects.bulk_create(batch)
        return
    column_of = {f.name: f.column for f in Item._meta.concrete_fields}
    # Django's defaults live in Python, not in the table: COPY writes them itself for the
    # NOT NULL columns an import does not set (the evaluation flag).
    defaults = [
        f
        for f in Item._meta.concrete_fields
        if not f.primary_key and not f.null and f.has_default() and f.name not in ITEM_COLUMNS
    ]
    names = [column_of[name] for name in ITEM_COLUMNS] + [f.column for f in defaults]
    columns = ", ".join(connection.ops.quote_name(name) for name in names)
    extra = tuple(f.get_default() for f in defaults)
    table = connection.ops.quote_name(Item._meta.db_table)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, under Django's wrapper
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row[:5], json.dumps(row[5]) if row[5] else "{}", *row[6:], *extra))


def describe(outcome: ImportOutcome) -> str:
    """One sentence for the user about what an import did."""
    parts = [f"Imported {outcome.n_created:,} new item(s) from {outcome.upload.filename}"]
    if outcome.parsed.n_blank:
        parts.append(f"{outcome.parsed.n_blank:,} blank text(s) skipped")
    if outcome.upload.n_duplicates:
        parts.append(f"{outcome.upload.n_duplicates:,} duplicate(s) merged")
    n_gold = sum(1 for item in outcome.parsed.items if item.gold)
    if n_gold:
        parts.append(f"{n_gold:,} with a gold label")
    if outcome.n_labels:
        parts.append(f"{outcome.n_labels:,} label(s) by 'imported'")
    n_predicted = sum(1 for item in outcome.parsed.items if item.predicted is not None)
    if n_predicted:
        parts.append(f"{n_predicted:,} with a prediction")
    sentence = "; ".join(parts) + ". Embedding starts in the background."
    multiline = outcome.parsed.multiline
    if multiline:
        sentence += (
            f" {len(multiline):,} text(s) span several lines (starting on line(s) "
            f"{list_some([str(n) for n in multiline[:10]])}{' …' if len(multiline) > 10 else ''})"
            ": if that was not meant, a quote is left open there."
        )
    return sentence
