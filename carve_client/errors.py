"""The errors the client raises: one hierarchy under :class:`CarveError`.

``ApiError`` carries the HTTP status and the server's message (its ``detail``, or its
per-field messages joined); :class:`NotFound` and :class:`PermissionDenied` are the answers a
caller may want to tell apart (404; 401 or 403). A wait that runs out raises
:class:`Timeout`, a background job that fails :class:`JobFailed`.
"""

from __future__ import annotations

from typing import Any


class CarveError(Exception):
    """The base of every error raised by :mod:`carve_client`."""


class ApiError(CarveError):
    """The server answered with an error status.

    Parameters
    ----------
    status : int
        The HTTP status code.
    message : str
        The server's message (``detail`` or the per-field messages, joined).
    body : Any
        The decoded JSON body, or the text of a non-JSON answer.
    retry_after : float or None
        The ``Retry-After`` header in seconds, when the server sent one.
    """

    def __init__(
        self, status: int, message: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after


class NotFound(ApiError):
    """404: no such campaign, item, job or model version, or one the caller may not see
    (the server answers 404 for campaigns the caller is not on)."""


class PermissionDenied(ApiError):
    """401 (a missing, unknown or revoked token) or 403 (an annotator trying a manager's
    action)."""


class ImportRefused(ApiError):
    """400 from an import: the file was refused and nothing was imported.

    Attributes
    ----------
    errors : list of str
        The upload checks' messages (the import job's ``errors``).
    """

    def __init__(
        self, status: int, message: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(status, message, body, retry_after)
        found = body.get("errors") if isinstance(body, dict) else None
        self.errors: list[str] = [str(e) for e in found] if isinstance(found, list) else []


class Timeout(CarveError):
    """A wait (an import, the embeddings, a model version, an export) ran past its timeout."""


class JobFailed(CarveError):
    """A background job on the server ended in ``failed``.

    Parameters
    ----------
    what : str
        Which job: "import", "embedding", "model version", "export".
    message : str
        The job's ``error`` (or its ``errors``, joined).
    """

    def __init__(self, what: str, message: str) -> None:
        super().__init__(f"{what} failed: {message}")
        self.what = what
        self.message = message


def message_of(body: Any, fallback: str) -> str:
    """The human message of an error body: ``detail``, else ``field: message`` pairs."""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                return detail + " " + " ".join(str(e) for e in errors)
            return detail
        parts = []
        for field, value in body.items():
            text = " ".join(str(v) for v in value) if isinstance(value, list) else str(value)
            parts.append(f"{field}: {text}")
        if parts:
            return "; ".join(parts)
    if isinstance(body, list) and body:
        return " ".join(str(v) for v in body)
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback


def error_for(status: int, body: Any, retry_after: float | None = None) -> ApiError:
    """The :class:`ApiError` subclass for an error answer."""
    message = message_of(body, f"HTTP {status}")
    if status == 404:
        return NotFound(status, message, body, retry_after)
    if status in (401, 403):
        return PermissionDenied(status, message, body, retry_after)
    return ApiError(status, message, body, retry_after)
