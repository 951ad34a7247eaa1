"""Sign-in with a limit on guessing: after CARVE_SIGNIN_MAX_FAILURES failed passwords for
one account from one address (or five times as many from all addresses together), the account
must wait CARVE_SIGNIN_LOCK_SECONDS from there (from everywhere).

Failures are counted in the shared ``throttle`` cache (Redis), so every web process sees them;
if it cannot be reached, sign-in works without the limit rather than not at all.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import BaseCache, caches
from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)


#: Failures of one account from all addresses together, as a multiple of the per-address
#: limit: guessing spread over many addresses is stopped too.
ACCOUNT_FACTOR = 5


def _account(username: str) -> str:
    """The account a typed name signs in to: Django compares names NFKC-normalised, so
    "ａｌｉｃｅ" (full-width) is "alice" and must share her count."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _address(request: Any) -> str:
    """The client's address: REMOTE_ADDR, or behind CARVE_TRUSTED_PROXIES proxies the
    address the outermost trusted proxy saw (X-Forwarded-For, counted from the right)."""
    meta = getattr(request, "META", {}) if request else {}
    proxies = settings.CARVE_TRUSTED_PROXIES
    forwarded = [a.strip() for a in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    if proxies and len([a for a in forwarded if a]) >= proxies:
        return forwarded[-proxies]
    return str(meta.get("REMOTE_ADDR", ""))


def _keys(username: str, address: str) -> tuple[str, str]:
    account = _account(username)
    pair = hashlib.sha256(f"{account}|{address}".encode()).hexdigest()
    alone = hashlib.sha256(account.encode()).hexdigest()
    return f"signin-failures:{pair}", f"signin-failures-account:{alone}"


class LimitedSignIn:
    """Mixed into Django's sign-in forms (the site's and the admin's)."""

    request: Any
    data: Any

    def clean(self) -> dict[str, Any]:
        pair, account = _keys(str(self.data.get("username", "")), _address(self.request))
        most = settings.CARVE_SIGNIN_MAX_FAILURES
        cache: BaseCache | None = caches["throttle"]
        try:
            counts = caches["throttle"].get_many([pair, account])
        except Exception:  # the cache's connection errors depend on its backend
            logger.warning("sign-in limit cache unreachable; not counting", exc_info=True)
            counts, cache = {}, None
        if counts.get(pair, 0) >= most or counts.get(account, 0) >= most * ACCOUNT_FACTOR:
            minutes = max(1, settings.CARVE_SIGNIN_LOCK_SECONDS // 60)
            raise ValidationError(
                f"Too many failed sign-ins for this account; try again in {minutes} minute(s).",
                code="locked",
            )
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]  # (a mixin)
        except ValidationError:
            if cache is not None:
                try:  # add-then-incr: parallel failures each count
                    for key in (pair, account):
                        cache.add(key, 0, settings.CARVE_SIGNIN_LOCK_SECONDS)
                        cache.incr(key)
                except Exception:
                    logger.warning("could not count a failed sign-in", exc_info=True)
            raise
        if cache is not None and counts.get(pair):
            try:
                cache.delete(pair)
            except Exception:
                logger.warning("could not reset the failed sign-ins", exc_info=True)
        return cleaned


class SignInForm(LimitedSignIn, AuthenticationForm):
    """The site's sign-in form, with the guessing limit."""


class AdminSignInForm(LimitedSignIn, AdminAuthenticationForm):
    """The admin's sign-in form, with the guessing limit."""
