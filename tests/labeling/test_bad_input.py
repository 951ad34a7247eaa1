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
