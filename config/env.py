"""Typed readers for settings that come from the environment.

Each helper returns the variable's value converted to the requested type, or ``default`` when
the variable is unset or empty (``FOO=`` in a compose file means "not set"). A value that
cannot be converted raises ``ImproperlyConfigured`` naming the variable, so a typo stops the
process at start-up instead of silently falling back. Modelled on healthchecks'
``hc/settings.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _raw(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank. Not stripped."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value


def _stripped(name: str) -> str | None:
    value = _raw(name)
    return None if value is None else value.strip()


def envbool(name: str, default: bool) -> bool:
    """Read a boolean: true/false, 1/0, yes/no or on/off, in any case."""
    value = _stripped(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean; use one of true/false, 1/0, yes/no, on/off"
    )


def envint(name: str, default: int) -> int:
    """Read a base-10 integer."""
    value = _stripped(name)
    if value is None:
        return default
    try:
        return int(value, 10)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def envstr(name: str, default: str, *, choices: Iterable[str] | None = None) -> str:
    """Read a string; with ``choices``, reject anything else (compared case-insensitively).

    With ``choices`` the spelling given in ``choices`` is returned, so ``DB_ENGINE=Postgres``
    reads as ``"postgres"``.
    """
    value = _stripped(name)
    if value is None:
        return default
    if choices is None:
        return value
    allowed = list(choices)
    for choice in allowed:
        if value.lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(allowed)}")


def envlist(name: str, default: Iterable[str] = ()) -> list[str]:
    """Read a comma-separated list; blanks around items and empty items are dropped."""
    value = _stripped(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def envsecret(name: str, default: str | None = None) -> str | None:
    """Read a secret from ``NAME`` or from the file named by ``NAME_FILE`` (Docker secrets).

    Setting both is ambiguous and raises. The value is used as given (not stripped); from a
    file only the trailing newline is removed. An empty or unreadable file raises rather than
    falling back to ``default``.
    """
    value = _raw(name)
    file_name = f"{name}_FILE"
    path = _stripped(file_name)
    if path is None:
        return default if value is None else value
    if value is not None:
        raise ImproperlyConfigured(f"Set either {name} or {file_name}, not both")
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().rstrip("\r\n")
    except OSError as exc:
        raise ImproperlyConfigured(f"{file_name}={path!r} cannot be read: {exc}") from exc
    if not secret:
        raise ImproperlyConfigured(f"{file_name}={path!r} is empty")
    return secret
