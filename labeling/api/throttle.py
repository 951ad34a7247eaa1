"""Per-caller rate limits of the costly API routes (``predict`` embeds texts in the request)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)


class PredictRateThrottle(UserRateThrottle):
    """CARVE_PREDICT_RATE predict requests per user (a token acts as its user), counted in
    the shared ``throttle`` cache. If that cache cannot be reached the request goes through:
    a rate limit must not turn a Redis outage into failed predictions."""

    scope = "predict"

    def __init__(self) -> None:
        self.cache = caches["throttle"]
        super().__init__()

    def get_rate(self) -> str:
        return str(settings.CARVE_PREDICT_RATE)

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return bool(super().allow_request(request, view))
        except Exception:  # the cache's connection errors depend on its backend
            logger.warning("rate-limit cache unreachable; request let through", exc_info=True)
            return True
