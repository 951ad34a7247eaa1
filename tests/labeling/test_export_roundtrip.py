"""Round trips (docs/platform.md, "Export jobs" and "Label export"): every export format is
imported into a new campaign through the API's import, the path users take, and brings back
the texts, the metadata, the gold labels and the labels as that format carries them. Also a
Label Studio export written by hand in Label Studio's documented shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.imports.write import IMPORTED_USERNAME, import_file
from labeling.models import Campaign, Decision, Item, Label, ModelVersion
from tests.support.clients import api_as

pytestmark = pytest.mark.django_db

SOURCE = [
    {
        "text": "A warm, funny film",
        "gold": "positive",
        "source": "imdb",
        "stars": 5,
        "tags": ["a", "b"],
    },
    {"text": "Dull and far too long", "source": "sst", "stars": 1},
    {"text": "Not bad at all", "source": "imdb", "stars": 4},
    {"text": "Never labeled, only gold", "gold": "negative", "source": "sst", "stars": 2},
]
META = [{k: v for k, v in row.items() if k not in ("text", "gold")} for row in SOURCE]
TEXTS = [row["text"] for row in SOURCE]
GOLD = [row.get("gold", "") for row in SOURCE]
# Raw labels (annotator, label), the final label and its source, item by item.
RAW = [
    [("annotator", "positive"), ("second", "positive")],
    [("annotator", "negative"), ("second", "positive")],
    [("annotator", "positive")],
    [],
]
FINAL = ["positive", "negative", "positive", ""]
SOURCE_OF_FINAL = ["consensus", "decision", "consensus", ""]
PREDICTED = [(0, 0.9), (1, 0.7), (0, 0.6), None]  # (class index, confidence)


@pytest.fixture
def second(django_user_model: Any, campaign: Campaign) -> Any:
    user = django_user_model.objects.create_user("second", password="pw-second")
    campaign.annotators.add(user)
    return user


@pytest.fixture
def source(campaign: Campaign, manager: Any, annotator: Any, second: Any) -> Campaign:
    """Items with metadata and gold labels, imported as users import them; labels by two
    annotators who disagree once (decided by the manager); predictions of model version 1."""
    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0, evaluation_size=0)
    campaign.refresh_from_db()
    body = "".join(json.dumps(row) + "\n" for row in SOURCE).encode()
    import_file(campaign, manager, body, "source.jsonl")
    items = list(campaign.items.order_by("position"))
    assert [item.text for item in items] == TEXTS
    users = {"annotator": annotator, "second": second}
    for item, labels in zip(items, RAW, strict=True):
        for username, value in labels:
            Label.objects.create(item=item, annotator=users[username], value=value)
    Decision.objects.create(item=items[1], value="negative", decided_by=manager)
    for item, predicted in zip(items, PREDICTED, strict=True):
        if predicted is not None:
            Item.objects.filter(pk=item.pk).update(predicted=predicted[0], confidence=predicted[1])
    ModelVersion.objects.create(campaign=campaign, number=1, status="done")
    return campaign


def _export(manager: Any, campaign: Campaign, **query: str) -> tuple[bytes, str]:
    response: Any = api_as(manager).get(f"/api/v1/campaigns/{campaign.pk}/export/", query)
    assert response.status_code == 200, response.content
    filename = response["Content-Disposition"].split('filename="')[1].rstrip('"')
    return b"".join(response.streaming_content), filename


def _import(manager: Any, data: bytes, filename: str, **fields: str) -> Campaign:
    """A new campaign with the same labels, the file imported through the API."""
    target = Campaign.objects.create(
        name="Round trip", created_by=manager, gold_rate=0, evaluation_size=0
    )
    response = api_as(manager).post(
        f"/api/v1/campaigns/{target.pk}/imports/",
        {"file": SimpleUploadedFile(filename, data), **fields},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return target


def _items(campaign: Campaign) -> list[Item]:
    return list(campaign.items.order_by("position"))


def _covered(items: str) -> list[int]:
    """The source items an export covers: all, or those with a label or a decision."""
    return [i for i in range(len(SOURCE)) if items == "all" or RAW[i] or FINAL[i]]


def _flat(value: Any) -> str | None:
    """A metadata value as the flat formats write it (a string, other values as JSON)."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _pairs(labels: Any) -> list[tuple[str, str]]:
    return [(label["annotator"], label["label"]) for label in labels]


@pytest.mark.parametrize("items", ["all", "labeled"])
@pytest.mark.parametrize("rows", ["labels", "items"])
@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_csv_jsonl_and_parquet_round_trip(
    source: Campaign, manager: Any, kind: str, rows: str, items: str
) -> None:
    data, filename = _export(manager, source, **{"as": kind, "rows": rows, "items": items})
    target = _import(manager, data, filename)
    covered = _covered(items)
    back = _items(target)
    assert [item.text for item in back] == [TEXTS[i] for i in covered]
    assert [item.gold for item in back] == [GOLD[i] for i in covered]  # the gold column
    upload = target.uploads.get()
    n_rows = sum(max(1, len(RAW[i])) for i in covered) if rows == "labels" else len(covered)
    assert (upload.n_rows, upload.n_created) == (n_rows, len(covered))
    assert upload.n_duplicates == n_rows - len(covered)  # an item's further label rows
    for item, i in zip(back, covered, strict=True):
        meta = item.metadata
        if kind == "jsonl":
            assert meta["metadata"] == META[i]  # nested, numbers and lists kept
        else:
            for key in ("source", "stars", "tags"):
                cell = meta[f"meta.{key}"]
                expected = _flat(META[i].get(key))
                # CSV has no null: a missing value is an empty cell.
                assert cell == (expected if expected is not None or kind != "csv" else "")
        assert meta["final_label"] == FINAL[i]
        assert meta["final_source"] == SOURCE_OF_FINAL[i]
        if rows == "items":
            given = json.loads(meta["labels"]) if kind == "csv" else meta["labels"]
            assert _pairs(given) == RAW[i]
        else:
            # One row per label; the rows of one text merge into the first one's item.
            first = RAW[i][0] if RAW[i] else ("", "") if kind == "csv" else (None, None)
            assert (meta["annotator"], meta["label"]) == first
        # No prediction: an empty label name, and no confidence (an empty CSV cell).
        made = PREDICTED[i]
        predicted, confidence = (
            ("", "" if kind == "csv" else None)
            if made is None
            else (source.labels[made[0]], made[1])
        )
        assert meta["predicted"] == predicted
        assert meta["confidence"] == (
            str(confidence) if kind == "csv" and confidence else confidence
        )
    # Nothing but the "imported" user's labels can come from a file, and these formats have none.
    assert not Label.objects.filter(item__campaign=target).exists()


@pytest.mark.parametrize("items", ["all", "labeled"])
def test_hf_round_trip(source: Campaign, manager: Any, items: str) -> None:
    data, filename = _export(manager, source, **{"as": "hf", "items": items})
    target = _import(manager, data, filename)
    covered = _covered(items)
    back = _items(target)
    assert [item.text for item in back] == [TEXTS[i] for i in covered]
    assert [item.gold for item in back] == [GOLD[i] for i in covered]
    for item, i in zip(back, covered, strict=True):
        meta = item.metadata
        # The ClassLabel integer comes back as its name; -1 (no final label) as nothing.
        assert meta["final_label"] == (FINAL[i] or None)
        assert {key: meta[f"meta.{key}"] for key in ("source", "stars", "tags")} == {
            key: _flat(META[i].get(key)) for key in ("source", "stars", "tags")
        }
        assert _pairs(meta["labels"]) == RAW[i]
        assert all(label["created_at"] for label in meta["labels"])  # timestamps as ISO text


@pytest.mark.parametrize("items", ["all", "labeled"])
def test_label_studio_round_trip(source: Campaign, manager: Any, items: str) -> None:
    data, filename = _export(manager, source, **{"as": "labelstudio", "items": items})
    target = _import(manager, data, filename)
    covered = _covered(items)
    back = _items(target)
    assert [item.text for item in back] == [TEXTS[i] for i in covered]
    imported = {
        label.item_id: label.value
        for label in Label.objects.filter(
            item__campaign=target, annotator__username=IMPORTED_USERNAME
        )
    }
    for item, i in zip(back, covered, strict=True):
        meta = dict(item.metadata)
        choices = [value for _, value in RAW[i]]
        if len(set(choices)) > 1:  # every annotation's choice is kept beside the label
            assert meta.pop("imported_labels") == choices
        assert meta == META[i]  # `data` is the item: the metadata as it was
        # The first annotation becomes the label of the "imported" user.
        assert imported.get(item.pk) == (RAW[i][0][1] if RAW[i] else None)
        expected = PREDICTED[i]
        assert (item.predicted, item.confidence) == (expected or (None, None))
        assert item.gold == ""  # Label Studio's `data` carries no gold; it is in `meta`
    assert len(imported) == sum(1 for i in covered if RAW[i])


def test_a_label_studio_export_written_by_hand_imports_with_its_annotations(
    campaign: Campaign, manager: Any
) -> None:
    """Tasks in the shape of Label Studio's "Label Studio JSON format of annotated tasks"
    (its Task Format guide) for a text classification project: a ``Text`` named ``message``
    over ``$my_text`` and ``Choices`` named ``sentiment_class``, as in its "Basic Label Studio
    JSON format" example; results ``{"from_name", "to_name", "type": "choices", "value":
    {"choices": [...]}}``; a cancelled annotation; predictions with a model version and a
    score; Label Studio's own task fields (id, project, created_at, ...)."""

    def choice(value: str) -> dict[str, Any]:
        return {
            "id": "r" + value[:4],
            "from_name": "sentiment_class",
            "to_name": "message",
            "type": "choices",
            "origin": "manual",
            "value": {"choices": [value]},
        }

    def annotation(pk: int, value: str, *, cancelled: bool = False) -> dict[str, Any]:
        return {
            "id": pk,
            "completed_by": 1,
            "result": [choice(value)],
            "was_cancelled": cancelled,
            "ground_truth": False,
            "created_at": "2024-03-09T22:16:08.728353Z",
            "updated_at": "2024-03-09T22:16:08.728378Z",
            "lead_time": 4.288,
            "result_count": 0,
            "task": pk,
            "project": 83,
        }

    tasks = [
        {
            "id": 1,
            "project": 83,
            "created_at": "2024-03-09T21:52:49.513742Z",
            "updated_at": "2024-03-09T22:16:08.746926Z",
            "data": {
                "my_text": "Opossums are great",
                "ref_id": 456,
                "meta_info": {"timestamp": "2020-03-09 18:15:28.212882", "location": "North Pole"},
            },
            "annotations": [annotation(1, "Positive")],
            "predictions": [{"model_version": "one", "score": 0.5, "result": [choice("Positive")]}],
        },
        {
            "id": 2,
            "project": 83,
            "data": {"my_text": "Dull", "ref_id": 457},
            # A cancelled annotation chose nothing: the second one is the label.
            "annotations": [annotation(2, "Positive", cancelled=True), annotation(3, "Negative")],
            "predictions": [],
        },
        {"id": 3, "project": 83, "data": {"my_text": "Not annotated yet", "ref_id": 458}},
    ]
    data = json.dumps(tasks, indent=2).encode()
    _import(manager, data, "project-83-at-2024-03-09-22-16.json", text_column="my_text")
    target = Campaign.objects.get(name="Round trip")
    back = _items(target)
    assert [item.text for item in back] == ["Opossums are great", "Dull", "Not annotated yet"]
    assert back[0].metadata == {
        "ref_id": 456,
        "meta_info": {"timestamp": "2020-03-09 18:15:28.212882", "location": "North Pole"},
    }
    # "Positive": the label set's "positive", by its index
    assert (back[0].predicted, back[0].confidence) == (target.labels.index("positive"), 0.5)
    labels = dict(Label.objects.filter(item__campaign=target).values_list("item__text", "value"))
    assert labels == {"Opossums are great": "positive", "Dull": "negative"}
    assert set(
        Label.objects.filter(item__campaign=target).values_list("annotator__username", flat=True)
    ) == {IMPORTED_USERNAME}
    assert target.uploads.get().text_column == "my_text"
