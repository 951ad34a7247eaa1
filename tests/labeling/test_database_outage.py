"""A lost database connection is a 503 with Retry-After, JSON on the API, never an HTML 500.

(The connection is made to fail inside the request, as a PostgreSQL restart would; the real
restart is in the fault benchmark.)
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.urls import reverse

from labeling.models import Campaign
from tests.support.clients import api_as, logged_in


def _lost(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError("server closed the connection unexpectedly")


@pytest.fixture
def dead_connection(monkeypatch: Any) -> None:
    """The connection the failing call used is gone (is_usable() is what Django checks)."""
    monkeypatch.setattr(connection, "is_usable", lambda: False)


def test_the_api_answers_503_json_with_retry_after(
    campaign: Campaign, annotator: Any, monkeypatch: Any, dead_connection: None
) -> None:
    monkeypatch.setattr("labeling.annotation.next_assignment", _lost)
    response = api_as(annotator).post(f"/api/v1/campaigns/{campaign.pk}/next/")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert int(response["Retry-After"]) > 0 and "unavailable" in response.json()["detail"]


def test_a_page_answers_503_with_retry_after(
    campaign: Campaign, annotator: Any, monkeypatch: Any, dead_connection: None
) -> None:
    def closed(*args: Any, **kwargs: Any) -> Any:
        raise InterfaceError("connection already closed")

    monkeypatch.setattr("labeling.annotation.next_assignment", closed)
    response = logged_in(annotator).get(reverse("campaign-label", args=[campaign.pk]))
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert b"unavailable" in response.content


def test_other_errors_are_not_disguised_as_an_outage(
    campaign: Campaign, annotator: Any, monkeypatch: Any
) -> None:
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError

    monkeypatch.setattr("labeling.annotation.next_assignment", bug)
    client = api_as(annotator)
    client.raise_request_exception = False
    assert client.post(f"/api/v1/campaigns/{campaign.pk}/next/").status_code == 500


def test_a_query_error_on_a_live_connection_is_a_500_not_an_outage(
    campaign: Campaign, annotator: Any, monkeypatch: Any
) -> None:
    """SQLite says OperationalError for a missing table too: that is a bug, not an outage."""

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("no such table: labeling_item")

    monkeypatch.setattr("labeling.annotation.next_assignment", missing)
    client = api_as(annotator)
    client.raise_request_exception = False
    assert client.post(f"/api/v1/campaigns/{campaign.pk}/next/").status_code == 500
