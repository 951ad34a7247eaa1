from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.test import Client

from labeling import views


@pytest.mark.django_db
def test_it_returns_ok_when_database_answers(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.content == b"ok"
    assert response["Content-Type"].startswith("text/plain")


class _BrokenConnection:
    def cursor(self) -> Any:
        raise OperationalError("connection refused")


def test_it_returns_503_with_error_class_when_database_fails(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "connection", _BrokenConnection())

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.content == b"OperationalError"
    assert "connection refused" not in response.content.decode()


def test_it_rejects_post(client: Client) -> None:
    assert client.post("/healthz").status_code == 405


def test_django_system_check_passes() -> None:
    call_command("check", fail_level="WARNING")

    # platform/ holds deployment files only; were it a package it would shadow the stdlib.
    import platform

    assert hasattr(platform, "python_version")


@pytest.mark.django_db
def test_models_and_migrations_are_in_sync() -> None:
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
