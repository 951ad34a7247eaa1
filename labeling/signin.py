"""Sign-in with a limit on guessing: after CARVE_SIGNIN_MAX_FAILURES failed passwords for
one account from one address, that pair must wait CARVE_SIGNIN_LOCK_SECONDS.

Failures are counted in the shared ``throttle`` cache (Redis), so every web process sees them;
if it cannot be reached, sign-in works without the limit rather than not at all.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import BaseCache, caches
from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)


def _key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()
    return f"signin-failures:{digest}"


def _address(request: Any) -> str:
    return str(getattr(request, "META", {}).get("REMOTE_ADDR", "")) if request else ""


class LimitedSignIn:
    """Mixed into Django's sign-in forms (the site's and the admin's)."""

    request: Any
    data: Any

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))
        key = _key(username, _address(self.request))
        cache: BaseCache | None = caches["throttle"]
        try:
            failures = int(caches["throttle"].get(key, 0))
        except Exception:  # the cache's connection errors depend on its backend
            logger.warning("sign-in limit cache unreachable; not counting", exc_info=True)
            failures, cache = 0, None
        if failures >= settings.CARVE_SIGNIN_MAX_FAILURES:
            minutes = max(1, settings.CARVE_SIGNIN_LOCK_SECONDS // 60)
            raise ValidationError(
                f"Too many failed sign-ins for this account from here; try again in "
                f"{minutes} minute(s).",
                code="locked",
            )
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]  # (a mixin)
        except ValidationError:
            if cache is not None:
                try:
                    cache.set(key, failures + 1, settings.CARVE_SIGNIN_LOCK_SECONDS)
                except Exception:
                    logger.warning("could not count a failed sign-in", exc_info=True)
            raise
        if cache is not None and failures:
            try:
                cache.delete(key)
            except Exception:
                logger.warning("could not reset the failed sign-ins", exc_info=True)
        return cleaned


class SignInForm(LimitedSignIn, AuthenticationForm):
    """The site's sign-in form, with the guessing limit."""


class AdminSignInForm(LimitedSignIn, AdminAuthenticationForm):
    """The admin's sign-in form, with the guessing limit."""
