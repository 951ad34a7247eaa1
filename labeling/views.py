from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness probe for load balancers and Docker: 200 "ok" when the database answers.

    On failure it returns 503 with the exception's class name only; details go to the log.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("healthz: database check failed", exc_info=True)
        return HttpResponse(type(exc).__name__, status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")
