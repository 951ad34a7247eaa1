"""The label export's text formats, each written from :func:`labeling.exports.rows.chunks` in
constant memory (docs/platform.md, "Label export"): CSV, JSON Lines and Label Studio JSON,
yielded in pieces of about :data:`PIECE` characters for a streamed answer. Parquet and the
Hugging Face ``datasets`` folder are in :mod:`labeling.exports.arrow`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from labeling.exports.rows import Plan, RawLabel, Record, chunks, meta_text

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Text formats go out in pieces of about PIECE characters: one write to the socket per piece,
# not per row (docs/scaling.md, "CSV export").
PIECE = 64 * 1024

ROWS_LABELS, ROWS_ITEMS = "labels", "items"

#: The export's formats (``as=``): content type and file suffix.
EXPORT_FORMATS = {
    "csv": ("text/csv", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "labelstudio": ("application/json", "json"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
    "hf": ("application/zip", "zip"),
}
#: The formats written to a file before they are sent (pyarrow writes them).
FILE_FORMATS = ("parquet", "hf")
#: The formats that are always one record per item, whatever ``rows`` says.
ITEM_FORMATS = ("hf", "labelstudio")


def export_filename(campaign_id: int, kind: str) -> str:
    """The name an export of campaign ``campaign_id`` as ``kind`` is downloaded under."""
    return f"campaign-{campaign_id}-labels.{EXPORT_FORMATS[kind][1]}"


#: The first columns of a one-row-per-label export, as the export always had them.
LABEL_COLUMNS = ["item", "text", "label", "annotator", "comment", "created_at"]
#: The item's columns that follow (after its metadata in CSV and Parquet).
ITEM_COLUMNS = [
    "final_label",
    "final_source",
    "gold",
    "is_gold",
    "evaluation",
    "predicted",
    "confidence",
    "model_version",
]
#: Label Studio's names for the text and the choice (its labeling config in docs/platform.md).
LS_FROM_NAME, LS_TO_NAME = "sentiment", "text"


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def item_fields(r: Record) -> dict[str, Any]:
    return {
        "final_label": r.final_label,
        "final_source": r.final_source,
        "gold": r.gold,
        "is_gold": r.gold != "",
        "evaluation": r.evaluation,
        "predicted": r.predicted,
        "confidence": r.confidence,
        "model_version": r.model_version,
    }


def _label_dict(label: RawLabel) -> dict[str, Any]:
    return {
        "annotator": label.annotator,
        "label": label.label,
        "comment": label.comment,
        "created_at": label.created_at.isoformat(),
    }


def per_label(r: Record) -> Iterator[RawLabel | None]:
    """The rows of one item in a one-row-per-label export: one per active label, or a single
    row without a label for an item that has none (exported with ``items=all``)."""
    if r.labels:
        yield from r.labels
    else:
        yield None


def _pieces(lines: Iterable[str]) -> Iterator[str]:
    buffer: list[str] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= PIECE:
            yield "".join(buffer)
            buffer, size = [], 0
    yield "".join(buffer)


# --- CSV ---------------------------------------------------------------------------------------


def csv_header(plan: Plan, rows: str) -> list[str]:
    meta = [f"meta.{key}" for key in plan.meta_keys]
    if rows == ROWS_LABELS:
        return [*LABEL_COLUMNS, "position", *meta, *ITEM_COLUMNS]
    return ["item", "position", "text", *meta, "labels", *ITEM_COLUMNS]


_FORMULA_FIRST = frozenset(FORMULA_START)


def _cell(value: Any) -> Any:
    """One CSV cell: text made spreadsheet-safe, booleans as true/false, None empty (the
    export's hot path: a dozen cells a row)."""
    if value.__class__ is str:
        return "'" + value if value[:1] in _FORMULA_FIRST else value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return value


def _meta_cell(value: Any) -> Any:
    """One metadata cell: a JSON number as it is (-3 is no formula: quoted, it would come back
    from a re-import as the text "'-3"), anything else as :func:`_cell` of its text."""
    if value.__class__ in (int, float):
        return value
    return _cell(meta_text(value))


def as_csv(plan: Plan, rows: str = ROWS_LABELS) -> Iterator[str]:
    """CSV with a header; every text cell that a spreadsheet would run as a formula gets a
    leading ``'``. One row per active label (``rows="labels"``) or per item, whose labels
    are then one JSON cell."""

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)

        def flush() -> str:
            text = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            return text

        writer.writerow(csv_header(plan, rows))
        yield flush()
        for chunk in chunks(plan):
            for r in chunk:
                meta = [_meta_cell(r.metadata.get(key)) for key in plan.meta_keys]
                item = [_cell(v) for v in item_fields(r).values()]
                if rows == ROWS_LABELS:
                    for label in per_label(r):
                        head: list[Any] = [r.item, _cell(r.text)]
                        if label is None:
                            head += ["", "", "", ""]
                        else:
                            head += [
                                _cell(label.label),
                                _cell(label.annotator),
                                _cell(label.comment),
                                label.created_at.isoformat(),
                            ]
                        writer.writerow([*head, r.position, *meta, *item])
                else:
                    given = json.dumps([_label_dict(label) for label in r.labels])
                    writer.writerow([r.item, r.position, _cell(r.text), *meta, given, *item])
            yield flush()

    return _pieces(lines())


# --- JSON Lines ----------------------------------------------------------------------------


def label_row(r: Record, label: RawLabel | None) -> dict[str, Any]:
    """One row of a one-row-per-label export (JSON Lines; Parquet has the same fields, its
    metadata flattened)."""
    return {
        "item": r.item,
        "text": r.text,
        "label": label.label if label else None,
        "annotator": label.annotator if label else None,
        "comment": label.comment if label else None,
        "created_at": label.created_at.isoformat() if label else None,
        "position": r.position,
        "metadata": r.metadata,
        **item_fields(r),
    }


def item_row(r: Record) -> dict[str, Any]:
    """One row of a one-row-per-item export, its labels nested."""
    return {
        "item": r.item,
        "position": r.position,
        "text": r.text,
        "metadata": r.metadata,
        "labels": [_label_dict(label) for label in r.labels],
        **item_fields(r),
    }


def as_jsonl(plan: Plan, rows: str = ROWS_LABELS) -> Iterator[str]:
    """JSON Lines: one object per active label or per item, the metadata nested as it was
    imported."""

    def lines() -> Iterator[str]:
        for chunk in chunks(plan):
            for r in chunk:
                records = (
                    [label_row(r, label) for label in per_label(r)]
                    if rows == ROWS_LABELS
                    else [item_row(r)]
                )
                for record in records:
                    yield json.dumps(record, ensure_ascii=False) + "\n"

    return _pieces(lines())


# --- Label Studio JSON ---------------------------------------------------------------------


def _choice(value: str) -> dict[str, Any]:
    return {
        "from_name": LS_FROM_NAME,
        "to_name": LS_TO_NAME,
        "type": "choices",
        "value": {"choices": [value]},
    }


def labelstudio_task(r: Record) -> dict[str, Any]:
    """One Label Studio task (its "Basic Label Studio JSON format", with ``annotations`` and
    ``predictions``; docs/platform.md, "Label export"): the text and the metadata as
    ``data``, one annotation per active label (a comment as a ``textarea`` result named
    ``comment``), the served model's prediction, and Carve's own fields in ``meta``."""
    data = {key: value for key, value in r.metadata.items() if key != "text"}
    annotations = []
    for label in r.labels:
        result = [_choice(label.label)]
        if label.comment:
            result.append(
                {
                    "from_name": "comment",
                    "to_name": LS_TO_NAME,
                    "type": "textarea",
                    "value": {"text": [label.comment]},
                }
            )
        annotations.append(
            {
                "result": result,
                "completed_by": label.annotator_id,
                "created_at": label.created_at.isoformat(),
            }
        )
    predictions = []
    if r.predicted:
        predictions.append(
            {
                "model_version": str(r.model_version) if r.model_version is not None else "",
                "score": r.confidence,
                "result": [_choice(r.predicted)],
            }
        )
    return {
        "data": {"text": r.text, **data},
        "annotations": annotations,
        "predictions": predictions,
        "meta": {
            "carve_item": r.item,
            "annotators": [label.annotator for label in r.labels],
            **{k: v for k, v in item_fields(r).items() if k not in ("predicted", "confidence")},
        },
    }


def as_labelstudio(plan: Plan) -> Iterator[str]:
    """A JSON array of Label Studio tasks, one per item, streamed element by element."""

    def lines() -> Iterator[str]:
        yield "["
        first = True
        for chunk in chunks(plan):
            for r in chunk:
                yield ("\n" if first else ",\n") + json.dumps(
                    labelstudio_task(r), ensure_ascii=False
                )
                first = False
        yield "\n]\n"

    return _pieces(lines())
