"""The label export's Arrow formats: a Parquet file and a Hugging Face ``datasets`` folder,
written a chunk of :func:`labeling.exports.rows.chunks` (one row group, one record batch) at
a time (docs/platform.md, "Label export").

A module of its own so that pyarrow (about 50 MB of memory, a quarter of a second to import)
is loaded only by the processes that write one of these.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from labeling.exports.formats import ROWS_ITEMS, ROWS_LABELS, item_fields, per_label
from labeling.exports.rows import Plan, Record, chunks, meta_text

_LABEL_STRUCT = pa.struct(
    [
        ("annotator", pa.string()),
        ("label", pa.string()),
        ("comment", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


def arrow_schema(plan: Plan, rows: str, *, class_label: bool = False) -> pa.Schema:
    """The columns of the Parquet file and the ``datasets`` folder: metadata flattened into
    ``meta.<key>`` string columns (non-string values as JSON); ``class_label``: the final
    label as its index in the campaign's labels (-1 for none), for a ClassLabel feature."""
    meta = [(f"meta.{key}", pa.string()) for key in plan.meta_keys]
    final = ("final_label", pa.int64() if class_label else pa.string())
    item = [
        final,
        ("final_source", pa.string()),
        ("gold", pa.string()),
        ("is_gold", pa.bool_()),
        ("evaluation", pa.bool_()),
        ("predicted", pa.string()),
        ("confidence", pa.float64()),
        ("model_version", pa.int64()),
    ]
    if rows == ROWS_LABELS:
        head = [
            ("item", pa.int64()),
            ("text", pa.string()),
            ("label", pa.string()),
            ("annotator", pa.string()),
            ("comment", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("position", pa.int64()),
        ]
        return pa.schema([*head, *meta, *item])
    head = [("item", pa.int64()), ("position", pa.int64()), ("text", pa.string())]
    return pa.schema([*head, *meta, ("labels", pa.list_(_LABEL_STRUCT)), *item])


def _batch(
    plan: Plan, chunk: list[Record], rows: str, schema: pa.Schema, class_label: bool
) -> pa.RecordBatch:
    index = {name: i for i, name in enumerate(plan.label_names)}
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for r in chunk:
        fields = item_fields(r)
        if class_label:
            fields["final_label"] = index.get(r.final_label, -1)
        meta = {f"meta.{key}": meta_text(r.metadata.get(key)) for key in plan.meta_keys}
        if rows == ROWS_LABELS:
            for label in per_label(r):
                row = {
                    "item": r.item,
                    "text": r.text,
                    "label": label.label if label else None,
                    "annotator": label.annotator if label else None,
                    "comment": label.comment if label else None,
                    "created_at": label.created_at if label else None,
                    "position": r.position,
                    **meta,
                    **fields,
                }
                for name, values in columns.items():
                    values.append(row[name])
        else:
            labels = [
                {
                    "annotator": label.annotator,
                    "label": label.label,
                    "comment": label.comment,
                    "created_at": label.created_at,
                }
                for label in r.labels
            ]
            row = {"item": r.item, "position": r.position, "text": r.text, **meta}
            row |= {"labels": labels, **fields}
            for name, values in columns.items():
                values.append(row[name])
    return pa.RecordBatch.from_pydict(columns, schema=schema)


def write_parquet(plan: Plan, path: Path, rows: str = ROWS_LABELS) -> int:
    """Write the export as a Parquet file, one row group per chunk of items. Returns the
    number of rows."""
    schema = arrow_schema(plan, rows)
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for chunk in chunks(plan):
            batch = _batch(plan, chunk, rows, schema, class_label=False)
            writer.write_batch(batch)
            n += batch.num_rows
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


# The `datasets` feature types of the columns, as DatasetInfo.to_dict() spells them: the
# dictionary form every release of `datasets` since 2 reads (ClassLabel, Value, a list).
def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


def hf_features(plan: Plan, rows: str) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for field in arrow_schema(plan, rows, class_label=True):
        if field.name == "final_label":
            features[field.name] = {"names": plan.label_names, "_type": "ClassLabel"}
        elif field.name == "labels":
            features[field.name] = [
                {
                    "annotator": _value("string"),
                    "label": _value("string"),
                    "comment": _value("string"),
                    "created_at": _value("timestamp[us, tz=UTC]"),
                }
            ]
        else:
            dtype = str(field.type)
            features[field.name] = _value(
                {"bool": "bool", "double": "float64"}.get(dtype, dtype)
                if not dtype.startswith("timestamp")
                else "timestamp[us, tz=UTC]"
            )
    return features


HF_DATA_FILE = "data-00000-of-00001.arrow"


def write_hf_folder(plan: Plan, folder: Path, rows: str = ROWS_ITEMS) -> int:
    """Write what ``datasets.Dataset.save_to_disk`` writes (one Arrow stream file,
    ``dataset_info.json``, ``state.json``), a record batch per chunk, without needing
    ``datasets`` on the server; ``datasets.load_from_disk`` opens it, with the final label as
    a ClassLabel feature over the campaign's labels (-1: no final label). Returns the number
    of rows."""
    folder.mkdir(parents=True, exist_ok=True)
    features = hf_features(plan, rows)
    info = {
        "citation": "",
        "description": f"Carve campaign {plan.campaign.pk}: {plan.campaign.name}",
        "features": features,
        "homepage": "",
        "license": "",
    }
    schema = arrow_schema(plan, rows, class_label=True).with_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})}
    )
    n = 0
    with (
        pa.OSFile(str(folder / HF_DATA_FILE), "wb") as sink,
        pa.ipc.new_stream(sink, schema) as writer,
    ):
        for chunk in chunks(plan):
            batch = _batch(plan, chunk, rows, schema, class_label=True)
            writer.write_batch(batch)
            n += batch.num_rows
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    state: dict[str, Any] = {
        "_data_files": [{"filename": HF_DATA_FILE}],
        "_fingerprint": uuid.uuid4().hex[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    return n


def zip_folder(folder: Path, path: Path, arcname: str) -> None:
    """Zip ``folder`` as ``arcname/…``, each file copied in blocks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{arcname}/{file.relative_to(folder).as_posix()}")
