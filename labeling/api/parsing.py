"""Request parsing and errors of the API beyond DRF's defaults (all errors are JSON)."""

from __future__ import annotations

import contextlib
import json
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from labeling.middleware import RETRY_AFTER_SECONDS, UNAVAILABLE, database_unreachable


class ImportJSONParser(BaseParser):
    """JSON bodies as large as an upload may be (CARVE_UPLOAD_MAX_BYTES).

    DRF's JSONParser goes through ``request.body``, which Django caps at
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) to protect every form; a JSON list of items for the
    import endpoint may be as large as a file upload, so it reads the stream itself.
    """

    media_type = "application/json"

    def parse(
        self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        if stream is None:
            return {}
        limit = settings.CARVE_UPLOAD_MAX_BYTES
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise RequestDataTooBig(f"The JSON body is over {limit:,} bytes.")
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError(TOO_DEEP) from None


#: Python's json module recurses per level of nesting; a hostile body nests thousands deep.
TOO_DEEP = "JSON parse error - the body is nested too deeply."


class StrictJSONParser(JSONParser):
    """DRF's JSON parser (NaN and Infinity refused), with deep nesting a 400 as well."""

    strict = True

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler; a JSON 413 (not Django's HTML 400) for a body over the limits; a JSON
    503 with Retry-After (not an HTML 500) while the database is unreachable."""
    if database_unreachable(exc):
        with contextlib.suppress(DatabaseError):
            set_rollback()
        return Response(
            {"detail": UNAVAILABLE},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {
                "detail": f"The request body is too large ({exc}). Bodies other than imports "
                f"are limited to {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes; imports (a "
                f"multipart file or a JSON items list) to {settings.CARVE_UPLOAD_MAX_BYTES:,}."
            },
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: JSON under /api/ (a path no route matches), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception or Http404())
