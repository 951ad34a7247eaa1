"""What a webhook subscribes to, and checking what a manager gives (docs/platform.md,
"Webhooks")."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from labeling.models import Campaign, Webhook

ITEM_LABELED = "item.labeled"
MODEL_TRAINED = "model.trained"
STOP_SUGGESTED = "campaign.stop_suggested"
EXPORT_READY = "export.ready"
#: The events a webhook may subscribe to, in the order pages list them.
EVENTS = (ITEM_LABELED, MODEL_TRAINED, STOP_SUGGESTED, EXPORT_READY)
#: Sent on request only (the "ping" action), whatever the webhook subscribes to.
PING = "ping"
DESCRIPTIONS = {
    ITEM_LABELED: "Labels were stored (coalesced: one request for the labels of a few seconds)",
    MODEL_TRAINED: "A model version finished training",
    STOP_SUGGESTED: "The stop rule first says more labels would gain little",
    EXPORT_READY: "An export job finished; its file can be downloaded",
}
URL_MAX_LENGTH = 500  # Webhook.url


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook's URL, or None: only http(s) with a host, no
    credentials in it (they would show in the delivery log and the page)."""
    if len(url) > URL_MAX_LENGTH:
        return f"Use a URL of at most {URL_MAX_LENGTH} characters."
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return "This is not a valid URL."
    del port
    if parts.scheme.lower() not in ("http", "https"):
        return "Use an http:// or https:// URL."
    if not parts.hostname:
        return "The URL needs a host name."
    if parts.username is not None or parts.password is not None:
        return "Put no user name or password in the URL: verify the signature instead."
    try:
        # What the worker's client will make of it: some URLs Django accepts it refuses
        # (a bad IDNA host such as "xn--zz.com" or full-width letters, control characters).
        httpx.Request("POST", url)
    except (httpx.InvalidURL, ValueError):
        return "This is not a valid URL."
    return None


def events_problem(events: Any) -> str | None:
    """Why ``events`` is not a list of event names to subscribe to, or None."""
    if not isinstance(events, list) or not events:
        return f"Choose at least one event: {', '.join(EVENTS)}."
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        return f"Unknown event {str(unknown[0])[:60]!r}: choose from {', '.join(EVENTS)}."
    return None


def ordered(events: Iterable[str]) -> list[str]:
    """The events once each, in :data:`EVENTS` order."""
    wanted = set(events)
    return [e for e in EVENTS if e in wanted]


def new_secret() -> str:
    """A signing secret: 32 random bytes as hex (64 characters)."""
    return secrets.token_hex(32)


def create(campaign: Campaign, url: str, events: Iterable[str], user: Any = None) -> Webhook:
    """A new active webhook of ``campaign`` with a fresh secret (checked input only)."""
    return Webhook.objects.create(
        campaign=campaign,
        url=url,
        events=ordered(events),
        secret=new_secret(),
        created_by=user if user is not None and user.is_authenticated else None,
    )
