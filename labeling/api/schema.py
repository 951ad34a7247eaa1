"""The error answers every API operation can give, added to the OpenAPI schema.

drf-spectacular documents what each view declares; the errors come from shared code (auth,
permissions, validation, the database guard), so they are added here once, to every
operation that can give them: a client generated from the schema then knows them all.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "description": "``detail`` says what went wrong; a 400 for invalid fields maps each field "
    "to its messages instead (an import refused for its content also carries the job).",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}

_WHY = {
    "400": "Invalid input: the fields or the query, with a message for each problem.",
    "401": "No valid credentials: a missing, unknown or revoked token, or no session.",
    "403": "Signed in, but not allowed (e.g. an annotator on a manager's operation).",
    "404": "No such campaign for this caller (or no such object in it).",
    "429": "Too many requests: wait as long as Retry-After says.",
    "503": "The database is unreachable for a moment: try again after Retry-After seconds.",
}


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            codes = ["400", "401", "403", "503"]
            if "{" in path:
                codes.append("404")
            if path.endswith("/predict/"):
                codes.append("429")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {"description": _WHY[code], "content": ref})
    return result
