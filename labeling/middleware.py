"""Request-level guards that must run before Django reads a request body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect

# Room for the multipart envelope and the form's other fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


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
