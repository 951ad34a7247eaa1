"""Input the database cannot store, or a parser cannot survive, is a 400 with a reason, and
nothing is written. Runs on SQLite and on PostgreSQL (`make test-postgres`), where NUL
characters and NaN in JSON columns fail at the database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Campaign, ImportJob, Item, Label
from tests.support.clients import api_as

DEEP = "[" * 100_000 + "]" * 100_000


def _imports(campaign: Campaign) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/imports/"


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("nan.jsonl", b'{"text": "fine", "meta": NaN}\n', "NaN or Infinity"),
        ("inf.jsonl", b'{"text": "fine", "meta": -Infinity}\n', "NaN or Infinity"),
        ("nul-escape.jsonl", b'{"text": "bad \\u0000 text"}\n', "NUL character"),
        ("nul-meta.jsonl", b'{"text": "fine", "m": {"k": "\\u0000"}}\n', "NUL character"),
        ("nul.csv", b"text\nbad \x00 text\n", "NUL character"),
        ("deep.jsonl", ('{"text": "x", "m": ' + DEEP + "}\n").encode(), "nested too deeply"),
        ("latin1.csv", "text\ncaf\u00e9 cr\u00e8me\n".encode("latin-1"), "not UTF-8"),
        ("list.jsonl", b'["text", "fine"]\n', "not JSON objects"),
    ],
)
def test_an_unstorable_file_is_refused_with_the_reason(
    campaign: Campaign, manager: Any, name: str, body: bytes, reason: str
) -> None:
    upload = SimpleUploadedFile(name, body, content_type="application/octet-stream")
    response = api_as(manager).post(_imports(campaign), {"file": upload}, format="multipart")
    assert response.status_code == 400, response.content
    assert reason in " ".join(response.json()["errors"])
    assert not Item.objects.exists()


def test_a_json_items_list_with_nan_or_nul_is_refused(campaign: Campaign, manager: Any) -> None:
    client = api_as(manager)
    nan = '{"items": [{"text": "fine", "score": NaN}]}'
    response = client.post(_imports(campaign), nan, content_type="application/json")
    assert response.status_code == 400 and not Item.objects.exists()
    nul = json.dumps({"items": [{"text": "bad \u0000 text"}]})
    response = client.post(_imports(campaign), nul, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "NUL character" in " ".join(response.json()["errors"])
    assert not Item.objects.exists()


@pytest.mark.parametrize("route", ["imports/", "labels/", "skip/", "undo/", "decisions/"])
def test_a_body_nested_absurdly_deep_is_a_400(campaign: Campaign, manager: Any, route: str) -> None:
    url = f"/api/v1/campaigns/{campaign.pk}/{route}"
    response = api_as(manager).post(url, DEEP, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize("route", ["labels/", "skip/", "undo/", "decisions/"])
@pytest.mark.parametrize("item", [2**63, 2**64, -1, 0])
def test_an_item_id_no_row_can_have_is_a_400(
    campaign: Campaign, manager: Any, route: str, item: int
) -> None:
    campaign.annotators.add(manager)
    url = f"/api/v1/campaigns/{campaign.pk}/{route}"
    body = {"item": item, "value": "positive"}
    response = api_as(manager).post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert "item" in response.json()
    assert not Label.objects.exists()


@pytest.mark.parametrize("query", ["limit=1e20", "limit=0", "offset=-1", "offset=1e3"])
def test_a_page_size_or_offset_that_is_no_count_is_a_400(
    campaign: Campaign, manager: Any, query: str
) -> None:
    response = api_as(manager).get(f"/api/v1/campaigns/{campaign.pk}/items/?{query}")
    assert response.status_code == 400, response.content


def test_a_huge_page_size_or_offset_is_capped_or_empty_not_an_error(
    campaign: Campaign, manager: Any
) -> None:
    base = f"/api/v1/campaigns/{campaign.pk}/items/"
    huge = api_as(manager).get(f"{base}?limit={10**20}&offset={10**30}")
    assert huge.status_code == 200 and huge.json()["results"] == []


def test_nan_in_a_json_body_is_a_400(campaign: Campaign, annotator: Any) -> None:
    url = f"/api/v1/campaigns/{campaign.pk}/labels/"
    body = '{"item": NaN, "value": "positive"}'
    response = api_as(annotator).post(url, body, content_type="application/json")
    assert response.status_code == 400 and not Label.objects.exists()
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize("value", [5, True, 1.5, "genre", [1, 2], [None], [""]])
def test_card_metadata_that_is_no_list_of_keys_is_a_400(
    campaign: Campaign, manager: Any, value: Any
) -> None:
    url = f"/api/v1/campaigns/{campaign.pk}/"
    response = api_as(manager).patch(url, {"card_metadata": value}, format="json")
    assert response.status_code == 400, response.content
    assert "card_metadata" in response.json()
    campaign.refresh_from_db()
    assert campaign.card_metadata is None


@pytest.mark.parametrize(
    "labels", [["neg->x", "pos"], ["a,b", "c"], ["a→b", "c"], ["x" * 201, "y"]]
)
def test_a_label_name_the_edit_form_could_not_keep_is_refused(
    campaign: Campaign, manager: Any, labels: list[str]
) -> None:
    url = f"/api/v1/campaigns/{campaign.pk}/"
    response = api_as(manager).patch(url, {"labels": labels}, format="json")
    assert response.status_code == 400, response.content
    rename = {"rename": {campaign.labels[0]: labels[0]}}
    assert api_as(manager).patch(url, rename, format="json").status_code == 400


def test_a_rename_to_an_overlong_label_on_the_edit_form_is_a_form_error(
    client: Any, campaign: Campaign, manager: Any
) -> None:
    from tests.labeling.builders import embedded_campaign

    items, _ = embedded_campaign(campaign, 3)
    Label.objects.create(item=items[0], annotator=manager, value="positive")
    client.force_login(manager)
    response = client.post(
        f"/campaigns/{campaign.pk}/edit/",
        {"name": campaign.name, "labels_text": "negative\npositive -> " + "x" * 300},
    )
    assert response.status_code == 200 and b"at most 200 characters" in response.content
    assert Label.objects.get().value == "positive"
    campaign.refresh_from_db()
    assert campaign.labels == ["negative", "positive"]


def test_a_label_posted_after_a_rename_is_a_400_not_an_error(
    client: Any, campaign: Campaign, annotator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labeling import annotation, views
    from labeling.forms import rename_labels
    from tests.labeling.builders import embedded_campaign

    embedded_campaign(campaign, 3, gold_rate=0)
    served = annotation.next_assignment(campaign, annotator)
    assert served is not None
    client.force_login(annotator)
    # The page validated "positive" against the labels it loaded; the rename commits before
    # the label is stored (the race a manager's edit can open).
    real = views.annotation.submit_label

    def renamed_first(*args: Any, **kwargs: Any) -> Any:
        rename_labels(Campaign.objects.get(pk=campaign.pk), {"positive": "good"})
        Campaign.objects.filter(pk=campaign.pk).update(labels=["negative", "good"])
        return real(*args, **kwargs)

    monkeypatch.setattr(views.annotation, "submit_label", renamed_first)
    response = client.post(
        f"/campaigns/{campaign.pk}/label/",
        {"action": "label", "item": served.item_id, "value": "positive"},
    )
    assert response.status_code == 400
    assert b"labels have changed" in response.content
    assert not Label.objects.exists()


@pytest.mark.parametrize("field", ["item", "label"])
def test_a_label_action_with_an_id_no_row_can_have_is_a_400(
    client: Any, campaign: Campaign, annotator: Any, field: str
) -> None:
    client.force_login(annotator)
    action = "label" if field == "item" else "edit"
    response = client.post(
        f"/campaigns/{campaign.pk}/label/",
        {"action": action, field: 2**70, "item": 2**70, "value": "positive"},
    )
    assert response.status_code == 400
