"""Schemathesis against the OpenAPI schema: generated requests as a manager and as an
annotator (bounded), checking that nothing answers 5xx, that every status code is documented
for its operation, and that every answer matches its documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from labeling import tokens
from labeling.imports.write import import_file
from labeling.models import Campaign

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """A WSGI request closes the database connection when it ends; the test's transaction
    lives on that connection, so, as Django's test client does, do not close it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def callers(campaign: Campaign, manager: Any, annotator: Any) -> dict[str, str]:
    campaign.annotators.add(manager)
    body = b"text,label\ngreat film,positive\ndull plot,negative\nfine,\n"
    import_file(campaign, manager, body, "d.csv")
    return {
        "manager": tokens.create_token(manager, "fuzz")[1],
        "annotator": tokens.create_token(annotator, "fuzz")[1],
    }


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_5xx_and_documented_answers_match_their_schema(
    case: Any, callers: dict[str, str], campaign: Campaign
) -> None:
    if "id" in (case.path_parameters or {}):
        case.path_parameters["id"] = campaign.pk  # the real campaign: past the 404
    if "campaign_pk" in (case.path_parameters or {}):  # a campaign's webhooks
        case.path_parameters["campaign_pk"] = campaign.pk
    for raw in callers.values():
        response = case.call(headers={"Authorization": f"Bearer {raw}"})
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
        )
