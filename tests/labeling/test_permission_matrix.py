"""Every API operation x every kind of caller, generated from the URL conf (through the
OpenAPI schema drf-spectacular builds from it): a new endpoint without a row here fails."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from labeling import tokens
from labeling.models import Campaign

# Who may call each operation: "signed-in" (anyone with an account), "member" (the campaign's
# annotators and managers), "manager" (the campaign's managers only).
ACCESS = {
    ("get", "/api/v1/campaigns/"): "signed-in",
    ("post", "/api/v1/campaigns/"): "signed-in",  # then: managers only (403 for others)
    ("get", "/api/v1/campaigns/{id}/"): "member",
    ("put", "/api/v1/campaigns/{id}/"): "manager",
    ("patch", "/api/v1/campaigns/{id}/"): "manager",
    ("post", "/api/v1/campaigns/{id}/decisions/"): "manager",
    ("get", "/api/v1/campaigns/{id}/export/"): "manager",
    ("get", "/api/v1/campaigns/{id}/exports/"): "manager",
    ("post", "/api/v1/campaigns/{id}/exports/"): "manager",
    ("get", "/api/v1/campaigns/{id}/exports/{job_id}/"): "manager",
    ("get", "/api/v1/campaigns/{id}/exports/{job_id}/download/"): "manager",
    ("get", "/api/v1/campaigns/{id}/imports/"): "manager",
    ("post", "/api/v1/campaigns/{id}/imports/"): "manager",
    ("get", "/api/v1/campaigns/{id}/imports/{job_id}/"): "manager",
    ("get", "/api/v1/campaigns/{id}/items/"): "member",
    ("post", "/api/v1/campaigns/{id}/labels/"): "member",
    ("get", "/api/v1/campaigns/{id}/metrics/"): "manager",
    ("get", "/api/v1/campaigns/{id}/models/"): "member",
    ("get", "/api/v1/campaigns/{id}/models/{number}/"): "member",
    ("get", "/api/v1/campaigns/{id}/models/{number}/export/"): "member",
    ("get", "/api/v1/campaigns/{id}/near-duplicates/"): "manager",
    ("post", "/api/v1/campaigns/{id}/near-duplicates/keep/"): "manager",
    ("post", "/api/v1/campaigns/{id}/near-duplicates/merge/"): "manager",
    ("post", "/api/v1/campaigns/{id}/next/"): "member",
    ("post", "/api/v1/campaigns/{id}/predict/"): "member",
    ("post", "/api/v1/campaigns/{id}/resume/"): "manager",
    ("post", "/api/v1/campaigns/{id}/retrain/"): "manager",
    ("post", "/api/v1/campaigns/{id}/skip/"): "member",
    ("post", "/api/v1/campaigns/{id}/stop/"): "manager",
    ("post", "/api/v1/campaigns/{id}/undo/"): "member",
    # Webhooks: {id} is the webhook's (none exists here: 404 for the campaign's managers).
    ("get", "/api/v1/campaigns/{campaign_pk}/webhooks/"): "manager",
    ("post", "/api/v1/campaigns/{campaign_pk}/webhooks/"): "manager",
    ("get", "/api/v1/campaigns/{campaign_pk}/webhooks/{id}/"): "manager",
    ("put", "/api/v1/campaigns/{campaign_pk}/webhooks/{id}/"): "manager",
    ("patch", "/api/v1/campaigns/{campaign_pk}/webhooks/{id}/"): "manager",
    ("delete", "/api/v1/campaigns/{campaign_pk}/webhooks/{id}/"): "manager",
    ("get", "/api/v1/campaigns/{campaign_pk}/webhooks/{id}/deliveries/"): "manager",
    (
        "post",
        "/api/v1/campaigns/{campaign_pk}/webhooks/{id}/deliveries/{delivery_pk}/redeliver/",
    ): "manager",
    ("post", "/api/v1/campaigns/{campaign_pk}/webhooks/{id}/ping/"): "manager",
}
CALLERS = ("anonymous", "revoked", "outsider", "annotator", "other-manager", "manager")


def _operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    verbs = {"get", "post", "put", "patch", "delete"}
    return {(m, path) for path, ops in schema["paths"].items() for m in ops if m in verbs}


def test_every_api_operation_has_a_row_in_the_matrix() -> None:
    assert _operations() == set(ACCESS)


def _client(who: str, users: dict[str, Any]) -> APIClient:
    client = APIClient()
    if who == "anonymous":
        return client
    token_row, raw = tokens.create_token(users[who], "matrix")
    if who == "revoked":
        tokens.revoke(users[who], token_row.pk)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _expected(who: str, access: str, method: str) -> str:
    """ "unauthenticated", "forbidden", "hidden" (404) or "allowed"."""
    if who in ("anonymous", "revoked"):
        return "unauthenticated"
    if access == "signed-in":
        managers = ("other-manager", "manager")
        return "allowed" if method == "get" or who in managers else "forbidden"
    if who in ("outsider", "other-manager"):
        return "hidden"
    if access == "manager" and who == "annotator":
        return "forbidden"
    return "allowed"


@pytest.mark.parametrize("who", CALLERS)
def test_each_caller_gets_what_the_matrix_says_on_every_operation(
    who: str,
    campaign: Campaign,
    manager: Any,
    other_manager: Any,
    annotator: Any,
    outsider: Any,
) -> None:
    users = {
        "revoked": annotator,
        "outsider": outsider,
        "annotator": annotator,
        "other-manager": other_manager,
        "manager": manager,
    }
    client = _client(who, users)
    wrong = []
    for (method, path), access in sorted(ACCESS.items()):
        url = path.format(
            id=campaign.pk, campaign_pk=campaign.pk, job_id=999_999, number=999_999, delivery_pk=1
        )
        response = getattr(client, method)(url, {}, format="json")
        code = response.status_code
        expected = _expected(who, access, method)
        # may not exist: 404 is fine
        inner_id = any(key in path for key in ("{job_id}", "{number}", "{campaign_pk}"))
        ok = {
            "unauthenticated": code == 401,
            "forbidden": code == 403,
            "hidden": code == 404,
            "allowed": code not in (401, 403) and (code != 404 or inner_id) and code < 500,
        }[expected]
        if not ok:
            wrong.append(f"{method.upper()} {path}: {code}, expected {expected}")
    assert not wrong, "\n".join(wrong)
