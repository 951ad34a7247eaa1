"""A Python client for Carve's REST API (``/api/v1/``), and the ``carve`` command.

A pure HTTP client over httpx: it imports nothing from the server (docs/platform.md,
"Python client and CLI").

Examples
--------
>>> from carve_client import Client  # doctest: +SKIP
>>> carve = Client()  # CARVE_URL and CARVE_TOKEN from the environment  # doctest: +SKIP
>>> campaign = carve.create_campaign("Reviews", ["negative", "positive"])  # doctest: +SKIP
"""

from __future__ import annotations

from carve_client.client import Client
from carve_client.errors import (
    ApiError,
    CarveError,
    ImportRefused,
    JobFailed,
    NotFound,
    PermissionDenied,
    Timeout,
)
from carve_client.models import (
    Campaign,
    EmbeddingStatus,
    ImportJob,
    Item,
    Label,
    ModelVersion,
    Prediction,
    Progress,
)

__all__ = [
    "ApiError",
    "Campaign",
    "CarveError",
    "Client",
    "EmbeddingStatus",
    "ImportJob",
    "ImportRefused",
    "Item",
    "JobFailed",
    "Label",
    "ModelVersion",
    "NotFound",
    "PermissionDenied",
    "Prediction",
    "Progress",
    "Timeout",
]
