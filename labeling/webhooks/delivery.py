"""Deliveries: one event for one webhook, sent by a worker, retried, kept as the log
(docs/platform.md, "Webhooks").

- :func:`enqueue` makes a delivery for every active webhook of the campaign that subscribes to
  the event and sends the ``deliver_webhook`` task. ``item.labeled`` deliveries coalesce: while
  one is pending (``coalesce_key`` "item.labeled"; at most one per webhook, the partial unique
  constraint ``webhook_delivery_coalesced``), new item ids join it under a row lock instead of
  adding a request, and it waits CARVE_WEBHOOK_COALESCE_SECONDS before its first send.
- :func:`deliver` claims a due pending delivery (a conditional UPDATE to ``sending``, which
  also freezes its payload: a claimed delivery no longer coalesces), POSTs the signed JSON
  body, and records the outcome: ``delivered`` on a 2xx; otherwise ``pending`` again after a
  backoff, or ``failed`` after CARVE_WEBHOOK_MAX_ATTEMPTS attempts.
- :func:`sweep` (run by the resend timer, :mod:`labeling.resend`) sends due deliveries whose
  message was lost, and hands back deliveries left ``sending`` by a worker that died.

The URL is called from the worker's network: only a campaign's managers can set it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from labeling import queue
from labeling.models import Webhook, WebhookDelivery
from labeling.webhooks.subscriptions import ITEM_LABELED, PING, url_problem

logger = logging.getLogger(__name__)
Status = WebhookDelivery.Status

#: Item ids one item.labeled delivery lists at most; more set ``truncated``.
MAX_ITEM_IDS = 1000
#: Characters of an error (or of the response body quoted in it) kept on the delivery.
ERROR_MAX = 1000
#: Bytes of a non-2xx response body read for the error message.
BODY_PEEK = 300
USER_AGENT = "Carve-Webhooks/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Carve-Signature`` header: ``sha256=`` + hex HMAC-SHA256 under ``secret`` of
    ``timestamp``, a dot, and the raw request body."""
    message = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failed attempts: BACKOFF · 2^(attempts-1), capped."""
    base = settings.CARVE_WEBHOOK_BACKOFF_SECONDS
    return float(min(base * 2 ** max(attempts - 1, 0), settings.CARVE_WEBHOOK_BACKOFF_MAX_SECONDS))


def _payload(event: str, campaign_id: int, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {"event": event, "campaign": campaign_id, "created_at": at.isoformat(), "data": data}


def body_of(delivery: WebhookDelivery) -> bytes:
    """The request body: the payload with the delivery's ``id`` first, compact JSON."""
    return json.dumps({"id": delivery.pk, **delivery.payload}, separators=(",", ":")).encode()


def _send_later(delivery_id: int, seconds: float) -> bool:
    """Send the delivery task in ``seconds``; a broker that is down is logged (the sweep
    sends the delivery later). Returns whether sent."""
    try:
        queue.send(queue.DELIVER_WEBHOOK, delivery_id, countdown=max(seconds, 0.0) or None)
    except BrokerError:
        logger.warning("could not send webhook delivery %s", delivery_id, exc_info=True)
        return False
    return True


def _send_on_commit(delivery_id: int, seconds: float) -> None:
    transaction.on_commit(lambda: _send_later(delivery_id, seconds), robust=True)


def subscribed(campaign_id: int, event: str) -> list[Webhook]:
    """The campaign's active webhooks that want ``event`` (filtered here: SQLite has no JSON
    containment lookup)."""
    hooks = Webhook.objects.filter(campaign_id=campaign_id, active=True).only("pk", "events")
    return [hook for hook in hooks if event in (hook.events or [])]


def enqueue(campaign_id: int, event: str, data: dict[str, Any]) -> list[WebhookDelivery]:
    """A delivery of ``event`` for each subscribed webhook of the campaign, sent at once."""
    now = timezone.now()
    made = []
    for hook in subscribed(campaign_id, event):
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                webhook=hook,
                event=event,
                payload=_payload(event, campaign_id, data, now),
                next_attempt_at=now,
            )
            _send_on_commit(delivery.pk, 0)
        made.append(delivery)
    return made


def enqueue_labeled(campaign_id: int, item_ids: list[int], n_labels: int) -> list[int]:
    """Tell the subscribed webhooks that ``item_ids`` were labeled, joining each webhook's
    pending item.labeled delivery if it has one. Returns the delivery ids touched."""
    touched = []
    for hook in subscribed(campaign_id, ITEM_LABELED):
        touched.append(_coalesce(hook, campaign_id, item_ids, n_labels))
    return touched


def _merged(data: dict[str, Any], item_ids: list[int], n_labels: int) -> dict[str, Any]:
    ids: list[int] = list(data.get("item_ids", []))
    seen = set(ids)
    truncated = bool(data.get("truncated"))
    for pk in item_ids:
        if pk in seen:
            continue
        if len(ids) >= MAX_ITEM_IDS:
            truncated = True
            break
        ids.append(pk)
        seen.add(pk)
    return {
        "item_ids": ids,
        "n_labels": int(data.get("n_labels", 0)) + n_labels,
        "truncated": truncated,
    }


def _coalesce(hook: Webhook, campaign_id: int, item_ids: list[int], n_labels: int) -> int:
    """Join the webhook's pending item.labeled delivery, or create it (race-safe: the row is
    locked while it is changed, a claim by a worker waits for that lock, and two creations at
    once meet the partial unique constraint: the loser reads the winner's row and joins it)."""
    for _ in range(5):
        try:
            with transaction.atomic():
                pending = (
                    WebhookDelivery.objects.select_for_update()
                    .filter(webhook=hook, coalesce_key=ITEM_LABELED, status=Status.PENDING)
                    .first()
                )
                if pending is not None:
                    payload = dict(pending.payload)
                    payload["data"] = _merged(payload.get("data") or {}, item_ids, n_labels)
                    # Still pending? Without row locks (SQLite) a worker may have claimed it
                    # since the read: its body is sent already, so these ids start the next.
                    if WebhookDelivery.objects.filter(
                        pk=pending.pk, status=Status.PENDING, coalesce_key=ITEM_LABELED
                    ).update(payload=payload):
                        return pending.pk
                    continue
                delay = settings.CARVE_WEBHOOK_COALESCE_SECONDS
                now = timezone.now()
                data = _merged({}, item_ids, n_labels)
                delivery = WebhookDelivery.objects.create(
                    webhook=hook,
                    event=ITEM_LABELED,
                    coalesce_key=ITEM_LABELED,
                    payload=_payload(ITEM_LABELED, campaign_id, data, now),
                    next_attempt_at=now + timedelta(seconds=delay),
                )
                _send_on_commit(delivery.pk, delay)
                return delivery.pk
        except IntegrityError:
            continue  # another process created the pending delivery meanwhile: join it
    raise RuntimeError(f"could not record item.labeled for webhook {hook.pk}")


def redeliver(delivery: WebhookDelivery) -> WebhookDelivery:
    """A new delivery with the same event and payload, sent now (the original stays in the
    log as it was)."""
    with transaction.atomic():
        again = WebhookDelivery.objects.create(
            webhook_id=delivery.webhook_id,
            event=delivery.event,
            payload=delivery.payload,
            next_attempt_at=timezone.now(),
        )
        _send_on_commit(again.pk, 0)
    return again


def ping(hook: Webhook) -> WebhookDelivery:
    """A ``ping`` delivery, sent now, whatever the webhook subscribes to."""
    now = timezone.now()
    data = {"webhook": hook.pk, "url": hook.url, "events": hook.events}
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            webhook=hook,
            event=PING,
            payload=_payload(PING, hook.campaign_id, data, now),
            next_attempt_at=now,
        )
        _send_on_commit(delivery.pk, 0)
    return delivery


def deliver(delivery_id: int) -> str:
    """Send delivery ``delivery_id`` once, if it is pending and due; returns what happened:
    "delivered", "retry", "failed", "early" (sent again for when it is due) or "nothing"
    (gone, taken by another run, or already finished)."""
    row = WebhookDelivery.objects.filter(pk=delivery_id).only("status", "next_attempt_at").first()
    if row is None or row.status != Status.PENDING:
        return "nothing"
    now = timezone.now()
    if row.next_attempt_at is not None and row.next_attempt_at > now:
        # Early: a duplicate message, or this worker's clock is behind the sender's.
        _send_later(delivery_id, (row.next_attempt_at - now).total_seconds())
        return "early"
    # The claim freezes the payload: coalescing looks for a *pending* row with the key.
    claimed = WebhookDelivery.objects.filter(pk=delivery_id, status=Status.PENDING).update(
        status=Status.SENDING, coalesce_key="", sent_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        return "nothing"
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return "nothing"  # its webhook was removed meanwhile, with its deliveries
    hook = delivery.webhook
    if not hook.active:
        return _finish(
            delivery, ok=False, status=None, error="The webhook was turned off.", final=True
        )
    problem = url_problem(hook.url)
    if problem is not None:
        return _finish(delivery, ok=False, status=None, error=problem, final=True)
    code, error = post(hook.url, hook.secret, delivery.event, delivery.pk, body_of(delivery))
    ok = code is not None and 200 <= code < 300
    return _finish(delivery, ok=ok, status=code, error=error)


def post(
    url: str, secret: str, event: str, delivery_id: int, body: bytes
) -> tuple[int | None, str]:
    """POST the signed body; returns (HTTP status or None, error text or "")."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Carve-Event": event,
        "X-Carve-Delivery": str(delivery_id),
        "X-Carve-Timestamp": timestamp,
        "X-Carve-Signature": sign(secret, timestamp, body),
    }
    timeout = float(settings.CARVE_WEBHOOK_TIMEOUT_SECONDS)
    try:
        # Redirects are not followed: the signed request goes to the URL the manager set.
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            code = response.status_code
            if 200 <= code < 300:
                return code, ""
            peek = b""
            for chunk in response.iter_bytes():
                peek += chunk
                if len(peek) >= BODY_PEEK:
                    break
            text = peek[:BODY_PEEK].decode("utf-8", errors="replace").strip()
            where = response.headers.get("location")
            if 300 <= code < 400 and where:
                return code, f"HTTP {code}: redirect to {where[:200]} not followed"
            return code, f"HTTP {code}" + (f": {text}" if text else "")
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # (a URL httpx refuses)
        return None, f"{type(exc).__name__}: {exc}"[:ERROR_MAX]


def _finish(
    delivery: WebhookDelivery, *, ok: bool, status: int | None, error: str, final: bool = False
) -> str:
    """Record an attempt's outcome on the claimed row (only if it is still this claim)."""
    now = timezone.now()
    mine = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=Status.SENDING, sent_at=delivery.sent_at
    )
    fields: dict[str, Any] = {"response_status": status, "error": error[:ERROR_MAX]}
    if ok:
        mine.update(status=Status.DELIVERED, delivered_at=now, next_attempt_at=None, **fields)
        return "delivered"
    if final or delivery.attempts >= settings.CARVE_WEBHOOK_MAX_ATTEMPTS:
        mine.update(status=Status.FAILED, next_attempt_at=None, **fields)
        logger.info("webhook delivery %s failed for good: %s", delivery.pk, error)
        return "failed"
    wait = backoff(delivery.attempts)
    if mine.update(status=Status.PENDING, next_attempt_at=now + timedelta(seconds=wait), **fields):
        _send_later(delivery.pk, wait)
    return "retry"


def sweep(now: datetime | None = None) -> int:
    """Send again what looks stuck; returns how many messages were sent.

    A delivery ``sending`` for longer than the timeout plus CARVE_JOB_STALE_SECONDS lost its
    worker: it is pending again (or failed, when it had its last attempt). A pending delivery
    due CARVE_RESEND_SECONDS ago lost its message (the broker was down): it is sent again,
    once per period whatever the number of workers (``next_attempt_at`` moves with a
    conditional UPDATE).
    """
    now = now or timezone.now()
    dead = now - timedelta(
        seconds=settings.CARVE_WEBHOOK_TIMEOUT_SECONDS + settings.CARVE_JOB_STALE_SECONDS
    )
    sent = 0
    stuck = WebhookDelivery.objects.filter(status=Status.SENDING, sent_at__lt=dead)
    for pk, sent_at, attempts in stuck.values_list("pk", "sent_at", "attempts")[:500]:
        mine = WebhookDelivery.objects.filter(pk=pk, status=Status.SENDING, sent_at=sent_at)
        if attempts >= settings.CARVE_WEBHOOK_MAX_ATTEMPTS:
            mine.update(
                status=Status.FAILED,
                next_attempt_at=None,
                error="The worker sending it stopped before the endpoint answered.",
            )
        elif mine.update(status=Status.PENDING, next_attempt_at=now) and _send_later(pk, 0):
            sent += 1
    cut = now - timedelta(seconds=max(settings.CARVE_RESEND_SECONDS, 1))
    due = WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=cut)
    for pk, at in due.values_list("pk", "next_attempt_at")[:500]:
        moved = WebhookDelivery.objects.filter(
            pk=pk, status=Status.PENDING, next_attempt_at=at
        ).update(next_attempt_at=now)
        if moved and _send_later(pk, 0):
            sent += 1
    return sent
