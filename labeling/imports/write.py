"""Writing a parsed file into a campaign, all or nothing, and the embedding job it needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max

from labeling import evaluation
from labeling.embeddings import jobs as embedding_jobs
from labeling.imports.parse import (
    ImportLimits,
    ParsedUpload,
    UploadRejected,
    list_some,
    parse_upload,
)
from labeling.models import Campaign, Item, Upload, text_key


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
                (campaign.pk, upload.pk, item.text, key, item.gold or "", item.metadata, start + i)
                for i, (item, key) in enumerate(new)
            )
        )
        if new:
            embedding_jobs.request_embedding(campaign)
            # The pool grew: draw the evaluation set's share of it (docs/platform.md,
            # "The evaluation set").
            evaluation.top_up(campaign)
    return ImportOutcome(upload, parsed, len(new), len(parsed.items) - len(new))


#: Keys looked up per query when a file is checked against the campaign's items.
KEY_BATCH = 5000
#: The columns of :func:`_insert_items`' rows, in order.
ITEM_COLUMNS = ("campaign", "upload", "text", "text_sha256", "gold", "metadata", "position")


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
                copy.write_row((*row[:5], json.dumps(row[5]) if row[5] else "{}", row[6], *extra))


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
    sentence = "; ".join(parts) + ". Embedding starts in the background."
    multiline = outcome.parsed.multiline
    if multiline:
        sentence += (
            f" {len(multiline):,} text(s) span several lines (starting on line(s) "
            f"{list_some([str(n) for n in multiline[:10]])}{' …' if len(multiline) > 10 else ''})"
            ": if that was not meant, a quote is left open there."
        )
    return sentence
