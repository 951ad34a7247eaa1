"""REST API, first slice: tokens, schema, campaigns (same permissions as the pages)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from labeling import tokens
from labeling.models import ApiToken, Campaign, Item
from labeling.review import review_items
from tests.support.clients import api_as as _api

pytestmark = pytest.mark.django_db


def _payload(**overrides: Any) -> dict[str, Any]:
    return {"name": "From the API", "labels": ["neg", "neu", "pos"], **overrides}


# --- tokens ----------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_stored_hashed(manager: Any) -> None:
    client = Client()
    client.force_login(manager)
    page = client.post(reverse("api-tokens"), {"name": "export script"}).content.decode()
    row = ApiToken.objects.get()
    token = page.split('<code class="token">')[1].split("</code>")[0]
    assert token.startswith("carve_") and row.prefix == token[:12]
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(ApiToken.objects.values_list())  # not stored in clear
    again = client.get(reverse("api-tokens")).content.decode()
    assert token not in again and "export script" in again


def test_a_revoked_token_stops_working(manager: Any) -> None:
    row, token = tokens.create_token(manager, "t")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/campaigns/").status_code == 200
    client = Client()
    client.force_login(manager)
    client.post(reverse("api-tokens"), {"revoke": row.pk})
    assert api.get("/api/v1/campaigns/").status_code == 401


def test_nobody_revokes_another_users_token(manager: Any, outsider: Any) -> None:
    row, _ = tokens.create_token(manager, "t")
    client = Client()
    client.force_login(outsider)
    client.post(reverse("api-tokens"), {"revoke": row.pk})
    row.refresh_from_db()
    assert row.revoked_at is None


def test_a_token_needs_a_name(manager: Any) -> None:
    client = Client()
    client.force_login(manager)
    response = client.post(reverse("api-tokens"), {"name": "  "})
    assert response.status_code == 400 and ApiToken.objects.count() == 0


@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer", "Bearer a b", "Token carve_x"])
def test_bad_credentials_get_401_json(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/campaigns/")
    assert response.status_code == 401
    assert "detail" in response.json()


# --- campaigns -------------------------------------------------------------------------------


def test_each_caller_lists_only_their_campaigns(
    campaign: Campaign, annotator: Any, outsider: Any, other_manager: Any
) -> None:
    Campaign.objects.create(name="Other", created_by=other_manager)
    names = [c["name"] for c in _api(annotator).get("/api/v1/campaigns/").json()["results"]]
    assert names == ["Movie reviews"]
    assert _api(outsider).get("/api/v1/campaigns/").json()["results"] == []
    assert _api(outsider).get(f"/api/v1/campaigns/{campaign.pk}/").status_code == 404


def test_a_manager_creates_a_campaign(manager: Any, annotator: Any) -> None:
    response = _api(manager).post(
        "/api/v1/campaigns/", _payload(annotators=["annotator"], overlap=2), format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["labels"], body["created_by"], body["annotators"]) == (
        ["neg", "neu", "pos"],
        "manager",
        ["annotator"],
    )
    campaign = Campaign.objects.get(pk=body["id"])
    assert campaign.overlap == 2 and list(campaign.annotators.all()) == [annotator]
    assert body["softness"] is None and campaign.softness is None  # automatic by default
    response = _api(manager).patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"softness": 0.01}, format="json"
    )
    assert response.status_code == 200 and response.json()["softness"] == 0.01
    campaign.refresh_from_db()
    assert campaign.softness == 0.01


def test_an_annotator_cannot_create_or_change_campaigns(campaign: Campaign, annotator: Any) -> None:
    api = _api(annotator)
    assert api.post("/api/v1/campaigns/", _payload(), format="json").status_code == 403
    response = api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "x"}, format="json")
    assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.name == "Movie reviews"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"labels": ["only"]}, "labels"),
        ({"labels": ["a", "A"]}, "labels"),
        ({"n_gates": 0}, "n_gates"),
        ({"softness": -0.01}, "softness"),
        ({"softness": 0.2}, "softness"),
        ({"softness": "soft"}, "softness"),
        ({"annotators": ["nobody"]}, "annotators"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_campaigns_are_refused_with_field_errors(
    manager: Any, payload: dict[str, Any], field: str
) -> None:
    response = _api(manager).post("/api/v1/campaigns/", _payload(**payload), format="json")
    assert response.status_code == 400 and field in response.json()


def test_an_update_cannot_drop_a_label_in_use(campaign: Campaign, manager: Any) -> None:
    from labeling.imports.write import import_file

    import_file(campaign, manager, b"text,label\ngood,positive\n", "d.csv")
    response = _api(manager).patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"labels": ["bad", "good"]}, format="json"
    )
    assert response.status_code == 400
    assert "must stay in the label set" in str(response.json()["labels"])


def test_the_schema_is_served_and_validates() -> None:
    client = APIClient()
    response = client.get("/api/schema/")
    assert response.status_code == 200 and b"/api/v1/campaigns/" in response.content
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert "openapi: 3" in out.getvalue()


def test_the_model_versions_list_is_documented_as_the_plain_list_it_returns() -> None:
    import yaml

    out = io.StringIO()
    call_command("spectacular", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    ok = schema["paths"]["/api/v1/campaigns/{id}/models/"]["get"]["responses"]["200"]
    body = ok["content"]["application/json"]["schema"]
    assert body["type"] == "array"
    assert body["items"]["$ref"] == "#/components/schemas/ModelVersion"


def test_swagger_ui_is_served_offline() -> None:
    page = APIClient().get("/api/docs/").content.decode()
    assert "swagger-ui" in page and "cdn." not in page and "unpkg" not in page


# --- items, next item, labels, export -----------------------------------------------------------


@pytest.fixture
def imported(campaign: Campaign, manager: Any) -> Campaign:
    from labeling.imports.write import import_file

    Campaign.objects.filter(pk=campaign.pk).update(gold_rate=0)
    campaign.refresh_from_db()
    body = 'text,label\n"=HYPERLINK(""http://x"")",positive\nplain text,\nthird,negative\n'
    import_file(campaign, manager, body.encode(), "d.csv")
    return campaign


def test_an_annotator_is_served_labels_and_a_repeat_is_stored_once(
    imported: Campaign, annotator: Any
) -> None:
    api = _api(annotator)
    base = f"/api/v1/campaigns/{imported.pk}"
    served = api.post(f"{base}/next/").json()
    assert set(served) == {"id", "text", "lease_expires_at"}
    assert api.post(f"{base}/next/").json()["id"] == served["id"]  # the same lease
    label = {"item": served["id"], "value": "negative", "comment": "meh"}
    first = api.post(f"{base}/labels/", label, format="json")
    again = api.post(f"{base}/labels/", label, format="json")
    assert (first.status_code, first.json()["created"]) == (201, True)
    assert (again.status_code, again.json()["created"], again.json()["id"]) == (
        200,
        False,
        first.json()["id"],
    )


@pytest.mark.parametrize(
    ("label", "field"),
    [({"value": "great"}, "value"), ({"item": 999_999}, "item"), ({"value": ""}, "value")],
)
def test_bad_labels_are_400_with_the_field(
    imported: Campaign, annotator: Any, label: dict[str, Any], field: str
) -> None:
    api = _api(annotator)
    served = api.post(f"/api/v1/campaigns/{imported.pk}/next/").json()
    body = {"item": served["id"], "value": "positive", **label}
    response = api.post(f"/api/v1/campaigns/{imported.pk}/labels/", body, format="json")
    assert response.status_code == 400 and field in response.json()


def test_nothing_left_is_204(imported: Campaign, annotator: Any) -> None:
    api = _api(annotator)
    for _ in range(3):
        served = api.post(f"/api/v1/campaigns/{imported.pk}/next/").json()
        api.post(
            f"/api/v1/campaigns/{imported.pk}/labels/",
            {"item": served["id"], "value": "positive"},
            format="json",
        )
    assert api.post(f"/api/v1/campaigns/{imported.pk}/next/").status_code == 204


def test_items_filter_and_gold_only_for_managers(
    imported: Campaign, annotator: Any, manager: Any
) -> None:
    api = _api(annotator)
    served = api.post(f"/api/v1/campaigns/{imported.pk}/next/").json()
    api.post(
        f"/api/v1/campaigns/{imported.pk}/labels/",
        {"item": served["id"], "value": "positive"},
        format="json",
    )
    base = f"/api/v1/campaigns/{imported.pk}/items/"
    labeled = api.get(base, {"state": "labeled"}).json()["results"]
    assert [i["id"] for i in labeled] == [served["id"]] and labeled[0]["labels"] == ["positive"]
    assert len(api.get(base, {"state": "unlabeled"}).json()["results"]) == 2
    assert "gold" not in labeled[0]  # gold is never shown to annotators
    assert "gold" in _api(manager).get(base).json()["results"][0]
    assert api.get(base, {"state": "bogus"}).status_code == 400


def test_item_pages_count_and_seek_like_count_and_offset(
    campaign: Campaign, annotator: Any, manager: Any
) -> None:
    """The items listing counts from the positions and the labels and seeks to its offset by
    position (docs/scaling.md, "Items listing"): the same pages as COUNT(*) and OFFSET."""
    from labeling.imports.write import import_file

    import_file(
        campaign, manager, ("text\n" + "\n".join(f"t{i}" for i in range(25))).encode(), "a.csv"
    )
    api = _api(annotator)
    mine = []
    for _ in range(4):
        served = api.post(f"/api/v1/campaigns/{campaign.pk}/next/").json()
        api.post(
            f"/api/v1/campaigns/{campaign.pk}/labels/",
            {"item": served["id"], "value": "positive"},
            format="json",
        )
        mine.append(served["id"])
    base = f"/api/v1/campaigns/{campaign.pk}/items/"
    items = list(Item.objects.filter(campaign=campaign).order_by("position"))
    for who in (annotator, manager):
        for state, expected in (
            (None, items),
            ("labeled", [i for i in items if i.pk in mine]),
            ("unlabeled", [i for i in items if i.pk not in mine]),
        ):
            for offset, limit in ((0, 10), (7, 5), (20, 10), (30, 10)):
                query = {"offset": offset, "limit": limit, **({"state": state} if state else {})}
                page = _api(who).get(base, query).json()
                assert page["count"] == len(expected), (state, offset)
                got = [row["id"] for row in page["results"]]
                assert got == [i.pk for i in expected[offset : offset + limit]], (state, offset)


def test_export_streams_csv_safe_from_formulas_and_jsonl(
    imported: Campaign, annotator: Any, manager: Any
) -> None:
    api = _api(annotator)
    for _ in range(2):
        served = api.post(f"/api/v1/campaigns/{imported.pk}/next/").json()
        api.post(
            f"/api/v1/campaigns/{imported.pk}/labels/",
            {"item": served["id"], "value": "positive", "comment": "@risky"},
            format="json",
        )
    url = f"/api/v1/campaigns/{imported.pk}/export/"
    assert api.get(url).status_code == 403  # managers only
    response = _api(manager).get(url)
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    # the export's first six columns, as they always were; the item's fields follow
    assert rows[0][:6] == ["item", "text", "label", "annotator", "comment", "created_at"]
    assert rows[1][1] == '\'=HYPERLINK("http://x")' and rows[1][4] == "'@risky"
    lines = b"".join(_api(manager).get(url, {"as": "jsonl"}).streaming_content).splitlines()
    first = json.loads(lines[0])
    assert first["text"] == '=HYPERLINK("http://x")' and len(lines) == 2
    assert _api(manager).get(url, {"as": "xml"}).status_code == 400


def test_outsiders_get_404_on_every_campaign_action(imported: Campaign, outsider: Any) -> None:
    api = _api(outsider)
    base = f"/api/v1/campaigns/{imported.pk}"
    assert api.post(f"{base}/next/").status_code == 404
    assert api.get(f"{base}/items/").status_code == 404
    assert api.post(f"{base}/labels/", {"item": 1, "value": "positive"}).status_code == 404
    assert api.get(f"{base}/export/").status_code == 404
    for path in ("skip", "undo", "decisions", "stop", "resume"):
        assert api.post(f"{base}/{path}/", {"item": 1}).status_code == 404, path


def test_skip_sets_an_item_aside_and_a_label_for_it_is_refused(
    imported: Campaign, annotator: Any
) -> None:
    api = _api(annotator)
    base = f"/api/v1/campaigns/{imported.pk}"
    served = api.post(f"{base}/next/").json()["id"]
    assert api.post(f"{base}/skip/", {"item": served}, format="json").status_code == 204
    following = api.post(f"{base}/next/").json()["id"]
    assert following != served
    refused = api.post(f"{base}/labels/", {"item": served, "value": "positive"}, format="json")
    assert refused.status_code == 400 and "skipped" in refused.json()["item"]
    never = api.post(f"{base}/skip/", {"item": 999_999}, format="json")
    assert never.status_code == 400 and "not served" in never.json()["item"]


def test_undo_withdraws_the_latest_label_once_and_leases_the_item_back(
    imported: Campaign, annotator: Any
) -> None:
    from labeling.models import Label

    api = _api(annotator)
    base = f"/api/v1/campaigns/{imported.pk}"
    served = api.post(f"{base}/next/").json()["id"]
    api.post(f"{base}/labels/", {"item": served, "value": "negative"}, format="json")
    undone = api.post(f"{base}/undo/", {"item": served}, format="json")
    assert undone.status_code == 200 and undone.json()["item"] == served
    again = api.post(f"{base}/undo/", {"item": served}, format="json")
    assert again.status_code == 204  # a repeated undo withdraws nothing more
    label = Label.objects.get(item_id=served)
    assert label.undone_at is not None  # kept, marked undone
    assert api.post(f"{base}/next/").json()["id"] == served  # leased back to them


def test_a_managers_decision_settles_an_item_in_review(
    imported: Campaign, annotator: Any, manager: Any, django_user_model: Any
) -> None:

    second = django_user_model.objects.create_user("second")
    imported.annotators.add(second)
    Campaign.objects.filter(pk=imported.pk).update(overlap=2)
    base = f"/api/v1/campaigns/{imported.pk}"
    item = _api(annotator).post(f"{base}/next/").json()["id"]
    _api(annotator).post(f"{base}/labels/", {"item": item, "value": "positive"}, format="json")
    other = _api(second)
    assert other.post(f"{base}/next/").json()["id"] == item
    other.post(f"{base}/labels/", {"item": item, "value": "negative"}, format="json")
    assert review_items(imported) == [item]
    url = f"{base}/decisions/"
    assert _api(annotator).post(url, {"item": item, "value": "positive"}).status_code == 403
    boss = _api(manager)
    assert boss.post(url, {"item": item, "value": "maybe"}, format="json").status_code == 400
    assert boss.post(url, {"item": 999_999, "value": "positive"}).status_code == 400
    decided = boss.post(url, {"item": item, "value": "positive"}, format="json")
    assert decided.status_code == 201 and decided.json()["decided_by"] == "manager"
    assert review_items(imported) == []
    review = boss.get(f"{base}/items/", {"state": "review"}).json()["results"]
    assert review == []


def test_an_annotator_sees_only_their_own_labels_so_double_labeling_stays_independent(
    imported: Campaign, annotator: Any, manager: Any, django_user_model: Any
) -> None:
    second = django_user_model.objects.create_user("second")
    imported.annotators.add(second)
    Campaign.objects.filter(pk=imported.pk).update(overlap=2)
    base = f"/api/v1/campaigns/{imported.pk}"
    item = _api(annotator).post(f"{base}/next/").json()["id"]
    _api(annotator).post(f"{base}/labels/", {"item": item, "value": "positive"}, format="json")

    def labels_seen(user: Any, **query: str) -> dict[int, list[str]]:
        rows = _api(user).get(f"{base}/items/", query).json()["results"]
        return {row["id"]: row["labels"] for row in rows}

    assert labels_seen(second)[item] == []  # not the first annotator's answer
    assert item not in labels_seen(second, state="labeled")
    assert item in labels_seen(second, state="unlabeled")
    assert labels_seen(annotator)[item] == ["positive"]
    assert labels_seen(annotator, state="labeled") == {item: ["positive"]}
    assert labels_seen(manager)[item] == ["positive"]
    assert _api(second).get(f"{base}/items/", {"state": "review"}).status_code == 403


def test_stop_and_resume_serving(imported: Campaign, annotator: Any, manager: Any) -> None:
    base = f"/api/v1/campaigns/{imported.pk}"
    assert _api(annotator).post(f"{base}/stop/").status_code == 403
    stopped = _api(manager).post(f"{base}/stop/")
    assert stopped.status_code == 200 and stopped.json()["stopped_at"] is not None
    assert _api(annotator).post(f"{base}/next/").status_code == 204
    resumed = _api(manager).post(f"{base}/resume/")
    assert resumed.json()["stopped_at"] is None
    assert _api(annotator).post(f"{base}/next/").status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=1e20", "limit"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("offset=-5", "offset"),
        ("offset=1.5", "offset"),
        ("limit=" + "9" * 5000, "limit"),
    ],
)
def test_a_page_that_is_not_a_whole_number_is_a_400(
    campaign: Campaign, manager: Any, query: str, field: str
) -> None:
    response = _api(manager).get(f"/api/v1/campaigns/?{query}")
    assert response.status_code == 400 and field in response.json()


def test_pages_are_capped_and_an_offset_past_the_end_is_empty(
    campaign: Campaign, manager: Any
) -> None:
    from labeling.api.pagination import MAX_LIMIT

    api = _api(manager)
    for i in range(3):
        Campaign.objects.create(name=f"Extra {i}", created_by=manager)
    body = api.get("/api/v1/campaigns/?limit=2").json()
    assert body["count"] == 4 and len(body["results"]) == 2 and "limit=2" in body["next"]
    body = api.get(f"/api/v1/campaigns/?limit={10**30}").json()
    assert len(body["results"]) == 4 and body["next"] is None
    body = api.get(f"/api/v1/campaigns/?limit={10**30}&offset=2").json()
    assert f"limit={MAX_LIMIT}" in body["previous"]
    body = api.get(f"/api/v1/campaigns/?offset={10**30}").json()
    assert body["results"] == [] and body["count"] == 4
