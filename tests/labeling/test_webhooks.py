"""Webhooks (docs/platform.md, "Webhooks"): management by API and page, who may manage them,
the delivery rows the campaign events make (item.labeled coalesced, stop_suggested once per
transition), and, on the real stack (redis-server, a Celery worker process, a local HTTP
receiver in a thread), signed deliveries, retries with backoff and failure after the last
attempt."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from labeling import annotation, campaign_learner, evaluation, signals
from labeling.models import Campaign, ExportJob, Item, Webhook, WebhookDelivery
from labeling.webhooks import delivery, subscriptions
from tests.labeling.builders import embedded_campaign
from tests.support.clients import api_as, logged_in
from tests.support.processes import Worker, free_port, wait_for

Status = WebhookDelivery.Status


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does, written here without Carve's code: HMAC-SHA256 under the secret
    of ``<X-Carve-Timestamp>.<raw body>``, compared in constant time."""
    expected = hmac.new(
        secret.encode(), headers["x-carve-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers["x-carve-signature"])


# --- the signature ----------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() -> None:
    body = b'{"id":7,"event":"ping"}'
    signature = delivery.sign("s3cret", "1700000000", body)
    # Computed independently: python -c "import hmac,hashlib; print(hmac.new(b's3cret',
    # b'1700000000.{\"id\":7,\"event\":\"ping\"}', hashlib.sha256).hexdigest())"
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert _verify(
        "s3cret", {"x-carve-timestamp": "1700000000", "x-carve-signature": signature}, body
    )
    assert delivery.sign("s3cret", "1700000001", body) != signature  # the timestamp counts
    assert delivery.sign("other", "1700000000", body) != signature


def test_the_backoff_doubles_from_the_base_and_is_capped(settings: Any) -> None:
    settings.CARVE_WEBHOOK_BACKOFF_SECONDS = 10
    settings.CARVE_WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    assert [delivery.backoff(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert delivery.backoff(20) == 3600


# --- management through the API ------------------------------------------------------------


def _hooks(campaign: Campaign) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/webhooks/"


@pytest.mark.django_db
def test_a_manager_creates_lists_updates_and_deletes_webhooks(
    campaign: Campaign, manager: Any
) -> None:
    client = api_as(manager)
    created = client.post(
        _hooks(campaign),
        {"url": "https://hooks.example.org/carve", "events": ["export.ready", "item.labeled"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["events"] == ["item.labeled", "export.ready"]  # in the documented order
    assert body["active"] is True and body["created_by"] == "manager"
    hook = Webhook.objects.get(pk=body["id"])
    assert body["secret"] == hook.secret and len(hook.secret) == 64
    int(hook.secret, 16)  # hex

    listed = client.get(_hooks(campaign))
    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert [r["id"] for r in rows] == [hook.pk] and "secret" not in rows[0]
    one = client.get(f"{_hooks(campaign)}{hook.pk}/")
    assert one.status_code == 200 and "secret" not in one.json()

    patched = client.patch(
        f"{_hooks(campaign)}{hook.pk}/", {"events": ["model.trained"], "active": False}, "json"
    )
    assert patched.status_code == 200, patched.content
    hook.refresh_from_db()
    assert (hook.events, hook.active) == (["model.trained"], False)

    assert client.delete(f"{_hooks(campaign)}{hook.pk}/").status_code == 204
    assert not Webhook.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.org/x", "events": ["item.labeled"]}, "url"),
        ({"url": "javascript:alert(1)", "events": ["item.labeled"]}, "url"),
        ({"url": "https://user:pw@example.org/", "events": ["item.labeled"]}, "url"),
        ({"url": "not a url", "events": ["item.labeled"]}, "url"),
        ({"url": "https://example.org/" + "x" * 600, "events": ["item.labeled"]}, "url"),
        # Accepted by Django's URL check, refused by the worker's httpx (bad IDNA hosts).
        ({"url": "http://xn--zz.com/", "events": ["item.labeled"]}, "url"),
        ({"url": "http://\uff41\uff42\uff43.com/", "events": ["item.labeled"]}, "url"),
        ({"url": "https://example.org/", "events": ["item.deleted"]}, "events"),
        ({"url": "https://example.org/", "events": []}, "events"),
        ({"url": "https://example.org/", "events": "item.labeled"}, "events"),
        ({"url": "https://example.org/"}, "events"),
        ({"events": ["item.labeled"]}, "url"),
    ],
)
def test_a_bad_url_or_bad_events_are_a_400_naming_the_field(
    campaign: Campaign, manager: Any, body: dict[str, Any], field: str
) -> None:
    answer = api_as(manager).post(_hooks(campaign), body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()
    assert not Webhook.objects.exists()


@pytest.mark.django_db
def test_ids_of_thousands_of_digits_are_a_404_not_a_500(campaign: Campaign, manager: Any) -> None:
    hook = subscriptions.create(campaign, "https://example.org/h", ["item.labeled"], manager)
    big = "9" * 5000  # int() refuses strings of over 4,300 digits
    client = api_as(manager)
    assert client.get(f"/api/v1/campaigns/{big}/webhooks/").status_code == 404
    assert client.get(f"/api/v1/campaigns/{big}/near-duplicates/").status_code == 404
    redeliver = f"{_hooks(campaign)}{hook.pk}/deliveries/{big}/redeliver/"
    assert client.post(redeliver).status_code == 404
    assert client.get(f"{_hooks(campaign)}{'9' * 19}/").status_code == 404


@pytest.mark.django_db
def test_annotators_and_outsiders_can_neither_see_nor_manage_webhooks(
    campaign: Campaign, manager: Any, annotator: Any, outsider: Any, other_manager: Any
) -> None:
    hook = subscriptions.create(campaign, "https://example.org/h", ["item.labeled"], manager)
    base = _hooks(campaign)
    for user, code in ((annotator, 403), (outsider, 404), (other_manager, 404)):
        client = api_as(user)
        assert client.get(base).status_code == code
        assert client.get(f"{base}{hook.pk}/").status_code == code
        assert client.get(f"{base}{hook.pk}/deliveries/").status_code == code
        made = client.post(base, {"url": "https://evil.example/", "events": ["item.labeled"]})
        assert made.status_code == code
        assert client.delete(f"{base}{hook.pk}/").status_code == code
        assert client.post(f"{base}{hook.pk}/ping/").status_code == code
        page = logged_in(user).get(f"/campaigns/{campaign.pk}/webhooks/")
        assert page.status_code == code
        assert hook.secret.encode() not in page.content
    assert list(Webhook.objects.values_list("pk", flat=True)) == [hook.pk]
    assert not WebhookDelivery.objects.exists()  # no ping went out
    detail = logged_in(annotator).get(f"/campaigns/{campaign.pk}/")
    assert b"webhooks-link" not in detail.content
    assert b"webhooks-link" in logged_in(manager).get(f"/campaigns/{campaign.pk}/").content


@pytest.mark.django_db
def test_deliveries_are_listed_and_can_be_redelivered_or_pinged(
    campaign: Campaign, manager: Any, other_manager: Any
) -> None:
    hook = subscriptions.create(campaign, "https://example.org/h", ["export.ready"], manager)
    other = Campaign.objects.create(name="Other", created_by=other_manager)
    foreign = subscriptions.create(other, "https://example.org/o", ["export.ready"])
    [first] = delivery.enqueue(campaign.pk, "export.ready", {"export_job": 1})
    [theirs] = delivery.enqueue(other.pk, "export.ready", {"export_job": 2})
    client = api_as(manager)
    base = f"{_hooks(campaign)}{hook.pk}/"

    again = client.post(f"{base}deliveries/{first.pk}/redeliver/")
    assert again.status_code == 202, again.content
    assert again.json()["id"] != first.pk and again.json()["event"] == "export.ready"
    assert again.json()["payload"] == first.payload
    pinged = client.post(f"{base}ping/")
    assert pinged.status_code == 202 and pinged.json()["event"] == "ping"

    log = client.get(f"{base}deliveries/?limit=2").json()
    assert log["count"] == 3
    assert [d["id"] for d in log["results"]] == [pinged.json()["id"], again.json()["id"]]
    # Another campaign's delivery or webhook is not reachable through this one.
    assert client.post(f"{base}deliveries/{theirs.pk}/redeliver/").status_code == 404
    assert client.get(f"{_hooks(campaign)}{foreign.pk}/").status_code == 404
    assert client.get(f"{base}deliveries/?limit=x").status_code == 400


# --- the page ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_adds_a_webhook_shows_its_secret_once_and_removes_it(
    campaign: Campaign, manager: Any
) -> None:
    client = logged_in(manager)
    url = f"/campaigns/{campaign.pk}/webhooks/"
    assert client.get(url).status_code == 200

    refused = client.post(url, {"url": "ftp://example.org/", "events": ["item.labeled"]})
    assert refused.status_code == 400
    assert b"Use an http:// or https:// URL." in refused.content
    none = client.post(url, {"url": "https://example.org/"})
    assert none.status_code == 400 and b"Choose at least one event." in none.content

    added = client.post(
        url, {"url": "https://example.org/hook", "events": ["item.labeled", "model.trained"]}
    )
    assert added.status_code == 200
    hook = Webhook.objects.get(campaign=campaign)
    assert hook.events == ["item.labeled", "model.trained"] and hook.created_by == manager
    assert hook.secret.encode() in added.content
    later = client.get(url)
    assert (
        hook.secret.encode() not in later.content and b"https://example.org/hook" in later.content
    )

    delivery.enqueue_labeled(campaign.pk, [1, 2], 2)
    log = client.get(url, headers={"HX-Request": "true"})
    assert log.status_code == 200
    text = log.content.decode()
    assert text.lstrip().startswith('<div id="delivery-log"') and "item.labeled" in text
    assert 'hx-trigger="load delay:5s"' in text  # a pending delivery: it refreshes

    client.post(url, {"webhook": hook.pk, "action": "ping"})
    assert WebhookDelivery.objects.filter(webhook=hook, event="ping").count() == 1
    client.post(url, {"webhook": hook.pk, "action": "toggle"})
    hook.refresh_from_db()
    assert hook.active is False
    gone = client.post(url, {"webhook": hook.pk, "action": "delete"}, follow=True)
    assert gone.status_code == 200 and b"removed" in gone.content
    assert not Webhook.objects.exists()
    bad = client.post(url, {"webhook": "x", "action": "delete"}, follow=True)
    assert bad.status_code == 200 and b"No such webhook" in bad.content


# --- the delivery rows the events make -------------------------------------------------------


@pytest.mark.django_db
def test_item_labeled_coalesces_into_one_pending_delivery_until_it_is_claimed(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    settings.CARVE_WEBHOOK_COALESCE_SECONDS = 5
    hook = subscriptions.create(campaign, "https://example.org/h", ["item.labeled"])
    subscriptions.create(campaign, "https://example.org/other", ["model.trained"])
    before = timezone.now()
    delivery.enqueue_labeled(campaign.pk, [3, 1], 2)
    delivery.enqueue_labeled(campaign.pk, [1, 5], 2)  # item 1 relabeled
    [pending] = WebhookDelivery.objects.all()
    assert pending.webhook_id == hook.pk and pending.status == Status.PENDING
    data = pending.payload["data"]
    assert data == {"item_ids": [3, 1, 5], "n_labels": 4, "truncated": False}
    assert pending.payload["event"] == "item.labeled"
    assert pending.payload["campaign"] == campaign.pk
    assert pending.next_attempt_at is not None
    assert pending.next_attempt_at >= before + timedelta(seconds=5)

    # A claimed delivery's payload is frozen: new labels start the next delivery.
    WebhookDelivery.objects.filter(pk=pending.pk).update(status=Status.SENDING, coalesce_key="")
    delivery.enqueue_labeled(campaign.pk, list(range(100, 1600)), 1500)
    newer = WebhookDelivery.objects.exclude(pk=pending.pk).get()
    assert newer.payload["data"]["item_ids"] == list(range(100, 1100))  # capped at 1000
    assert newer.payload["data"]["truncated"] is True
    assert newer.payload["data"]["n_labels"] == 1500
    pending.refresh_from_db()
    assert pending.payload["data"]["item_ids"] == [3, 1, 5]


@pytest.mark.django_db
def test_labels_arriving_while_a_worker_claims_the_delivery_start_the_next_one(
    campaign: Campaign, monkeypatch: Any
) -> None:
    hook = subscriptions.create(campaign, "https://example.org/h", ["item.labeled"])
    delivery.enqueue_labeled(campaign.pk, [1], 1)
    [first] = WebhookDelivery.objects.all()
    merged = delivery._merged

    def claimed_meanwhile(data: dict[str, Any], item_ids: list[int], n: int) -> Any:
        # A worker claims the row between the coalescing read and its write (SQLite takes
        # no row lock for SELECT ... FOR UPDATE).
        WebhookDelivery.objects.filter(pk=first.pk).update(status=Status.SENDING, coalesce_key="")
        return merged(data, item_ids, n)

    monkeypatch.setattr(delivery, "_merged", claimed_meanwhile)
    delivery.enqueue_labeled(campaign.pk, [2], 1)
    first.refresh_from_db()
    assert first.payload["data"]["item_ids"] == [1]  # what the worker sends, unchanged
    newer = WebhookDelivery.objects.exclude(pk=first.pk).get()
    assert newer.webhook_id == hook.pk and newer.payload["data"]["item_ids"] == [2]


@pytest.mark.django_db
def test_a_delivery_whose_webhook_is_removed_while_it_is_claimed_is_nothing(
    campaign: Campaign, monkeypatch: Any
) -> None:
    monkeypatch.setattr(delivery, "_send_later", lambda pk, seconds: True)
    hook = subscriptions.create(campaign, "https://example.org/h", ["export.ready"])
    [row] = delivery.enqueue(campaign.pk, "export.ready", {})
    real = WebhookDelivery.objects.filter

    def filter_then_remove(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("status") == Status.PENDING and kwargs.get("pk") == row.pk:
            answer = real(*args, **kwargs)
            claimed = answer.update(status=Status.SENDING, coalesce_key="", attempts=1)
            Webhook.objects.filter(pk=hook.pk).delete()  # removed on the page meanwhile
            return type("Claimed", (), {"update": lambda self, **kw: claimed})()
        return real(*args, **kwargs)

    monkeypatch.setattr(WebhookDelivery.objects, "filter", filter_then_remove)
    assert delivery.deliver(row.pk) == "nothing"


@pytest.mark.django_db
def test_a_stored_label_becomes_an_item_labeled_delivery_after_commit(
    campaign: Campaign, annotator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    items, _ = embedded_campaign(campaign, 4)
    subscriptions.create(campaign, "https://example.org/h", ["item.labeled"])
    with django_capture_on_commit_callbacks(execute=True):
        annotation.submit_label(items[0], annotator, "positive")
        assert not WebhookDelivery.objects.exists()  # not before the commit
    with django_capture_on_commit_callbacks(execute=True):
        annotation.submit_label(items[0], annotator, "positive")  # a repeat: no new label
        annotation.submit_label(items[2], annotator, "negative")
    [row] = WebhookDelivery.objects.all()
    assert row.payload["data"] == {
        "item_ids": [items[0].pk, items[2].pk],
        "n_labels": 2,
        "truncated": False,
    }


@pytest.mark.django_db
def test_stop_suggested_is_sent_once_when_the_stop_rule_first_says_stop(
    campaign: Campaign,
    annotator: Any,
    monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    items, _ = embedded_campaign(campaign, 40, retrain_every=0)
    subscriptions.create(campaign, "https://example.org/h", ["campaign.stop_suggested"])

    # The stop rule (tested in test_evaluation.py) says stop from the second point on.
    def rule(curve: Any) -> evaluation.StopEstimate:
        return evaluation.StopEstimate(len(list(curve)) >= 2, 0, "test rule")

    monkeypatch.setattr(evaluation, "stop_estimate", rule)
    names = ["negative", "positive"]
    for round_ in range(3):
        for item in items[round_ * 6 : round_ * 6 + 6]:
            annotation.submit_label(item, annotator, names[item.position % 2])
        campaign_learner.update_learner(campaign.pk)
        with django_capture_on_commit_callbacks(execute=True):
            point = campaign_learner.measure_learner(campaign.pk)
        assert point is not None, f"no curve point in round {round_}"
        sent = WebhookDelivery.objects.filter(event="campaign.stop_suggested")
        assert sent.count() == (0 if round_ == 0 else 1), f"round {round_}"
    [row] = WebhookDelivery.objects.filter(event="campaign.stop_suggested")
    assert row.payload["data"]["n_labels"] == 12
    assert row.payload["data"]["metrics"] == f"/api/v1/campaigns/{campaign.pk}/metrics/"


@pytest.mark.django_db
def test_the_sweep_resends_lost_messages_and_hands_back_deliveries_of_dead_workers(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    settings.CARVE_RESEND_SECONDS = 30
    settings.CARVE_WEBHOOK_MAX_ATTEMPTS = 3
    hook = subscriptions.create(campaign, "https://example.org/h", ["export.ready"])
    sent: list[int] = []
    monkeypatch.setattr(delivery, "_send_later", lambda pk, seconds: sent.append(pk) or True)
    now = timezone.now()
    lost = WebhookDelivery.objects.create(
        webhook=hook, event="export.ready", next_attempt_at=now - timedelta(minutes=5)
    )
    fresh = WebhookDelivery.objects.create(webhook=hook, event="export.ready", next_attempt_at=now)
    dead = WebhookDelivery.objects.create(
        webhook=hook, event="export.ready", status=Status.SENDING, attempts=1,
        sent_at=now - timedelta(hours=1),
    )  # fmt: skip
    last = WebhookDelivery.objects.create(
        webhook=hook, event="export.ready", status=Status.SENDING, attempts=3,
        sent_at=now - timedelta(hours=1),
    )  # fmt: skip

    assert delivery.sweep(now) == 2
    assert sorted(sent) == sorted([lost.pk, dead.pk])
    assert delivery.sweep(now) == 0  # once per period, however many workers sweep
    for row in (lost, fresh, dead, last):
        row.refresh_from_db()
    assert (dead.status, dead.next_attempt_at) == (Status.PENDING, now)
    assert fresh.status == Status.PENDING and fresh.pk not in sent
    assert last.status == Status.FAILED and "worker" in last.error


@pytest.mark.django_db
def test_a_url_httpx_refuses_fails_the_delivery_instead_of_crashing_the_task(
    campaign: Campaign, monkeypatch: Any
) -> None:
    monkeypatch.setattr(delivery, "_send_later", lambda pk, seconds: True)
    hook = subscriptions.create(campaign, "http://xn--zz.com/", ["export.ready"])  # unchecked
    [row] = delivery.enqueue(campaign.pk, "export.ready", {})
    assert delivery.deliver(row.pk) == "failed"
    row.refresh_from_db()
    assert row.status == Status.FAILED and "not a valid URL" in row.error
    # Should the check ever miss one, the send records the error (and retries) instead.
    assert delivery.post(hook.url, hook.secret, "ping", 1, b"{}")[0] is None


# --- the real stack: a worker sends to a real HTTP receiver ----------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """An HTTP server in a thread on a free loopback port that records every POST and
    answers with the next status of ``answers`` (200 once they run out)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner.lock:
                    owner.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    code = owner.answers.pop(0) if owner.answers else 200
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"receiver says no")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self, event: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.headers.get("x-carve-event") == event]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(answers: list[int] | None = None) -> Receiver:
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _check_signed(r: Received, hook: Webhook) -> dict[str, Any]:
    assert r.headers["content-type"] == "application/json"
    assert _verify(hook.secret, r.headers, r.body), "the signature does not verify"
    assert abs(int(r.headers["x-carve-timestamp"]) - time.time()) < 120
    body = r.json
    assert body["id"] == int(r.headers["x-carve-delivery"])
    assert body["event"] == r.headers["x-carve-event"] and body["campaign"] == hook.campaign_id
    return body


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_labels_a_retrain_and_an_export_reach_a_real_receiver_signed(
    campaign: Campaign,
    manager: Any,
    annotator: Any,
    settings: Any,
    start_worker: Callable[..., Worker],
    receiver: Callable[..., Receiver],
) -> None:
    settings.CARVE_WEBHOOK_COALESCE_SECONDS = 5  # this process records the labels
    worker = start_worker("hooks")
    items, _ = embedded_campaign(campaign, 30, retrain_every=0, gold_rate=0)
    endpoint = receiver()
    made = api_as(manager).post(
        _hooks(campaign), {"url": endpoint.url, "events": list(subscriptions.EVENTS)}, "json"
    )
    assert made.status_code == 201, made.content
    hook = Webhook.objects.get(pk=made.json()["id"])
    assert hook.secret == made.json()["secret"]

    # Five labels through the API, within the coalescing window: one request.
    labeler, base = api_as(annotator), f"/api/v1/campaigns/{campaign.pk}"
    labeled = []
    for i in range(5):
        served = labeler.post(f"{base}/next/")
        assert served.status_code == 200, served.content
        item = served.json()["id"]
        value = ["negative", "positive"][i % 2]
        stored = labeler.post(f"{base}/labels/", {"item": item, "value": value}, format="json")
        assert stored.status_code == 201, stored.content
        labeled.append(item)
    wait_for(lambda: bool(endpoint.got("item.labeled")), 60, "item.labeled", worker.log)
    time.sleep(1.5)  # nothing else is on its way
    [request] = endpoint.got("item.labeled")
    body = _check_signed(request, hook)
    assert request.path == "/hook"
    assert body["data"] == {"item_ids": labeled, "n_labels": 5, "truncated": False}
    row = WebhookDelivery.objects.get(pk=body["id"])
    assert (row.status, row.attempts, row.response_status) == (Status.DELIVERED, 1, 200)

    # A retrain: model.trained once the version is done.
    retrain = api_as(manager).post(f"{base}/retrain/")
    assert retrain.status_code == 202, retrain.content
    wait_for(lambda: bool(endpoint.got("model.trained")), 120, "model.trained", worker.log)
    trained = _check_signed(endpoint.got("model.trained")[0], hook)
    assert trained["data"]["model_version"] == retrain.json()["number"]
    assert trained["data"]["n_labels"] == 5
    assert trained["data"]["url"] == f"{base}/models/{retrain.json()['number']}/"

    # An export job done (its worker code sends the signal): export.ready with the link.
    job = ExportJob.objects.create(
        campaign=campaign, format="jsonl", status="done", size_bytes=1234, n_rows=5
    )
    signals.export_ready.send(sender=ExportJob, campaign_id=campaign.pk, export_job_id=job.pk)
    wait_for(lambda: bool(endpoint.got("export.ready")), 60, "export.ready", worker.log)
    ready = _check_signed(endpoint.got("export.ready")[0], hook)
    assert ready["data"]["export_job"] == job.pk and ready["data"]["format"] == "jsonl"
    assert ready["data"]["size_bytes"] == 1234
    assert ready["data"]["download_url"] == f"{base}/exports/{job.pk}/download/"
    assert Item.objects.filter(pk__in=labeled, campaign=campaign).count() == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_a_failing_receiver_is_retried_and_an_unreachable_one_fails_after_the_last_attempt(
    campaign: Campaign,
    manager: Any,
    start_worker: Callable[..., Worker],
    receiver: Callable[..., Receiver],
) -> None:
    worker = start_worker(
        "retries", WEBHOOK_BACKOFF_SECONDS="1", WEBHOOK_MAX_ATTEMPTS="3", RESEND_SECONDS="2"
    )
    flaky = receiver([500])
    client = api_as(manager)
    made = client.post(_hooks(campaign), {"url": flaky.url, "events": ["model.trained"]}, "json")
    hook = Webhook.objects.get(pk=made.json()["id"])
    nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    made = client.post(_hooks(campaign), {"url": nobody, "events": ["model.trained"]}, "json")
    dead = Webhook.objects.get(pk=made.json()["id"])

    pinged = client.post(f"{_hooks(campaign)}{hook.pk}/ping/")
    assert pinged.status_code == 202
    lost = client.post(f"{_hooks(campaign)}{dead.pk}/ping/")
    assert lost.status_code == 202

    def status(pk: int) -> str:
        return str(WebhookDelivery.objects.get(pk=pk).status)

    wait_for(lambda: status(pinged.json()["id"]) == Status.DELIVERED, 60, "the retry", worker.log)
    row = WebhookDelivery.objects.get(pk=pinged.json()["id"])
    assert (row.attempts, row.response_status, row.error) == (2, 200, "")
    first, second = flaky.got("ping")
    assert first.headers["x-carve-delivery"] == second.headers["x-carve-delivery"] == str(row.pk)
    assert first.body == second.body  # the same delivery: the payload is frozen
    assert _verify(hook.secret, first.headers, first.body)
    assert _verify(hook.secret, second.headers, second.body)

    wait_for(lambda: status(lost.json()["id"]) == Status.FAILED, 60, "the failure", worker.log)
    failed = WebhookDelivery.objects.get(pk=lost.json()["id"])
    assert failed.attempts == 3 and failed.response_status is None
    assert "ConnectError" in failed.error
    # The delivery log shows both, with their attempts and errors.
    log = client.get(f"{_hooks(campaign)}{dead.pk}/deliveries/").json()["results"]
    assert [(d["status"], d["attempts"]) for d in log] == [("failed", 3)]
    page = logged_in(manager).get(f"/campaigns/{campaign.pk}/webhooks/").content.decode()
    assert "ConnectError" in page and "Delivered" in page
