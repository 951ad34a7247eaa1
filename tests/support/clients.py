"""HTTP clients logged in as a given user, for the page and API tests."""

from __future__ import annotations

from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from labeling import tokens


def logged_in(user: Any) -> Client:
    """A browser-like client with ``user``'s session."""
    client = Client()
    client.force_login(user)
    return client


def api_as(user: Any) -> APIClient:
    """An API client sending a fresh personal token of ``user`` as ``Bearer``."""
    _, token = tokens.create_token(user, "test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
