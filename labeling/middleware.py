"""Request-level guards: before Django reads a request body, and around a database outage."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect

# Room for the multipart envelope and the form's other fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
logger = logging.getLogger(__name__)

#: What a client is told while the database is unreachable, and when to try again.
UNAVAILABLE = "The database is unavailable right now. Try again shortly."
RETRY_AFTER_SECONDS = 10


class RequestSizeLimitMiddleware:
    """Refuse a body larger than an upload may be (413) before anything reads it.

    Django's CSRF check reads request.POST, which spools a whole multipart body to disk; the
    upload form's own size check would come too late to stop a huge request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.CARVE_UPLOAD_MAX_BYTES + FORM_OVERHEAD_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self._error(request, "Bad Content-Length.", 400)
        if length > limit:
            message = (
                f"The request is {length:,} bytes; uploads are limited to "
                f"{settings.CARVE_UPLOAD_MAX_BYTES:,} bytes."
            )
            return self._error(request, message, 413)
        return self.get_response(request)

    @staticmethod
    def _error(request: HttpRequest, message: str, status: int) -> HttpResponse:
        if request.path.startswith("/api/"):  # API clients get JSON errors throughout
            return JsonResponse({"detail": message}, status=status)
        return HttpResponse(message, status=status, content_type="text/plain")


class HtmxLoginRedirectMiddleware:
    """An htmx request whose session expired gets the login page as a full-page redirect
    (HX-Redirect), instead of the login form swapped into a page fragment."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        login = resolve_url(settings.LOGIN_URL)
        if (
            getattr(request, "htmx", False)
            and response.status_code == 302
            and response["Location"].startswith(login)
        ):
            return HttpResponseClientRedirect(response["Location"])
        return response


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is the database being out of reach (not a bug in a query): a
    connection error whose connection is no longer usable."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    try:
        return not connection.is_usable()
    except DatabaseError:
        return True


class DatabaseUnavailableMiddleware:
    """A lost database connection answers 503 with Retry-After, not an error page: JSON under
    /api/ (the API's own handler does the same for its views), a short text page elsewhere."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unreachable(exception):
            return None  # a bug (a missing table, a deadlock): the ordinary 500 and its log
        logger.warning("database unreachable: %s", exception, exc_info=True)
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse({"detail": UNAVAILABLE}, status=503)
        else:
            response = HttpResponse(UNAVAILABLE, status=503, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
