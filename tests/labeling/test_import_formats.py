"""The import formats (docs/platform.md, "Uploads"): TSV, a JSON array, Parquet, Arrow, a zipped
datasets folder and Label Studio tasks, through the entry points the page and the API use."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model

from labeling import suggestions
from labeling.imports import formats
from labeling.imports.parse import ImportLimits, UploadRejected, parse_upload
from labeling.imports.write import describe, import_file
from labeling.models import Assignment, Campaign, Item, Label

LABELS = ("negative", "positive")


def rejected(data: bytes, filename: str, **kwargs: Any) -> list[str]:
    with pytest.raises(UploadRejected) as info:
        parse_upload(data, filename, LABELS, **kwargs)
    return info.value.errors


def parquet_bytes(table: pa.Table, **kwargs: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kwargs)
    return sink.getvalue()


def saved_dataset(path: Path, splits: dict[str, dict[str, list[Any]]] | None = None) -> Path:
    """A folder written by datasets' save_to_disk: SST-2's shape, its label a ClassLabel."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(LABELS)),
            "idx": datasets.Value("int32"),
        }
    )
    splits = splits or {"train": {"sentence": ["Great", "Awful"], "label": [1, 0], "idx": [0, 1]}}
    if len(splits) == 1:
        (columns,) = splits.values()
        datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(path))
    else:
        datasets.DatasetDict(
            {name: datasets.Dataset.from_dict(c, features=features) for name, c in splits.items()}
        ).save_to_disk(str(path))
    return path


def zipped(folder: Path) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{folder.name}/{file.relative_to(folder)}")
    return sink.getvalue()


# --- delimited text -------------------------------------------------------------------------


def test_tsv_is_detected_from_the_name_and_from_the_content() -> None:
    data = b"id\ttext\tlabel\n1\tGreat, truly\tpositive\n2\tDull; slow\tnegative\n"
    for name in ("d.tsv", "d.txt", "upload", "d.csv"):
        up = parse_upload(data, name, LABELS)
        assert (up.format, up.text_column, up.gold_column) == ("tsv", "text", "label")
        assert [i.text for i in up.items] == ["Great, truly", "Dull; slow"]
        assert up.items[0].metadata == {"id": "1"}


def test_semicolon_csv_and_a_quoted_comma_in_the_header() -> None:
    up = parse_upload(b"text;label\nGood, fine;positive\n", "d.csv", LABELS)
    assert (up.format, up.items[0].text, up.items[0].gold) == ("csv", "Good, fine", "positive")
    up = parse_upload(b'"a;b",text\nx,Good\n', "d.csv", LABELS)
    assert up.columns == ["a;b", "text"]


def test_tsv_errors_keep_their_line_numbers() -> None:
    (msg,) = rejected(b"text\tlabel\nGood\tpositive\nBad\tmeh\n", "d.tsv")
    assert msg == "Gold labels not in the label set (negative, positive): 'meh' (line(s) 3)."


# --- JSON -----------------------------------------------------------------------------------


def test_a_json_array_of_objects_with_row_numbered_messages() -> None:
    rows = [{"text": "Good", "label": "positive", "n": [1, 2]}, {"text": "Bad", "stars": 1}]
    up = parse_upload(json.dumps(rows, indent=2).encode(), "d.json", LABELS)
    assert (up.format, up.unit, up.n_rows) == ("json", "row", 2)
    assert [(i.text, i.gold, i.metadata) for i in up.items] == [
        ("Good", "positive", {"n": [1, 2]}),
        ("Bad", None, {"stars": 1}),
    ]
    bad = [{"text": "a"}, {"text": "b", "label": "meh"}, {"text": 3}, [1]]
    errors = rejected(json.dumps(bad).encode(), "d.json")
    assert errors == [
        "Row(s) 4 of the JSON array are not JSON objects.",
    ]
    errors = rejected(json.dumps(bad[:3]).encode(), "d.json")
    assert errors == [
        "The text on row(s) 3 is not a string.",
        "Gold labels not in the label set (negative, positive): 'meh' (row(s) 2).",
    ]


def test_json_arrays_refuse_nan_nul_and_broken_syntax_precisely() -> None:
    (msg,) = rejected(b'[{"text": "a"}, {"text": "b", "x": NaN}]', "d.json")
    assert msg.startswith("Row(s) 2 hold NaN or Infinity")
    (msg,) = rejected(b'[{"text": "a\\u0000"}]', "d.json")
    assert msg.startswith("Row(s) 1 contain a NUL character")
    (msg,) = rejected(b'[\n{"text": "a"},\n{"text": }\n]', "d.json")
    assert msg.startswith("The file is not valid JSON: ") and "(line 3, column 10)" in msg


def test_a_json_file_may_hold_json_lines_or_one_object() -> None:
    assert parse_upload(b'{"text": "a"}\n{"text": "b"}\n', "d.json", LABELS).format == "jsonl"
    up = parse_upload(b'{\n  "text": "only"\n}\n', "d.json", LABELS)
    assert [i.text for i in up.items] == ["only"]
    assert parse_upload(b'[{"text": "a"}]', "d.jsonl", LABELS).format == "json"


# --- Parquet, Arrow, datasets ---------------------------------------------------------------


def test_parquet_with_metadata_missing_values_and_dates() -> None:
    import datetime as dt

    table = pa.table(
        {
            "review": ["Great", "Awful", "Great"],
            "sentiment": ["positive", "negative", None],
            "score": [0.5, float("nan"), 1.0],
            "day": [dt.date(2024, 1, 2)] * 3,
        }
    )
    up = parse_upload(parquet_bytes(table), "d.parquet", LABELS)
    assert (up.format, up.unit, up.text_column, up.gold_column) == (
        "parquet",
        "row",
        "review",
        "sentiment",
    )
    assert [(i.text, i.gold, i.lines) for i in up.items] == [
        ("Great", "positive", (1, 3)),
        ("Awful", "negative", (2,)),
    ]
    assert up.items[1].metadata == {"score": None, "day": "2024-01-02"}
    (msg,) = rejected(parquet_bytes(pa.table({"text": ["a", "b"], "label": ["x", "y"]})), "p.pq")
    assert msg == (
        "Gold labels not in the label set (negative, positive): 'x' (row(s) 1), 'y' (row(s) 2)."
    )


def test_parquet_is_read_in_batches_within_the_row_and_size_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(formats, "BATCH_ROWS", 7)
    texts = [f"text number {i}" for i in range(50)]
    data = parquet_bytes(pa.table({"text": texts}), row_group_size=10)
    up = parse_upload(data, "d.parquet", LABELS)
    assert [i.text for i in up.items] == texts and up.items[-1].lines == (50,)
    (msg,) = rejected(data, "d.parquet", limits=ImportLimits(max_rows=20))
    assert msg == "The file has 50 rows; the limit is 20 rows."
    # Compresses well, decodes to far more than four times the byte limit.
    big = parquet_bytes(pa.table({"text": ["x" * 10_000] * 200}), compression="zstd")
    (msg,) = rejected(big, "d.parquet", limits=ImportLimits(max_bytes=len(big) + 10))
    assert "once decompressed" in msg


def test_a_datasets_arrow_file_maps_class_labels_to_their_names(tmp_path: Path) -> None:
    folder = saved_dataset(tmp_path / "sst2")
    (arrow,) = folder.glob("*.arrow")
    up = parse_upload(arrow.read_bytes(), arrow.name, LABELS)
    assert (up.format, up.text_column, up.gold_column) == ("arrow", "sentence", "label")
    assert [(i.text, i.gold, i.metadata) for i in up.items] == [
        ("Great", "positive", {"idx": 0}),
        ("Awful", "negative", {"idx": 1}),
    ]


def test_an_arrow_ipc_file_written_by_pyarrow() -> None:
    table = pa.table({"text": ["a", "b"]})
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert [i.text for i in parse_upload(sink.getvalue(), "t.arrow", LABELS).items] == ["a", "b"]


def test_a_zipped_save_to_disk_folder_and_a_dataset_dict(tmp_path: Path) -> None:
    up = parse_upload(zipped(saved_dataset(tmp_path / "one")), "one.zip", LABELS)
    assert up.format == "datasets" and [i.gold for i in up.items] == ["positive", "negative"]
    splits = {
        "test": {"sentence": ["Meh"], "label": [-1], "idx": [9]},
        "train": {"sentence": ["Great", "Awful"], "label": [1, 0], "idx": [0, 1]},
    }
    up = parse_upload(zipped(saved_dataset(tmp_path / "dd", splits)), "dd.zip", LABELS)
    assert [(i.text, i.gold, i.metadata["split"]) for i in up.items] == [
        ("Meh", None, "test"),  # -1: datasets' "no label"
        ("Great", "positive", "train"),
        ("Awful", "negative", "train"),
    ]
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr("notes.txt", "hello")
    (msg,) = rejected(sink.getvalue(), "x.zip")
    assert msg == (
        "The zip archive holds no .arrow file (a folder saved with datasets' save_to_disk); "
        "it holds: notes.txt."
    )


# --- formats a file claims but does not have ------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "claimed", "found"),
    [
        (b"text,label\na,positive\n", "d.parquet", "Parquet", "CSV text"),
        (b"text\tlabel\na\tpositive\n", "d.arrow", "Arrow", "TSV (tab-separated) text"),
        (b'{"text": "a"}\n', "d.zip", "a zip archive", "JSON Lines"),
        (b"text,label\na,positive\n", "d.json", "JSON", "CSV text"),
        (b"text,label\na,positive\n", "d.jsonl", "JSON Lines", "CSV text"),
        (b'{"text": "a"}\n{"text": "b"}\n', "d.csv", "CSV", "JSON Lines"),
        (b'[{"text": "a"}]', "d.tsv", "TSV (tab-separated)", "JSON"),
        (b"PAR1\x00\x01binary", "d.csv", "CSV", "Parquet"),
        (b"PK\x03\x04\x00\x00", "d.jsonl", "JSON Lines", "a zip archive"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00" * 3, "d.parquet", "Parquet", "binary data"),
    ],
)
def test_a_format_the_file_claims_but_does_not_have(
    data: bytes, name: str, claimed: str, found: str
) -> None:
    (msg,) = rejected(data, name)
    assert msg.startswith(f"The file is named {name!r} but is not {claimed}: it looks like {found}")
    assert "UTF-8" not in msg.replace("(not UTF-8 text)", "")


def test_a_broken_parquet_file_is_said_so() -> None:
    (msg,) = rejected(b"PAR1" + b"\x00" * 40 + b"PAR1", "d.parquet")
    assert msg.startswith("The file is not a readable Parquet file")


# --- Label Studio ---------------------------------------------------------------------------


def choice(label: str, **extra: Any) -> dict[str, Any]:
    """A ``choices`` result as Label Studio writes it (its "Label Studio JSON format of
    annotated tasks")."""
    return {
        "id": "r1",
        "from_name": "sentiment",
        "to_name": "text",
        "type": "choices",
        "value": {"choices": [label]},
        **extra,
    }


def label_studio_tasks() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "data": {"text": "Loved it", "source": "web"},
            "annotations": [
                {
                    "id": 11,
                    "result": [choice("Positive")],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "completed_by": 3,
                }
            ],
            "predictions": [{"model_version": "v1", "score": 0.87, "result": [choice("positive")]}],
        },
        {
            "id": 2,
            "data": {"text": "Hated it"},
            "annotations": [
                {"id": 12, "result": [choice("positive")], "was_cancelled": True},
                {"id": 13, "result": [choice("negative")], "completed_by": {"id": 4}},
                {"id": 14, "result": [choice("positive")], "completed_by": 5},
            ],
            "predictions": [],
        },
        {
            "id": 3,
            "data": {"text": "No idea yet"},
            "annotations": [],
            "predictions": [{"model_version": "v1", "score": 0.55, "result": [choice("negative")]}],
        },
        {"id": 4, "data": {"text": "Plain task"}},
    ]


@pytest.fixture
def campaign(db: Any) -> Campaign:
    user = get_user_model().objects.create_user("manager", password="x")
    return Campaign.objects.create(name="Sentiment", created_by=user, labels=list(LABELS))


def test_label_studio_annotations_become_imported_labels_and_predictions_suggestions(
    campaign: Campaign,
) -> None:
    data = json.dumps(label_studio_tasks(), indent=1).encode()
    out = import_file(campaign, campaign.created_by, data, "project-1-at-2024.json")
    assert (out.parsed.format, out.n_created, out.n_labels) == ("labelstudio", 4, 2)
    items = {i.text: i for i in Item.objects.filter(campaign=campaign)}
    assert items["Loved it"].metadata == {"source": "web"}
    assert (items["Loved it"].predicted, items["Loved it"].confidence) == (1, 0.87)
    assert (items["No idea yet"].predicted, items["No idea yet"].confidence) == (0, 0.55)
    assert items["Plain task"].predicted is None and items["Hated it"].predicted is None
    # The card falls back to them while the learner has no suggestion of its own.
    campaign.show_suggestions = Campaign.Suggestions.ALL
    shown = suggestions.for_item(campaign, items["No idea yet"], None)
    assert shown is not None and (shown.label, shown.percent) == ("negative", 55)
    # Several annotations: the first (not cancelled) one is the label, all are kept.
    assert items["Hated it"].metadata == {"imported_labels": ["negative", "positive"]}

    imported = get_user_model().objects.get(username="imported")
    assert not imported.has_usable_password()
    labels = {(lab.item.text, lab.value) for lab in Label.objects.select_related("item")}
    assert labels == {("Loved it", "positive"), ("Hated it", "negative")}
    assert set(Label.objects.values_list("annotator", flat=True)) == {imported.pk}
    assert Assignment.objects.filter(annotator=imported, state="labeled").count() == 2
    campaign.refresh_from_db()
    assert campaign.n_fully_labeled == 2 and campaign.label_version == 1
    assert "2 label(s) by 'imported'; 2 with a prediction" in describe(out)

    # The same file again changes nothing; a different label for a known text is refused.
    again = import_file(campaign, campaign.created_by, data, "again.json")
    assert (again.n_created, again.n_labels, Label.objects.count()) == (0, 0, 2)
    tasks = label_studio_tasks()[:1]
    tasks[0]["annotations"][0]["result"] = [choice("negative")]
    with pytest.raises(UploadRejected) as info:
        import_file(campaign, campaign.created_by, json.dumps(tasks).encode(), "changed.json")
    assert info.value.errors == [
        "Texts already in the campaign have a different imported label: "
        "row 1 ('positive' before, 'negative' now)."
    ]
    assert Label.objects.count() == 2 and Item.objects.count() == 4


def test_label_studio_labels_outside_the_label_set_or_several_are_refused() -> None:
    tasks = label_studio_tasks()
    tasks[1]["annotations"][1]["result"] = [choice("neutral")]
    tasks[2]["predictions"][0]["result"] = [choice("mixed")]
    tasks[3]["annotations"] = [{"result": [choice("positive") | {"value": {"choices": LABELS}}]}]
    errors = rejected(json.dumps(tasks).encode(), "tasks.json")
    assert errors == [
        "Annotated or predicted labels not in the label set (negative, positive): "
        "'neutral' (row(s) 2), 'mixed' (row(s) 3).",
        "Row(s) 4 choose several labels in one annotation or prediction; an item here takes "
        "one label.",
    ]


def test_label_studio_tasks_as_json_lines_and_duplicates_that_disagree() -> None:
    tasks = label_studio_tasks()[:2]
    tasks[1]["data"]["text"] = "Loved it"
    data = "\n".join(json.dumps(t) for t in tasks).encode()
    (msg,) = rejected(data, "tasks.jsonl")
    assert msg == (
        "The same text has different annotated labels on lines 1 and 2 ('positive' vs 'negative')."
    )


def test_a_parquet_and_a_label_studio_file_through_the_api(manager: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.support.clients import api_as

    campaign = Campaign.objects.create(name="Reviews", created_by=manager, labels=list(LABELS))
    url = f"/api/v1/campaigns/{campaign.pk}/imports/"
    client = api_as(manager)
    table = pa.table({"text": ["Great", "Awful"], "label": ["positive", "negative"]})
    upload = SimpleUploadedFile("reviews.parquet", parquet_bytes(table))
    body = client.post(url, {"file": upload}, format="multipart").json()
    assert body["status"] == "done" and body["result"]["format"] == "parquet"
    assert body["result"]["n_created"] == 2 and body["result"]["n_gold"] == 2
    upload = SimpleUploadedFile("tasks.json", json.dumps(label_studio_tasks()).encode())
    body = client.post(url, {"file": upload}, format="multipart").json()
    assert body["result"]["format"] == "labelstudio" and body["result"]["n_labels"] == 2
    upload = SimpleUploadedFile("fake.parquet", b"text\nhello\n")
    response = client.post(url, {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        "The file is named 'fake.parquet' but is not Parquet: it looks like CSV text. Rename "
        "it to match its content, or export it again as Parquet."
    ]


@pytest.mark.django_db
def test_json_values_the_database_cannot_store_are_refused_in_every_json_shape(
    campaign: Campaign,
) -> None:
    """A lone surrogate escape (``\\ud800``: no UTF-8 encoding, so the database write failed
    with a 500) and a number too large for a float (``1e400``: Infinity) are refused with
    their rows, in JSON Lines as in a JSON array, in text, metadata values and keys."""
    for data, filename in [
        (b'{"text": "a\\ud800"}\n', "s.jsonl"),
        (b'[{"text": "a\\udfff b"}]', "s.json"),
        (b'{"text": "a", "note": ["x\\ud800"]}\n', "m.jsonl"),
        (b'{"text": "a", "k\\ud800": 1}\n', "k.jsonl"),
    ]:
        errors = rejected(data, filename)
        assert len(errors) == 1 and "(s) 1 hold a lone surrogate" in errors[0], errors
        with pytest.raises(UploadRejected):
            import_file(campaign, campaign.created_by, data, filename)
    errors = rejected(b'{"text": "a", "x": 1e400}\n', "big.jsonl")
    assert errors == [formats._nonfinite_message([1], "line")]
    assert not Item.objects.filter(campaign=campaign).exists()


def test_a_table_with_a_repeated_column_name_is_refused() -> None:
    """Two Parquet columns of one name: one used to overwrite the other (silent data loss)."""
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["text", "text"])
    errors = rejected(parquet_bytes(table), "dupes.parquet")
    assert errors == ["The table repeats the column(s) text."]


def test_a_zip_that_decompresses_past_the_limit_is_refused_before_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A zip bomb: one highly compressible .arrow member. Its declared size is checked before
    anything is decompressed (zipfile never reads past it), not after a batch is in memory."""
    table = pa.table({"text": ["x" * 2_000_000]})
    stream = pa.BufferOutputStream()
    with pa.ipc.new_stream(stream, table.schema) as writer:
        writer.write_table(table)
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/data-00000-of-00001.arrow", stream.getvalue().to_pybytes())
    data = sink.getvalue()
    assert len(data) < 20_000

    def never(*args: Any) -> None:
        raise AssertionError("the member was read")

    monkeypatch.setattr(formats, "_ipc_batches", never)
    (msg,) = rejected(data, "bomb.zip", limits=ImportLimits(max_bytes=100_000))
    assert "once decompressed" in msg and "400,000" in msg


@pytest.mark.parametrize("container", ["parquet", "arrow"])
def test_a_dictionary_encoded_bomb_is_refused_before_its_rows_are_made(container: str) -> None:
    """A one-value dictionary of 100 kB over 3,000 rows: a file of a few hundred bytes whose
    batch ``nbytes`` counts the value once, but whose rows are 300 MB of Python strings (it
    used to be read into memory, then refused for the long texts)."""
    table = pa.table({"text": pa.array(["x" * 100_000] * 3000).dictionary_encode()})
    if container == "parquet":
        data = parquet_bytes(table, compression="zstd")
    else:
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue()
    assert len(data) < 200_000
    (msg,) = rejected(data, f"bomb.{container}", limits=ImportLimits(max_bytes=1_000_000))
    assert "once decompressed" in msg
    # An honest dictionary-encoded column (a category) still reads.
    small = pa.table(
        {"text": ["a", "b", "a"], "kind": pa.array(["x", "y", "x"]).dictionary_encode()}
    )
    up = parse_upload(parquet_bytes(small), "ok.parquet", LABELS)
    assert [i.metadata for i in up.items] == [{"kind": "x"}, {"kind": "y"}]


@pytest.mark.parametrize("container", ["parquet", "arrow"])
def test_values_python_cannot_hold_are_refused_not_a_500(container: str) -> None:
    """Neither reader checks that a string column is UTF-8: turning it into rows raised
    UnicodeDecodeError, past the upload's checks (a 500, or a failed import job)."""
    offsets = pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00")
    text = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok\xff\xfe")])
    table = pa.table({"text": pa.array(["a", "b"]), "note": text})
    if container == "parquet":
        data = parquet_bytes(table)
    else:
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue()
    (msg,) = rejected(data, f"bad.{container}")
    assert (
        msg
        == "The column(s) note hold text that is not valid UTF-8. Write the file again as UTF-8."
    )
    # Values no Python object holds: a date out of range, an unknown time zone.
    for column in (
        pa.array([2**30], pa.date32()),
        pa.array([0], pa.timestamp("s", tz="Mars/Olympus")),
    ):
        table = pa.table({"text": ["a"], "when": column})
        if container == "parquet":
            data = parquet_bytes(table)
        else:
            sink = io.BytesIO()
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            data = sink.getvalue()
        (msg,) = rejected(data, f"bad.{container}")
        assert msg.startswith("The column(s) when hold values that cannot be read ("), msg


def test_a_csv_header_that_starts_with_a_bracket_is_csv() -> None:
    """``[id],text``: it used to be refused as "looks like JSON" (or, unnamed, as invalid
    JSON); a file that starts like a JSON array still reads as JSON."""
    for name in ("x.csv", "x.txt"):
        up = parse_upload(b"[id],text\n1,hello\n", name, LABELS)
        assert up.format == "csv" and up.items[0].metadata == {"[id]": "1"}
    up = parse_upload(b"[id]\ttext\n1\thello\n", "x.tsv", LABELS)
    assert up.format == "tsv" and up.items[0].text == "hello"
    assert parse_upload(b'[\n  {"text": "a"}\n]\n', "x.txt", LABELS).format == "json"
    (msg,) = rejected(b'[\n  {"text": "a"}\n]\n', "x.csv")
    assert msg.startswith("The file is named 'x.csv' but is not CSV: it looks like JSON.")
    assert rejected(b"[1, 2]", "x.txt") == ["Row(s) 1, 2 of the JSON array are not JSON objects."]
    (msg,) = rejected(b"[{'text': 'a'}]", "x.json")
    assert msg.startswith("The file is not valid JSON: Expecting property name")


@pytest.mark.parametrize(
    ("flag", "method", "reason"),
    [(1, None, "is encrypted, password required"), (0, 99, "compression method is not supported")],
)
def test_an_encrypted_zip_is_refused_not_a_500(flag: int, method: int | None, reason: str) -> None:
    """A password (ZipCrypto: RuntimeError) or WinZip's AES (method 99: NotImplementedError)
    escaped the reader's checks."""
    import struct

    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr("d/data-00000-of-00001.arrow", b"\xff\xff\xff\xff" + b"\x00" * 20)
    data = bytearray(sink.getvalue())
    central = data.find(b"PK\x01\x02")
    data[6:8] = data[central + 8 : central + 10] = struct.pack("<H", flag)
    if method is not None:
        data[8:10] = data[central + 10 : central + 12] = struct.pack("<H", method)
    (msg,) = rejected(bytes(data), "locked.zip")
    assert msg.startswith("d/data-00000-of-00001.arrow in the zip archive cannot be read: ")
    assert reason in msg and "without a password" in msg


def test_damaged_arrow_and_zip_files_are_refused_not_a_crash() -> None:
    """Found by flipping bytes: string offsets past the data (neither reader validates a
    batch; to_pylist crashed the process with a segmentation fault), a deflate stream that
    zlib refuses (zlib.error), a zip needing an unknown version (NotImplementedError)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, pa.schema([("text", pa.string())])) as writer:
        writer.write_batch(pa.record_batch([pa.array(["ab"])], names=["text"]))
    offsets_and_data = b"\x00\x00\x00\x00\x02\x00\x00\x00ab"  # offsets 0, 2; then "ab"
    assert sink.getvalue().count(offsets_and_data) == 1
    damaged = sink.getvalue().replace(offsets_and_data, b"\x00\x00\x00\x00\x00\x00\x10\x00ab")
    (msg,) = rejected(damaged, "bad.arrow")  # (an offset 1 MiB into 2 bytes)
    assert msg.startswith("The file is damaged: column(s) text cannot be read ("), msg

    name = "d/data-00000-of-00001.arrow"
    zipped_sink = io.BytesIO()
    with zipfile.ZipFile(zipped_sink, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, b"\xff\xff\xff\xff" + b"\x00" * 200)
    data = bytearray(zipped_sink.getvalue())
    data[30 + len(name)] = 0xFF  # the first byte of the deflate stream: an invalid block
    (msg,) = rejected(bytes(data), "d.zip")
    assert msg.startswith(f"{name} in the zip archive cannot be read: "), msg
    data = bytearray(zipped_sink.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 6] = 99  # "version needed to extract": 9.9
    (msg,) = rejected(bytes(data), "d.zip")
    assert "cannot be read" in msg or "not a readable zip archive" in msg, msg
