"""Personal API tokens: created and revoked on the user's settings page, stored hashed."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.utils import timezone

from labeling.models import ApiToken

PREFIX = "carve_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(user: Any, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token itself (shown once)."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user, name=name, prefix=token[: len(PREFIX) + 6], digest=digest(token)
    )
    return row, token


def user_for(token: str) -> Any | None:
    """The active user a live token belongs to, or None; records when it was last used."""
    row = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if row is None:
        return None
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return row.user


def revoke(user: Any, token_id: int) -> bool:
    return bool(
        ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )
