"""Parse and validate an uploaded dataset (CSV or JSONL) before anything touches the database.

The whole file is checked first; every problem found is collected and reported together, and
nothing is imported unless the file is clean (an upload imports completely or not at all).
Blank texts are skipped and duplicate texts merged: both are counted, not errors.

Pure Python (no Django), so the same checks serve the upload page, the API and the tests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Column names tried, in order, when the uploader does not choose the text column.
TEXT_COLUMNS = ("text", "sentence", "content", "review", "body", "document")
#: Column names tried for the optional gold label.
GOLD_COLUMNS = ("gold", "gold_label", "label", "sentiment")
MAX_LISTED = 10  # problems of one kind listed by line before "and N more"
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

    ``lines`` are the 1-based source lines (CSV records count their header as line 1) that
    carried this text; more than one when duplicates were merged.
    """

    text: str
    gold: str | None
    metadata: dict[str, Any]
    lines: tuple[int, ...]


@dataclass(frozen=True)
class ParsedUpload:
    format: str  # "csv" or "jsonl"
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


class UploadRejected(ValueError):
    """The upload is refused; ``errors`` holds one precise message per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def list_some(parts: Sequence[object], sep: str = ", ", tail: str = " and") -> str:
    """The first MAX_LISTED parts joined by ``sep``, then "<tail> N more" for the rest."""
    more = len(parts) - MAX_LISTED
    shown = sep.join(str(p) for p in parts[:MAX_LISTED])
    return shown + (f"{tail} {more} more" if more > 0 else "")


def _lines_text(lines: Sequence[int]) -> str:
    return list_some(lines)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UploadRejected(
            [
                f"The file is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} "
                "cannot be decoded. Save the file as UTF-8 and upload it again."
            ]
        ) from None


def _detect_format(filename: str, text: str) -> str:
    name = filename.lower()
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def _csv_records(text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The header and each record with the line it starts on. A quoted field still open at
    the end of the file is refused (every later line would have become part of one text)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise UploadRejected([f"Line 1 is not valid CSV: {exc}."]) from None
    columns = [c.strip() for c in header]
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise UploadRejected([f"The header repeats the column(s) {', '.join(dupes)}."])
    records: list[tuple[int, dict[str, Any]]] = []
    errors: list[str] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                errors.append(
                    f"Line {start} opens a quoted field that is never closed, so every line "
                    "after it would be read into one text. Close the quote (a quote inside a "
                    'quoted field is written "") and upload the file again.'
                )
            else:
                errors.append(f"Line {start} is not valid CSV: {exc}.")
            break
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line is no record
        if len(row) != len(columns):
            errors.append(f"Line {start} has {len(row)} fields; the header has {len(columns)}.")
            continue
        records.append((start, dict(zip(columns, row, strict=True))))
    if errors:
        raise UploadRejected(errors)
    return columns, records


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def _nul_lines(text: str, *, escapes: bool) -> list[int]:
    """Lines holding a NUL character, raw or as a JSON ``\\u0000`` escape: no database text
    column can store one (PostgreSQL refuses it)."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if "\x00" in line or (escapes and "\\u0000" in line.lower())
    ]


def _jsonl_records(text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    records: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    bad: list[int] = []
    not_object: list[int] = []
    nonfinite: list[int] = []
    too_deep: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw, parse_constant=_refuse_constant)
        except _NonFinite:
            nonfinite.append(number)
            continue
        except RecursionError:
            too_deep.append(number)
            continue
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if not isinstance(value, dict):
            not_object.append(number)
            continue
        columns.update(dict.fromkeys(value))
        records.append((number, value))
    errors = []
    if bad:
        errors.append(f"Line(s) {_lines_text(bad)} are not valid JSON.")
    if not_object:
        errors.append(f"Line(s) {_lines_text(not_object)} are not JSON objects.")
    if nonfinite:
        errors.append(
            f"Line(s) {_lines_text(nonfinite)} hold NaN or Infinity, which JSON does not allow "
            "and the database cannot store; write null or a number."
        )
    if too_deep:
        errors.append(f"Line(s) {_lines_text(too_deep)} are nested too deeply.")
    if errors:
        raise UploadRejected(errors)
    return list(columns), records


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
        Its name; ``.jsonl``/``.ndjson`` mean JSON Lines, ``.csv`` CSV, anything else is
        sniffed from the first character.
    labels : sequence of str
        The campaign's label set; gold labels must be among them (matched ignoring case and
        surrounding spaces, stored in the label set's spelling).
    text_column, gold_column : str, optional
        Chosen columns; detected from :data:`TEXT_COLUMNS` / :data:`GOLD_COLUMNS` otherwise.
        ``gold_column`` :data:`NO_GOLD` ("-") imports no gold labels at all.
    """
    limits = limits or ImportLimits()
    if len(data) > limits.max_bytes:
        raise UploadRejected(
            [f"The file is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes."]
        )
    text = _decode(data)
    if not text.strip():
        raise UploadRejected(["The file is empty."])
    fmt = _detect_format(filename, text)
    nul = _nul_lines(text, escapes=fmt == "jsonl")
    if nul:
        raise UploadRejected(
            [
                f"Line(s) {_lines_text(nul)} contain a NUL character, which the database "
                "cannot store. Remove it and upload the file again."
            ]
        )
    columns, records = _csv_records(text) if fmt == "csv" else _jsonl_records(text)
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

    errors: list[str] = []
    not_string: list[int] = []
    too_long: list[int] = []
    unknown_gold: dict[str, list[int]] = {}
    conflicts: list[str] = []
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
        if body in by_text:
            n_dupes += 1
            first = items[by_text[body]]
            if gold is not None and first.gold is not None and gold != first.gold:
                conflicts.append(f"lines {first.lines[0]} and {line} ({first.gold!r} vs {gold!r})")
            merged_gold = first.gold if first.gold is not None else gold
            items[by_text[body]] = ParsedItem(
                first.text, merged_gold, first.metadata, (*first.lines, line)
            )
            continue
        by_text[body] = len(items)
        items.append(ParsedItem(body, gold, metadata, (line,)))

    if not_string:
        errors.append(f"The text on line(s) {_lines_text(not_string)} is not a string.")
    if too_long:
        errors.append(
            f"Line(s) {_lines_text(too_long)} have texts longer than "
            f"{limits.max_text_chars:,} characters."
        )
    if unknown_gold:
        listed = ", ".join(
            f"{value!r} (line(s) {_lines_text(lines)})" for value, lines in unknown_gold.items()
        )
        errors.append(f"Gold labels not in the label set ({', '.join(labels)}): {listed}.")
    if conflicts:
        errors.append(
            "The same text has different gold labels on "
            + list_some(conflicts, "; ", "; and")
            + "."
        )
    if not items and not errors:
        errors.append(f"Every text in column {text_col!r} is blank ({n_blank} rows).")
    if errors:
        raise UploadRejected(errors)
    multiline = [
        line for item in items for line in item.lines[:1] if fmt == "csv" and "\n" in item.text
    ]
    return ParsedUpload(
        fmt, text_col, gold_col, items, len(records), n_blank, n_dupes, columns, multiline
    )
