"""Reading an uploaded file into records: which format it is, and its rows as plain dicts.

docs/platform.md, "Uploads": CSV and TSV (the delimiter detected from the header), JSON Lines,
a JSON array of objects, Label Studio's JSON tasks (their annotations and predictions kept
aside), Parquet, an Arrow file as Hugging Face ``datasets`` writes it, and a zip of a folder
saved with ``Dataset.save_to_disk``. Parquet and Arrow are read one record batch at a time
with a bound on the decoded size, so a small compressed file cannot expand without limit.

A file whose name claims a format its bytes do not have is refused with the format found.
Pure Python and pyarrow (no Django); :mod:`labeling.imports.parse` validates the records.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import lzma
import math
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_LISTED = 10  # problems of one kind listed by line before "and N more"
#: Decoded Parquet/Arrow data allowed per upload, as a multiple of the upload's byte limit.
DECODED_FACTOR = 4
#: Rows per record batch read from a Parquet file.
BATCH_ROWS = 10_000
#: Delimiters a delimited text file may use, in order of preference on a tie.
DELIMITERS = (",", "\t", ";", "|")

#: Names of the formats, as messages say them.
FORMAT_NAMES = {
    "csv": "CSV",
    "tsv": "TSV (tab-separated)",
    "jsonl": "JSON Lines",
    "json": "JSON",
    "labelstudio": "Label Studio JSON",
    "parquet": "Parquet",
    "arrow": "Arrow",
    "zip": "a zip archive",
    "gzip": "gzip-compressed data",
}
#: File name endings and the format each claims.
CLAIMS = (
    ((".jsonl", ".ndjson"), "jsonl"),
    ((".json",), "json"),
    ((".csv",), "csv"),
    ((".tsv", ".tab"), "tsv"),
    ((".parquet", ".pq"), "parquet"),
    ((".arrow",), "arrow"),
    ((".zip",), "zip"),
)
BINARY = ("parquet", "arrow", "zip", "gzip")
#: What the readers raise on a damaged file, besides pyarrow's ArrowException (zipfile: a
#: negative seek, an unknown version, EOF, bad compressed data; a field name that is not
#: UTF-8; a password).
_DAMAGED: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
)

Record = tuple[int, dict[str, Any]]
#: A lone UTF-16 surrogate (a JSON escape such as ``\\ud800``): no UTF-8 text holds one.
_SURROGATE = re.compile("[\ud800-\udfff]")


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


@dataclass(frozen=True)
class Task:
    """What a Label Studio task carries besides its data: the label chosen by its first
    annotation (raw, checked against the label set later), every annotation's choice, and
    the first prediction's choice with its score."""

    label: str | None = None
    choices: tuple[str, ...] = ()
    several: bool = False  # an annotation or prediction chose more than one label
    prediction: str | None = None
    score: float | None = None


@dataclass
class Table:
    """A file read into records: ``unit`` is what their numbers count ("line" of a text
    file, or "row": element of a JSON array, row of a table)."""

    format: str
    unit: str
    columns: list[str]
    records: list[Record]
    tasks: dict[int, Task] = field(default_factory=dict)  # Label Studio, by record number


def read_table(data: bytes, filename: str, max_bytes: int, max_rows: int) -> Table:
    """Detect the format of ``data`` (named ``filename``) and read its records."""
    claimed = _claimed(filename)
    found = _magic(data)
    if claimed in BINARY and found != claimed:
        raise _misclaimed(filename, claimed, data)
    if found is not None and claimed is not None and claimed not in BINARY:
        raise _misclaimed(filename, claimed, data)
    limit = DECODED_FACTOR * max_bytes
    if found == "parquet":
        return _parquet(data, limit, max_rows)
    if found == "arrow":
        return _arrow(data, limit, max_rows)
    if found == "zip":
        return _zip(data, limit, max_rows)
    if found == "gzip":
        raise UploadRejected(["The file is gzip-compressed: decompress it and upload it again."])
    text = _decode(data)
    if not text.strip():
        raise UploadRejected(["The file is empty."])
    fmt = _text_format(text)
    if claimed in ("json", "jsonl") and fmt not in ("json", "jsonl"):
        if _first_line_json(text) is None:
            raise _misclaimed(filename, claimed, data)
        fmt = "jsonl"  # JSON, but not objects: the line-by-line reading says which lines
    if claimed in ("csv", "tsv") and fmt in ("json", "jsonl") and _first_line_is_json(text):
        raise _misclaimed(filename, claimed, data)
    if claimed in ("csv", "tsv"):
        fmt = claimed if claimed == "tsv" else fmt if fmt in ("csv", "tsv") else "csv"
    if fmt in ("csv", "tsv"):
        nul = _nul_lines(text, escapes=False)
        _refuse_nul(nul, "line")
        delimiter = "\t" if fmt == "tsv" else _delimiter(text)
        columns, records = _csv_records(text, delimiter)
        return Table("tsv" if delimiter == "\t" else "csv", "line", columns, records)
    if fmt == "jsonl":
        whole = _one_object(text)
        if whole is None:
            _refuse_nul(_nul_lines(text, escapes=True), "line")
            columns, records = _jsonl_records(text)
            return _maybe_label_studio(Table("jsonl", "line", columns, records))
        text = "[" + text + "]"  # one object spread over several lines: an array of one
    return _json_array(text)


# --- which format ---------------------------------------------------------------------------


def _claimed(filename: str) -> str | None:
    name = filename.lower()
    for endings, fmt in CLAIMS:
        if name.endswith(endings):
            return fmt
    return None


def _magic(data: bytes) -> str | None:
    """The binary format whose signature ``data`` starts with, if any."""
    if data[:4] == b"PAR1":
        return "parquet"
    # An Arrow IPC file ("ARROW1"), or a stream (datasets' .arrow files), which starts with
    # the continuation marker 0xFFFFFFFF.
    if data[:6] == b"ARROW1" or data[:4] == b"\xff\xff\xff\xff":
        return "arrow"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def _json_array_start(text: str) -> bool:
    """Whether ``text`` starts like a JSON array: ``[`` then a JSON value (or ``]``), not a
    CSV header such as ``[id],text``."""
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return False
    rest = stripped[1:].lstrip()
    if rest[:1] in ("", "]", "{", "[", '"'):  # (a broken array: the JSON reader says where)
        return True
    try:
        json.JSONDecoder().raw_decode(rest)
    except RecursionError:
        return True
    except ValueError:
        return False
    return True


def _text_format(text: str) -> str:
    start = text.lstrip()[:1]
    if start == "[" and _json_array_start(text):
        return "json"
    if start == "{":
        return "jsonl"
    return "tsv" if _delimiter(text) == "\t" else "csv"


def _first_line_json(text: str) -> object | None:
    """The first line's JSON value (None when it is not JSON, or is null)."""
    try:
        return json.loads(text.lstrip().split("\n", 1)[0])
    except (ValueError, RecursionError):
        return None


def _first_line_is_json(text: str) -> bool:
    return isinstance(_first_line_json(text), dict | list) or _json_array_start(text)


def _looks_like(data: bytes) -> str:
    found = _magic(data)
    if found is not None:
        return FORMAT_NAMES[found]
    head = data[:65536]
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # (not just a character cut at the end of the sample)
            return "binary data (not UTF-8 text)"
        text = head[: exc.start].decode("utf-8-sig")
    if not text.strip():
        return "an empty file"
    fmt = _text_format(text)
    return FORMAT_NAMES[fmt] + ("" if fmt in ("json", "jsonl") else " text")


def _misclaimed(filename: str, claimed: str, data: bytes) -> UploadRejected:
    name = FORMAT_NAMES[claimed]
    return UploadRejected(
        [
            f"The file is named {filename!r} but is not {name}: it looks like "
            f"{_looks_like(data)}. Rename it to match its content, or export it again as {name}."
        ]
    )


def _delimiter(text: str) -> str:
    """The delimiter of a delimited text file: the one of DELIMITERS found most often in its
    header line outside quotes (a comma when none is: a single column)."""
    header = text.lstrip("\ufeff").split("\n", 1)[0]
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])  # (the first of equal counts)
    return best if counts[best] else ","


# --- text formats ---------------------------------------------------------------------------


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


def _csv_records(text: str, delimiter: str = ",") -> tuple[list[str], list[Record]]:
    """The header and each record with the line it starts on. A quoted field still open at
    the end of the file is refused (every later line would have become part of one text)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
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
    records: list[Record] = []
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


class _Constant:
    """NaN or Infinity met in a JSON array (marked, then reported with its row)."""


_CONSTANT = _Constant()


def _nul_lines(text: str, *, escapes: bool) -> list[int]:
    """Lines holding a NUL character, raw or as a JSON ``\\u0000`` escape: no database text
    column can store one (PostgreSQL refuses it)."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if "\x00" in line or (escapes and "\\u0000" in line.lower())
    ]


def _refuse_nul(numbers: Sequence[int], unit: str) -> None:
    if numbers:
        raise UploadRejected(
            [
                f"{unit.capitalize()}(s) {list_some(numbers)} contain a NUL character, which the "
                "database cannot store. Remove it and upload the file again."
            ]
        )


def _jsonl_records(text: str) -> tuple[list[str], list[Record]]:
    records: list[Record] = []
    columns: dict[str, None] = {}
    bad: list[int] = []
    not_object: list[int] = []
    nonfinite: list[int] = []
    surrogate: list[int] = []
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
        found: set[str] = set()
        value = _clean(value, found)  # (1e400 is Infinity; "\ud800" no UTF-8 text)
        if "nonfinite" in found:
            nonfinite.append(number)
        if "surrogate" in found:
            surrogate.append(number)
        if found.intersection(("nonfinite", "surrogate")):
            continue
        columns.update(dict.fromkeys(value))
        records.append((number, value))
    errors = []
    if bad:
        errors.append(f"Line(s) {list_some(bad)} are not valid JSON.")
    if not_object:
        errors.append(f"Line(s) {list_some(not_object)} are not JSON objects.")
    if nonfinite:
        errors.append(_nonfinite_message(nonfinite, "line"))
    if surrogate:
        errors.append(_surrogate_message(surrogate, "line"))
    if too_deep:
        errors.append(f"Line(s) {list_some(too_deep)} are nested too deeply.")
    if errors:
        raise UploadRejected(errors)
    return list(columns), records


def _nonfinite_message(numbers: Sequence[int], unit: str) -> str:
    return (
        f"{unit.capitalize()}(s) {list_some(numbers)} hold NaN or Infinity, which JSON does not "
        "allow and the database cannot store; write null or a number."
    )


def _surrogate_message(numbers: Sequence[int], unit: str) -> str:
    return (
        f"{unit.capitalize()}(s) {list_some(numbers)} hold a lone surrogate escape (such as "
        "\\ud800), which is not valid Unicode text and the database cannot store; fix the "
        "text and upload the file again."
    )


def _one_object(text: str) -> dict[str, Any] | None:
    """``text`` as one JSON object when it is exactly one (a pretty-printed task, say); None
    for JSON Lines (or anything else: the line-by-line reading reports it)."""
    if text.count("\n", 0, len(text.rstrip())) == 0:
        return None  # one line: JSON Lines reads it, with its messages
    try:
        value = json.loads(text, parse_constant=lambda name: _CONSTANT)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _json_array(text: str) -> Table:
    """A JSON array of objects, each a row (numbered from 1); Label Studio tasks when every
    element is one (a ``data`` object)."""
    try:
        value = json.loads(text, parse_constant=lambda name: _CONSTANT)
    except RecursionError:
        raise UploadRejected(["The JSON file is nested too deeply."]) from None
    except json.JSONDecodeError as exc:
        raise UploadRejected(
            [f"The file is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."]
        ) from None
    if not isinstance(value, list):
        raise UploadRejected(
            ["The JSON file is not an array of objects (nor JSON Lines: one object per line)."]
        )
    columns: dict[str, None] = {}
    records: list[Record] = []
    not_object: list[int] = []
    problems: dict[str, list[int]] = {}
    for number, element in enumerate(value, start=1):
        if not isinstance(element, dict):
            not_object.append(number)
            continue
        found: set[str] = set()
        clean = _clean(element, found)
        for problem in found:
            problems.setdefault(problem, []).append(number)
        columns.update(dict.fromkeys(clean))
        records.append((number, clean))
    errors = []
    if not_object:
        errors.append(f"Row(s) {list_some(not_object)} of the JSON array are not JSON objects.")
    errors.extend(_problem_messages(problems, "row"))
    if errors:
        raise UploadRejected(errors)
    return _maybe_label_studio(Table("json", "row", list(columns), records))


# --- Label Studio ---------------------------------------------------------------------------


def _maybe_label_studio(table: Table) -> Table:
    """Label Studio tasks (docs/platform.md, "Uploads"; Label Studio's "Label Studio JSON
    format of annotated tasks"): when every record has a ``data`` object, that object is
    the row, and ``annotations`` / ``predictions`` become the task's label and suggestion."""
    if not table.records or not all(isinstance(r.get("data"), dict) for _, r in table.records):
        return table
    columns: dict[str, None] = {}
    records: list[Record] = []
    tasks: dict[int, Task] = {}
    for number, task in table.records:
        row = dict(task["data"])
        columns.update(dict.fromkeys(row))
        records.append((number, row))
        tasks[number] = _task(task)
    return Table("labelstudio", table.unit, list(columns), records, tasks)


def _choices(results: Any) -> tuple[list[str], bool]:
    """The labels chosen by the first ``choices`` result of an annotation or prediction, and
    whether it chose more than one."""
    for result in results if isinstance(results, list) else ():
        if not isinstance(result, dict) or result.get("type") != "choices":
            continue
        value = result.get("value")
        chosen = value.get("choices") if isinstance(value, dict) else None
        if isinstance(chosen, list):
            names = [str(c) for c in chosen]
            return names[:1], len(names) > 1
    return [], False


def _task(task: dict[str, Any]) -> Task:
    picked: list[str] = []
    several = False
    annotations = task.get("annotations")
    for annotation in annotations if isinstance(annotations, list) else ():
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        chosen, many = _choices(annotation.get("result"))
        several = several or many
        picked.extend(chosen)
    prediction: str | None = None
    score: float | None = None
    predictions = task.get("predictions")
    for predicted in predictions if isinstance(predictions, list) else ():
        if not isinstance(predicted, dict):
            continue
        chosen, many = _choices(predicted.get("result"))
        if chosen:
            several = several or many
            prediction = chosen[0]
            raw = predicted.get("score")
            if isinstance(raw, int | float) and not isinstance(raw, bool) and 0 <= raw <= 1:
                score = float(raw)  # (a score outside [0, 1] is no probability: left out)
            break
    label = picked[0] if picked else None
    return Task(label, tuple(picked), several, prediction, score)


# --- Parquet, Arrow, datasets ---------------------------------------------------------------


def _class_names(schema: Any) -> dict[str, list[str]]:
    """Column -> label names of the ``ClassLabel`` columns that Hugging Face ``datasets``
    records in the schema's metadata (its integers are read as those names)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(raw)["info"]["features"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}
    if not isinstance(features, dict):
        return {}
    return {
        name: [str(n) for n in feature["names"]]
        for name, feature in features.items()
        if isinstance(feature, dict)
        and feature.get("_type") == "ClassLabel"
        and isinstance(feature.get("names"), list)
    }


def _decoded_bytes(batch: Any) -> int:
    """The bytes ``batch`` holds once its rows are Python values. A dictionary-encoded column
    counts each row's value (its ``nbytes`` counts the dictionary once: a one-value
    dictionary of a megabyte over 10,000 rows is a file of a few hundred bytes that becomes
    10 GB of strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in batch.columns:
        kind = column.type
        if not pa.types.is_dictionary(kind):
            total += column.nbytes
            continue
        values, indices = column.dictionary, column.indices
        total += indices.nbytes
        if len(values) == 0 or len(indices) == 0:
            continue
        value_type = kind.value_type
        t = pa.types
        if any(f(value_type) for f in (t.is_string, t.is_large_string, t.is_binary)) or (
            t.is_large_binary(value_type)
        ):
            lengths = pc.binary_length(values).take(indices)
            total += int(pc.sum(lengths).as_py() or 0)
        elif t.is_primitive(value_type):
            total += len(indices) * max(1, value_type.bit_width // 8)
        else:  # nested values: each row as large as the whole dictionary, at worst
            total += len(indices) * values.nbytes
    return total


def _invalid(batch: Any, exc: Exception) -> str:
    """Why a record batch is not valid, naming its columns: text that is not UTF-8, or a
    damaged file."""
    import pyarrow as pa

    bad = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            column.validate(full=True)
        except pa.ArrowException:
            bad.append(name)
    where = f"The column(s) {', '.join(bad)}" if bad else "The table"
    if "utf8" in str(exc).lower().replace("-", ""):
        return f"{where} hold text that is not valid UTF-8. Write the file again as UTF-8."
    return f"The file is damaged: {where.lower()[4:]} cannot be read ({exc})."


def _unreadable(batch: Any, exc: Exception) -> str:
    """Why a valid record batch cannot become Python values, naming its columns: a date or
    a duration out of Python's range, a time zone that does not exist."""
    bad = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            column.to_pylist()
        except Exception:  # noqa: BLE001
            bad.append(name)
    where = f"The column(s) {', '.join(bad)}" if bad else "The table"
    return (
        f"{where} hold values that cannot be read ({type(exc).__name__}: {exc}): a date "
        "or a duration out of range, or an unknown time zone? Fix or drop those columns."
    )


def _too_large(limit: int) -> str:
    return (
        f"The table holds more than {limit:,} bytes once decompressed; the limit is four "
        "times the upload limit. Split it into smaller files."
    )


class _Rows:
    """Collects record batches into rows, within the row and decoded-size limits."""

    def __init__(self, fmt: str, decoded_limit: int, max_rows: int) -> None:
        self.table = Table(fmt, "row", [], [])
        self.columns: dict[str, None] = {}
        self.decoded = 0
        self.decoded_limit = decoded_limit
        self.max_rows = max_rows
        self.problems: dict[str, list[int]] = {}

    def add(self, batches: Iterable[Any], extra: dict[str, Any] | None = None) -> None:
        import pyarrow as pa

        classes: dict[str, list[str]] | None = None
        for batch in batches:
            if classes is None:
                classes = _class_names(batch.schema)
            # Neither reader checks offsets, indices or UTF-8: a damaged batch would crash the
            # process (a segmentation fault) below.
            try:
                batch.validate(full=True)
            except pa.ArrowException as exc:
                raise UploadRejected([_invalid(batch, exc)]) from None
            self.decoded += _decoded_bytes(batch)
            if self.decoded > self.decoded_limit:
                raise UploadRejected([_too_large(self.decoded_limit)])
            n = len(self.table.records)
            if n + batch.num_rows > self.max_rows:
                raise UploadRejected(
                    [
                        f"The file has more than {self.max_rows:,} rows; "
                        f"the limit is {self.max_rows:,} rows."
                    ]
                )
            names = batch.schema.names
            if len(set(names)) != len(names):  # (a row dict would keep only one of them)
                dupes = sorted({c for c in names if names.count(c) > 1})
                raise UploadRejected([f"The table repeats the column(s) {', '.join(dupes)}."])
            self.columns.update(dict.fromkeys(names))
            if extra:
                self.columns.update(dict.fromkeys(k for k in extra if k not in self.columns))
            try:
                decoded = batch.to_pylist()
            except Exception as exc:  # noqa: BLE001  (a value Python cannot hold)
                raise UploadRejected([_unreadable(batch, exc)]) from None
            for number, row in enumerate(decoded, n + 1):
                for name, names in classes.items():
                    value = row.get(name)
                    if isinstance(value, int):
                        row[name] = names[value] if 0 <= value < len(names) else None
                found: set[str] = set()
                clean = _clean(row, found)
                for problem in found:
                    self.problems.setdefault(problem, []).append(number)
                if extra:
                    clean = {**extra, **clean}
                self.table.records.append((number, clean))

    def done(self) -> Table:
        errors = _problem_messages(self.problems, "row")
        if errors:
            raise UploadRejected(errors)
        self.table.columns = list(self.columns)
        return self.table


def _parquet(data: bytes, decoded_limit: int, max_rows: int) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, *_DAMAGED) as exc:
        raise UploadRejected([f"The file is not a readable Parquet file: {exc}"]) from None
    n_rows = parquet.metadata.num_rows
    if n_rows > max_rows:
        raise UploadRejected([f"The file has {n_rows:,} rows; the limit is {max_rows:,} rows."])
    rows = _Rows("parquet", decoded_limit, max_rows)
    try:
        rows.add(parquet.iter_batches(batch_size=BATCH_ROWS))
    except UploadRejected:
        raise
    except (pa.ArrowException, *_DAMAGED) as exc:
        raise UploadRejected([f"The Parquet file cannot be read: {exc}"]) from None
    return rows.done()


def _ipc_batches(source: Any, head: bytes) -> Iterator[Any]:
    """The record batches of an Arrow IPC file or stream (``head``: its first bytes)."""
    import pyarrow as pa

    if head[:6] == b"ARROW1":
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    else:
        yield from pa.ipc.open_stream(source)


def _arrow(data: bytes, decoded_limit: int, max_rows: int) -> Table:
    import pyarrow as pa

    rows = _Rows("arrow", decoded_limit, max_rows)
    try:
        rows.add(_ipc_batches(pa.BufferReader(data), data[:6]))
    except UploadRejected:
        raise
    except (pa.ArrowException, *_DAMAGED) as exc:
        raise UploadRejected([f"The file is not a readable Arrow file: {exc}"]) from None
    return rows.done()


def _zip(data: bytes, decoded_limit: int, max_rows: int) -> Table:
    """A zip of a folder saved with ``datasets``' ``save_to_disk``: its ``.arrow`` files in
    name order. A ``DatasetDict`` (one folder per split) adds each row's ``split``."""
    import pyarrow as pa

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _DAMAGED as exc:
        raise UploadRejected([f"The file is not a readable zip archive: {exc}."]) from None
    with archive:
        members = [
            name
            for name in archive.namelist()
            if name.endswith(".arrow")
            and not name.startswith("__MACOSX/")
            and not posixpath.basename(name).startswith(".")
        ]
        if not members:
            held = [n for n in archive.namelist() if not n.endswith("/")]
            raise UploadRejected(
                [
                    "The zip archive holds no .arrow file (a folder saved with datasets' "
                    f"save_to_disk); it holds: {list_some(held) or 'nothing'}."
                ]
            )
        # zipfile never decompresses a member past its declared size, so their sum bounds
        # what is read (a zip bomb is refused before any of it is decompressed).
        if sum(archive.getinfo(name).file_size for name in members) > decoded_limit:
            raise UploadRejected([_too_large(decoded_limit)])
        folders = {posixpath.dirname(name) for name in members}
        rows = _Rows("datasets", decoded_limit, max_rows)
        for name in sorted(members):
            folder = posixpath.dirname(name)
            extra = {"split": posixpath.basename(folder)} if len(folders) > 1 else None
            try:
                with archive.open(name) as head_file:
                    head = head_file.read(6)
                with archive.open(name) as member:
                    rows.add(_ipc_batches(pa.PythonFile(member, mode="r"), head), extra)
            except UploadRejected:
                raise
            except (RuntimeError, NotImplementedError) as exc:  # encrypted, or AES (method 99)
                raise UploadRejected(
                    [
                        f"{name} in the zip archive cannot be read: {exc}. Zip the folder again "
                        "without a password and with the usual (deflate) compression."
                    ]
                ) from None
            except (pa.ArrowException, *_DAMAGED) as exc:
                raise UploadRejected([f"{name} in the zip archive cannot be read: {exc}"]) from None
    return rows.done()


# --- values ---------------------------------------------------------------------------------


def _clean(value: Any, found: set[str]) -> Any:
    """``value`` as JSON the database can store: NaN from a table is a missing value (None),
    dates and times become ISO text, decimals text. Adds to ``found`` what cannot be stored:
    "nul" (a NUL character), "nonfinite" (NaN or Infinity written in JSON, Infinity in a
    table), "binary" (bytes)."""
    if isinstance(value, str):
        if "\x00" in value:
            found.add("nul")
        if _SURROGATE.search(value):
            found.add("surrogate")
        return value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            found.add("nonfinite")
        return value
    if isinstance(value, dict):
        return {_clean(str(k), found): _clean(v, found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, found) for v in value]
    if value is _CONSTANT:
        found.add("nonfinite")
        return None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        found.add("binary")
        return None
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return str(value)
    return str(value)


def _problem_messages(problems: dict[str, list[int]], unit: str) -> list[str]:
    Unit = unit.capitalize()
    messages = []
    if "nul" in problems:
        messages.append(
            f"{Unit}(s) {list_some(problems['nul'])} contain a NUL character, which the "
            "database cannot store. Remove it and upload the file again."
        )
    if "nonfinite" in problems:
        messages.append(_nonfinite_message(problems["nonfinite"], unit))
    if "surrogate" in problems:
        messages.append(_surrogate_message(problems["surrogate"], unit))
    if "binary" in problems:
        messages.append(
            f"{Unit}(s) {list_some(problems['binary'])} hold binary values, which cannot be "
            "item text or metadata; drop those columns and upload the file again."
        )
    return messages
