"""The label export's formats (docs/platform.md, "Label export"): what each holds, read back
with the tools of its ecosystem, and a round trip through Carve's own importer."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.exports import rows as export_rows
from labeling.models import Campaign, Decision, Item, Label, ModelVersion, Upload, text_key
from tests.support.clients import api_as

pytestmark = pytest.mark.django_db

ITEMS = [
    {"text": '=HYPERLINK("http://x")', "label": "positive", "source": "a", "stars": 5},
    {"text": "plain text", "source": "b", "stars": 2, "tags": ["x", "y"]},
    {"text": "third", "source": "c", "stars": 1},
    {"text": "never labeled", "source": "d", "stars": 3},
]


@pytest.fixture
def other(django_user_model: Any, campaign: Campaign) -> Any:
    user = django_user_model.objects.create_user("second", password="pw-second")
    campaign.annotators.add(user)
    return user


@pytest.fixture
def labeled(campaign: Campaign, manager: Any, annotator: Any, other: Any) -> Campaign:
    """Four items from JSON Lines with metadata: the first decided by the manager after its
    annotators disagreed (one comment starts like a formula), the second agreed on by two,
    the third labeled once and in the evaluation set, the fourth never labeled. Model
    version 2 is the latest finished one and predicted every item but the last."""
    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0, evaluation_size=0)
    campaign.refresh_from_db()
    # made here rather than imported, so that these tests do not depend on the importer
    upload = Upload.objects.create(
        campaign=campaign,
        filename="d.jsonl",
        uploaded_by=manager,
        text_column="text",
        gold_column="label",
        n_rows=4,
        n_created=4,
        n_blank=0,
        n_duplicates=0,
    )
    items = [
        Item.objects.create(
            campaign=campaign,
            upload=upload,
            text=row["text"],
            text_sha256=text_key(row["text"]),
            gold=row.get("label", ""),
            metadata={k: v for k, v in row.items() if k not in ("text", "label")},
            position=position,
        )
        for position, row in enumerate(ITEMS)
    ]
    Label.objects.create(item=items[0], annotator=annotator, value="positive", comment="@risky")
    Label.objects.create(item=items[0], annotator=other, value="negative")
    Decision.objects.create(item=items[0], value="negative", decided_by=manager)
    Decision.objects.create(item=items[0], value="positive", decided_by=manager)  # the latest
    Label.objects.create(item=items[1], annotator=annotator, value="negative", comment="sure")
    Label.objects.create(item=items[1], annotator=other, value="negative")
    Label.objects.create(item=items[2], annotator=annotator, value="positive")
    undone = Label.objects.create(item=items[3], annotator=annotator, value="positive")
    Label.objects.filter(pk=undone.pk).update(undone_at=undone.created_at)
    Item.objects.filter(pk=items[2].pk).update(evaluation=True)
    for item, (cls, conf) in zip(items[:3], [(1, 0.9), (0, 0.8), (0, 0.55)], strict=True):
        Item.objects.filter(pk=item.pk).update(predicted=cls, confidence=conf)
    ModelVersion.objects.create(campaign=campaign, number=2, status="done")
    ModelVersion.objects.create(campaign=campaign, number=3, status="failed")
    return campaign


def _get(manager: Any, campaign: Campaign, **query: str) -> Any:
    response = api_as(manager).get(f"/api/v1/campaigns/{campaign.pk}/export/", query)
    assert response.status_code == 200, response.content
    return response


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def _ids(campaign: Campaign) -> list[int]:
    return list(campaign.items.order_by("position").values_list("pk", flat=True))


# --- content, format by format ---------------------------------------------------------------


def test_jsonl_per_item_has_metadata_final_labels_raw_labels_flags_and_the_prediction(
    labeled: Campaign, manager: Any
) -> None:
    response = _get(manager, labeled, **{"as": "jsonl", "rows": "items", "items": "all"})
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in _body(response).splitlines()]
    ids = _ids(labeled)
    assert [line["item"] for line in lines] == ids
    first, second, third, fourth = lines
    assert first["text"] == '=HYPERLINK("http://x")'  # JSON is not a spreadsheet: as it is
    assert first["metadata"] == {"source": "a", "stars": 5}
    assert second["metadata"] == {"source": "b", "stars": 2, "tags": ["x", "y"]}
    assert (first["final_label"], first["final_source"]) == ("positive", "decision")
    assert (second["final_label"], second["final_source"]) == ("negative", "consensus")
    assert (third["final_label"], third["final_source"]) == ("positive", "consensus")
    assert (fourth["final_label"], fourth["final_source"]) == ("", "")
    assert [(g["annotator"], g["label"], g["comment"]) for g in first["labels"]] == [
        ("annotator", "positive", "@risky"),
        ("second", "negative", ""),
    ]
    assert all(g["created_at"] for g in first["labels"])
    assert fourth["labels"] == []  # its one label was undone
    assert (first["gold"], first["is_gold"], second["gold"], second["is_gold"]) == (
        "positive",
        True,
        "",
        False,
    )
    assert [line["evaluation"] for line in lines] == [False, False, True, False]
    assert [(x["predicted"], x["confidence"], x["model_version"]) for x in lines] == [
        ("positive", 0.9, 2),
        ("negative", 0.8, 2),
        ("negative", 0.55, 2),
        ("", None, None),
    ]


def test_jsonl_per_label_keeps_the_old_fields_and_adds_the_items(
    labeled: Campaign, manager: Any
) -> None:
    lines = [json.loads(x) for x in _body(_get(manager, labeled, **{"as": "jsonl"})).splitlines()]
    assert len(lines) == 5  # the active labels of the three labeled items
    assert list(lines[0])[:6] == ["item", "text", "label", "annotator", "comment", "created_at"]
    assert (lines[0]["label"], lines[0]["final_label"], lines[0]["metadata"]["source"]) == (
        "positive",
        "positive",
        "a",
    )


def test_csv_per_label_is_spreadsheet_safe_with_meta_columns(
    labeled: Campaign, manager: Any
) -> None:
    response = _get(manager, labeled)
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(_body(response).decode())))
    header = list(rows[0])
    assert header[:6] == ["item", "text", "label", "annotator", "comment", "created_at"]
    assert {"meta.source", "meta.stars", "meta.tags", "final_label", "model_version"} <= set(header)
    assert len(rows) == 5
    first = rows[0]
    assert first["text"] == '\'=HYPERLINK("http://x")' and first["comment"] == "'@risky"
    assert (first["meta.source"], first["meta.stars"], first["meta.tags"]) == ("a", "5", "")
    assert rows[2]["meta.tags"] == '["x", "y"]'  # not a string: as JSON
    assert (first["final_label"], first["final_source"], first["is_gold"]) == (
        "positive",
        "decision",
        "true",
    )
    assert (first["predicted"], first["confidence"], first["model_version"]) == (
        "positive",
        "0.9",
        "2",
    )
    assert [r["evaluation"] for r in rows] == ["false"] * 4 + ["true"]


def test_csv_per_item_with_all_items_has_the_labels_as_one_json_cell(
    labeled: Campaign, manager: Any
) -> None:
    text = _body(_get(manager, labeled, rows="items", items="all")).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["item"]) for r in rows] == _ids(labeled)
    assert [len(json.loads(r["labels"])) for r in rows] == [2, 2, 1, 0]
    assert rows[3]["final_label"] == "" and rows[3]["predicted"] == ""


def test_parquet_reads_back_with_pyarrow_in_one_row_group_per_chunk(
    labeled: Campaign, manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_rows, "CHUNK_ITEMS", 2)
    response = _get(manager, labeled, **{"as": "parquet", "rows": "items", "items": "all"})
    assert response["Content-Disposition"].endswith('.parquet"')
    parquet = pq.ParquetFile(io.BytesIO(_body(response)))
    assert parquet.metadata.num_row_groups == 2
    table = parquet.read()
    assert table.column("item").to_pylist() == _ids(labeled)
    assert table.column("meta.stars").to_pylist() == ["5", "2", "1", "3"]
    assert table.column("final_label").to_pylist() == ["positive", "negative", "positive", ""]
    assert table.column("final_source").to_pylist() == ["decision", "consensus", "consensus", ""]
    labels = table.column("labels").to_pylist()
    assert [g["comment"] for g in labels[0]] == ["@risky", ""]
    assert table.schema.field("labels").type.value_type.field("created_at").type == pa.timestamp(
        "us", tz="UTC"
    )
    assert table.column("confidence").to_pylist() == [0.9, 0.8, 0.55, None]
    assert table.column("model_version").to_pylist() == [2, 2, 2, None]
    assert table.column("is_gold").to_pylist() == [True, False, False, False]
    per_label = pq.read_table(io.BytesIO(_body(_get(manager, labeled, **{"as": "parquet"}))))
    assert per_label.num_rows == 5
    assert per_label.column("annotator").to_pylist()[:2] == ["annotator", "second"]


def test_the_hugging_face_folder_loads_with_datasets_and_a_class_label(
    labeled: Campaign, manager: Any, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    response = _get(manager, labeled, **{"as": "hf", "items": "all"})
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(_body(response))) as archive:
        archive.extractall(tmp_path)
    folder = tmp_path / f"campaign-{labeled.pk}-labels"
    ds = datasets.load_from_disk(str(folder))
    assert ds.features["final_label"].names == ["negative", "positive"]
    assert ds.num_rows == 4
    assert ds["final_label"] == [1, 0, 1, -1]
    assert ds.features["final_label"].int2str(0) == "negative"
    assert ds["meta.source"] == ["a", "b", "c", "d"]
    assert [len(given) for given in ds["labels"]] == [2, 2, 1, 0]
    assert ds[0]["labels"][0]["annotator"] == "annotator"
    assert ds["evaluation"] == [False, False, True, False]
    assert ds["predicted"][:3] == ["positive", "negative", "negative"]
    # nothing is left behind under CARVE_DATA_DIR/exports
    from django.conf import settings

    assert list((Path(settings.CARVE_DATA_DIR) / "exports").iterdir()) == []


def test_label_studio_tasks_have_data_annotations_and_predictions(
    labeled: Campaign, manager: Any, annotator: Any
) -> None:
    response = _get(manager, labeled, **{"as": "labelstudio"})
    assert response["Content-Type"].startswith("application/json")
    tasks = json.loads(_body(response))
    assert len(tasks) == 3  # the labeled items
    first = tasks[0]
    assert set(first) == {"data", "annotations", "predictions", "meta"}
    assert first["data"] == {"text": '=HYPERLINK("http://x")', "source": "a", "stars": 5}
    choice = {
        "from_name": "sentiment",
        "to_name": "text",
        "type": "choices",
        "value": {"choices": ["positive"]},
    }
    assert first["annotations"][0]["result"] == [
        choice,
        {
            "from_name": "comment",
            "to_name": "text",
            "type": "textarea",
            "value": {"text": ["@risky"]},
        },
    ]
    assert first["annotations"][0]["completed_by"] == annotator.pk
    assert first["annotations"][0]["created_at"]
    assert first["predictions"] == [{"model_version": "2", "score": 0.9, "result": [choice]}]
    assert first["meta"]["final_label"] == "positive"
    assert first["meta"]["final_source"] == "decision"
    assert first["meta"]["carve_item"] == _ids(labeled)[0]
    every = json.loads(_body(_get(manager, labeled, **{"as": "labelstudio", "items": "all"})))
    assert [task["meta"]["carve_item"] for task in every] == _ids(labeled)
    assert (every[3]["annotations"], every[3]["predictions"]) == ([], [])


def test_an_empty_campaign_exports_empty_files(campaign: Campaign, manager: Any) -> None:
    assert json.loads(_body(_get(manager, campaign, **{"as": "labelstudio"}))) == []
    table = pq.read_table(io.BytesIO(_body(_get(manager, campaign, **{"as": "parquet"}))))
    assert table.num_rows == 0 and "final_label" in table.column_names
    assert _body(_get(manager, campaign)).decode().startswith("item,text,label,")


def test_bad_options_are_refused_and_annotators_get_403(
    labeled: Campaign, manager: Any, annotator: Any
) -> None:
    url = f"/api/v1/campaigns/{labeled.pk}/export/"
    api = api_as(manager)
    assert api.get(url, {"as": "xlsx"}).status_code == 400
    assert api.get(url, {"rows": "cells"}).status_code == 400
    assert api.get(url, {"items": "some"}).status_code == 400
    assert api_as(annotator).get(url, {"as": "parquet"}).status_code == 403


# --- constant memory: three queries a chunk ------------------------------------------------


def test_records_come_in_chunks_of_three_queries(labeled: Campaign) -> None:
    plan = export_rows.plan(labeled, labeled_only=False)
    with CaptureQueriesContext(connection) as queries:
        got = [[r.position for r in chunk] for chunk in export_rows.chunks(plan, size=3)]
    assert got == [[0, 1, 2], [3]]
    assert len(queries) == 2 * 3 + 1  # the last query finds no more items


# --- round trip through Carve's importer ---------------------------------------------------


def _fresh(manager: Any) -> Campaign:
    return Campaign.objects.create(
        name="Round trip", created_by=manager, gold_rate=0, evaluation_size=0
    )


def test_a_jsonl_export_imports_into_a_new_campaign(labeled: Campaign, manager: Any) -> None:
    from labeling.imports.write import import_file

    body = _body(_get(manager, labeled, **{"as": "jsonl", "rows": "items", "items": "all"}))
    target = _fresh(manager)
    import_file(target, manager, body, "export.jsonl")
    before = list(labeled.items.order_by("position").values_list("text", "metadata", "gold"))
    after = list(target.items.order_by("position").values_list("text", "metadata", "gold"))
    assert [a[0] for a in after] == [b[0] for b in before]
    # the export's "gold" column is read as the gold label again; its nested metadata comes
    # back under "metadata", the other columns as metadata of their own
    assert [a[2] for a in after] == [b[2] for b in before]
    assert [a[1]["metadata"] for a in after] == [b[1] for b in before]


def test_a_csv_export_imports_into_a_new_campaign(labeled: Campaign, manager: Any) -> None:
    from labeling.imports.write import import_file

    body = _body(_get(manager, labeled, rows="items", items="all"))
    target = _fresh(manager)
    import_file(target, manager, body, "export.csv")
    before = list(labeled.items.order_by("position"))
    after = list(target.items.order_by("position"))
    # a text that a spreadsheet would run keeps its protective quote
    assert [a.text for a in after] == ["'" + before[0].text, *(b.text for b in before[1:])]
    assert [a.gold for a in after] == [b.gold for b in before]
    for a, b in zip(after, before, strict=True):
        for key, value in b.metadata.items():
            assert a.metadata[f"meta.{key}"] == export_rows.meta_text(value)


def test_csv_metadata_numbers_stay_numbers_and_metadata_text_is_spreadsheet_safe(
    campaign: Campaign, manager: Any
) -> None:
    """A negative number in the metadata is no formula: it used to get the leading ``'``
    (and came back from a re-import as the text "'-3"); text values, nested values and
    comments still get it."""
    metadata = {"delta": -3, "ratio": -0.5, "note": "-rm", "nested": {"a": 1}, "flag": True}
    upload = Upload.objects.create(
        campaign=campaign,
        filename="m.jsonl",
        uploaded_by=manager,
        n_rows=1,
        n_created=1,
        n_blank=0,
        n_duplicates=0,
    )
    Item.objects.create(
        campaign=campaign,
        upload=upload,
        text="t",
        text_sha256=text_key("t"),
        metadata=metadata,
        position=0,
    )
    text = _body(_get(manager, campaign, items="all")).decode()
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert (row["meta.delta"], row["meta.ratio"], row["meta.note"]) == ("-3", "-0.5", "'-rm")
    assert (row["meta.nested"], row["meta.flag"]) == ('{"a": 1}', "true")
