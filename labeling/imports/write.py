"""Writing a parsed file into a campaign, all or nothing, and the embedding job it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max

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
        existing = dict(
            Item.objects.filter(campaign=campaign, text_sha256__in=keys).values_list(
                "text_sha256", "gold"
            )
        )
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
        Item.objects.bulk_create(
            [
                Item(
                    campaign=campaign,
                    upload=upload,
                    text=item.text,
                    text_sha256=key,
                    gold=item.gold or "",
                    metadata=item.metadata,
                    position=start + offset,
                )
                for offset, (item, key) in enumerate(new)
            ],
            batch_size=1000,
        )
        if new:
            embedding_jobs.request_embedding(campaign)
    return ImportOutcome(upload, parsed, len(new), len(parsed.items) - len(new))


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
