"""Parse and validate an uploaded dataset before anything touches the database.

The formats (CSV, TSV, JSON Lines, a JSON array, Label Studio tasks, Parquet, Arrow and a
zipped ``datasets`` folder) are read by :mod:`labeling.imports.formats`; this module checks the
records. The whole file is checked first; every problem found is collected and reported
together, and nothing is imported unless the file is clean (an upload imports completely or
not at all). Blank texts are skipped and duplicate texts merged: both are counted, not errors.

Pure Python (no Django), so the same checks serve the upload page, the API and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labeling.imports.formats import (
    MAX_LISTED,
    Task,
    UploadRejected,
    list_some,
    read_table,
)

__all__ = ["MAX_LISTED", "UploadRejected", "list_some", "parse_upload"]

#: Column names tried, in order, when the uploader does not choose the text column.
TEXT_COLUMNS = ("text", "sentence", "content", "review", "body", "document")
#: Column names tried for the optional gold label.
GOLD_COLUMNS = ("gold", "gold_label", "label", "sentiment")
#: ``gold_column`` value that means "no gold labels" (a label column then stays metadata).
NO_GOLD = "-"


@dataclass(frozen=True)
class ImportLimits:
    """Size limits of one upload (the settings' values are passed in)."""

    max_bytes: int = 50 * 1024 * 1024
    max_rows: int = 200_000
    max_text_chars: int = 20_000
    max_columns: int = 100


@dataclass(frozen=True)
class ParsedItem:
    """One distinct text of the upload.

    ``lines`` are the 1-based source lines (CSV records count their header as line 1) or rows
    (JSON arrays, Parquet, Arrow: see ``ParsedUpload.unit``) that carried this text; more
    than one when duplicates were merged. ``label``, ``predicted`` and ``confidence`` come
    from a Label Studio task: its annotation's label (imported as a label of the "imported"
    annotator) and its prediction (class index and score: the card's suggestion).
    """

    text: str
    gold: str | None
    metadata: dict[str, Any]
    lines: tuple[int, ...]
    label: str | None = None
    predicted: int | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class ParsedUpload:
    format: str  # csv, tsv, jsonl, json, labelstudio, parquet, arrow or datasets
    text_column: str
    gold_column: str | None
    items: list[ParsedItem]
    n_rows: int
    n_blank: int  # rows skipped because their text was empty or whitespace
    n_duplicates: int  # rows merged into an earlier row with the same text
    columns: list[str] = field(default_factory=list)
    # First lines of CSV records whose text spans several lines (a quoted line break): said
    # in the import's message, since an unclosed quote looks the same.
    multiline: list[int] = field(default_factory=list)
    unit: str = "line"  # what ``ParsedItem.lines`` count: "line" or "row"


def _pick(
    columns: list[str], chosen: str | None, candidates: Sequence[str], what: str
) -> str | None:
    if chosen:
        if chosen not in columns:
            raise UploadRejected(
                [f"There is no {what} column {chosen!r}; the columns are: {', '.join(columns)}."]
            )
        return chosen
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def parse_upload(
    data: bytes,
    filename: str,
    labels: Sequence[str],
    limits: ImportLimits | None = None,
    *,
    text_column: str | None = None,
    gold_column: str | None = None,
) -> ParsedUpload:
    """Check an uploaded file and return its distinct items, or raise :class:`UploadRejected`.

    Parameters
    ----------
    data : bytes
        The file as uploaded.
    filename : str
        Its name: an ending that claims a format (``.csv``, ``.tsv``, ``.jsonl``, ``.json``,
        ``.parquet``, ``.arrow``, ``.zip``) must match the content; anything else is detected
        from the content (:func:`labeling.imports.formats.read_table`).
    labels : sequence of str
        The campaign's label set; gold labels, and a Label Studio task's annotated and
        predicted labels, must be among them (matched ignoring case and surrounding spaces,
        stored in the label set's spelling).
    text_column, gold_column : str, optional
        Chosen columns; detected from :data:`TEXT_COLUMNS` / :data:`GOLD_COLUMNS` otherwise.
        ``gold_column`` :data:`NO_GOLD` ("-") imports no gold labels at all.
    """
    limits = limits or ImportLimits()
    if len(data) > limits.max_bytes:
        raise UploadRejected(
            [f"The file is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes."]
        )
    if not data.strip():
        raise UploadRejected(["The file is empty."])
    table = read_table(data, filename, limits.max_bytes, limits.max_rows)
    fmt, unit, columns, records = table.format, table.unit, table.columns, table.records
    Unit = unit.capitalize()
    if not records:
        raise UploadRejected(["The file has no data rows (only a header or blank lines)."])
    if len(columns) > limits.max_columns:
        raise UploadRejected(
            [f"The file has {len(columns):,} columns; the limit is {limits.max_columns:,}."]
        )
    if len(records) > limits.max_rows:
        raise UploadRejected(
            [f"The file has {len(records):,} rows; the limit is {limits.max_rows:,} rows."]
        )
    text_col = _pick(columns, text_column, TEXT_COLUMNS, "text")
    if text_col is None:
        raise UploadRejected(
            [
                "No text column found: name one of "
                f"{', '.join(TEXT_COLUMNS)}, or choose it; the columns are: {', '.join(columns)}."
            ]
        )
    gold_col = (
        None if gold_column == NO_GOLD else _pick(columns, gold_column, GOLD_COLUMNS, "gold label")
    )
    if gold_col == text_col:
        gold_col = None
    canonical = {label.strip().lower(): label for label in labels}
    index = {label: i for i, label in enumerate(labels)}

    errors: list[str] = []
    not_string: list[int] = []
    too_long: list[int] = []
    unknown_gold: dict[str, list[int]] = {}
    unknown_label: dict[str, list[int]] = {}
    several: list[int] = []
    conflicts: list[str] = []
    label_conflicts: list[str] = []
    by_text: dict[str, int] = {}
    items: list[ParsedItem] = []
    n_blank = n_dupes = 0
    for line, record in records:
        value = record.get(text_col)
        if value is None:
            value = ""
        if not isinstance(value, str):
            not_string.append(line)
            continue
        body = value.strip()
        if not body:
            n_blank += 1
            continue
        if len(body) > limits.max_text_chars:
            too_long.append(line)
            continue
        gold = None
        if gold_col is not None:
            raw_gold = record.get(gold_col)
            raw = "" if raw_gold is None else str(raw_gold).strip()
            if raw:
                gold = canonical.get(raw.lower())
                if gold is None:
                    unknown_gold.setdefault(raw, []).append(line)
        metadata = {k: v for k, v in record.items() if k not in (text_col, gold_col)}
        task = table.tasks.get(line)
        label, predicted, confidence = None, None, None
        if task is not None:
            if task.several:
                several.append(line)
            label, predicted, confidence = _task_labels(task, canonical, index)
            for named in (task.label, task.prediction):
                if named is not None and canonical.get(named.strip().lower()) is None:
                    unknown_label.setdefault(named, []).append(line)
            if len(set(task.choices)) > 1:
                # One annotator ("imported") holds one label per item: the first annotation's
                # is imported, and every annotation's kept here (docs/platform.md, "Uploads").
                metadata["imported_labels"] = list(task.choices)
        if body in by_text:
            n_dupes += 1
            first = items[by_text[body]]
            if gold is not None and first.gold is not None and gold != first.gold:
                conflicts.append(
                    f"{unit}s {first.lines[0]} and {line} ({first.gold!r} vs {gold!r})"
                )
            if label is not None and first.label is not None and label != first.label:
                label_conflicts.append(
                    f"{unit}s {first.lines[0]} and {line} ({first.label!r} vs {label!r})"
                )
            items[by_text[body]] = ParsedItem(
                first.text,
                first.gold if first.gold is not None else gold,
                first.metadata,
                (*first.lines, line),
                first.label if first.label is not None else label,
                first.predicted if first.predicted is not None else predicted,
                first.confidence if first.predicted is not None else confidence,
            )
            continue
        by_text[body] = len(items)
        items.append(ParsedItem(body, gold, metadata, (line,), label, predicted, confidence))

    if not_string:
        errors.append(f"The text on {unit}(s) {list_some(not_string)} is not a string.")
    if too_long:
        errors.append(
            f"{Unit}(s) {list_some(too_long)} have texts longer than "
            f"{limits.max_text_chars:,} characters."
        )
    if unknown_gold:
        listed = ", ".join(
            f"{value!r} ({unit}(s) {list_some(lines)})" for value, lines in unknown_gold.items()
        )
        errors.append(f"Gold labels not in the label set ({', '.join(labels)}): {listed}.")
    if unknown_label:
        listed = ", ".join(
            f"{value!r} ({unit}(s) {list_some(lines)})" for value, lines in unknown_label.items()
        )
        errors.append(
            f"Annotated or predicted labels not in the label set ({', '.join(labels)}): {listed}."
        )
    if several:
        errors.append(
            f"{Unit}(s) {list_some(several)} choose several labels in one annotation or "
            "prediction; an item here takes one label."
        )
    if conflicts:
        errors.append(
            "The same text has different gold labels on "
            + list_some(conflicts, "; ", "; and")
            + "."
        )
    if label_conflicts:
        errors.append(
            "The same text has different annotated labels on "
            + list_some(label_conflicts, "; ", "; and")
            + "."
        )
    if not items and not errors:
        errors.append(f"Every text in column {text_col!r} is blank ({n_blank} rows).")
    if errors:
        raise UploadRejected(errors)
    delimited = fmt in ("csv", "tsv")
    multiline = [
        line for item in items for line in item.lines[:1] if delimited and "\n" in item.text
    ]
    return ParsedUpload(
        fmt, text_col, gold_col, items, len(records), n_blank, n_dupes, columns, multiline, unit
    )


def _task_labels(
    task: Task, canonical: dict[str, str], index: dict[str, int]
) -> tuple[str | None, int | None, float | None]:
    """A Label Studio task's label (the label set's spelling), predicted class index and its
    score; None for what it lacks or what is not in the label set (reported by the caller)."""
    label = canonical.get(task.label.strip().lower()) if task.label is not None else None
    predicted_name = (
        canonical.get(task.prediction.strip().lower()) if task.prediction is not None else None
    )
    predicted = index[predicted_name] if predicted_name is not None else None
    return label, predicted, task.score if predicted is not None else None
