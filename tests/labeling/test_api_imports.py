"""REST API: bulk item import (inline or on a worker), all-or-nothing, and its job."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labeling.imports import jobs as import_jobs
from labeling.imports import write
from labeling.imports.parse import UploadRejected, parse_upload
from labeling.imports.write import import_limits
from labeling.jobrows import Outcome
from labeling.models import Campaign, EmbeddingJob, ImportJob, Item, Upload
from tests.support.clients import api_as

pytestmark = pytest.mark.django_db


def _url(campaign: Campaign, *rest: object) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/imports/" + "".join(f"{r}/" for r in rest)


def _csv(rows: list[str], header: str = "text,gold") -> SimpleUploadedFile:
    body = (header + "\n" + "\n".join(rows) + "\n").encode()
    return SimpleUploadedFile("reviews.csv", body, content_type="text/csv")


def _post_file(client: Any, campaign: Campaign, upload: SimpleUploadedFile, **fields: Any) -> Any:
    return client.post(_url(campaign), {"file": upload, **fields}, format="multipart")


# --- inline imports --------------------------------------------------------------------------


def test_a_small_file_is_imported_during_the_request(campaign: Campaign, manager: Any) -> None:
    upload = _csv(["great film,positive", "dull plot,negative", "  ,positive", "great film,"])
    response = _post_file(api_as(manager), campaign, upload)
    assert response.status_code == 201, response.content
    body = response.json()
    job = ImportJob.objects.get()
    assert body["id"] == job.pk and body["status"] == "done" and body["background"] is False
    assert body["url"].endswith(_url(campaign, job.pk))
    assert body["result"] | {"message": ""} == {
        "n_rows": 4,
        "n_created": 2,
        "n_existing": 0,
        "n_blank": 1,
        "n_duplicates": 1,
        "n_gold": 2,
        "n_labels": 0,
        "format": "csv",
        "text_column": "text",
        "gold_column": "gold",
        "message": "",
    }
    items = dict(Item.objects.filter(campaign=campaign).values_list("text", "gold"))
    assert items == {"great film": "positive", "dull plot": "negative"}
    assert job.data is None and job.upload is not None and job.upload.n_created == 2
    assert EmbeddingJob.objects.filter(campaign=campaign, status="queued").count() == 1


def test_items_can_be_sent_as_a_json_list(campaign: Campaign, manager: Any) -> None:
    items = [
        {"text": "a quiet triumph", "gold": "Positive", "source": "blog"},
        {"text": "two hours lost", "source": "forum"},
    ]
    response = api_as(manager).post(_url(campaign), {"items": items}, format="json")
    assert response.status_code == 201, response.content
    rows = {i.text: (i.gold, i.metadata) for i in Item.objects.filter(campaign=campaign)}
    assert rows == {
        "a quiet triumph": ("positive", {"source": "blog"}),  # the label set's spelling
        "two hours lost": ("", {"source": "forum"}),
    }


def test_chosen_columns_are_used(campaign: Campaign, manager: Any) -> None:
    upload = _csv(["1,nice one,positive", "2,awful,negative"], header="id,review_text,verdict")
    response = _post_file(
        api_as(manager), campaign, upload, text_column="review_text", gold_column="verdict"
    )
    assert response.status_code == 201, response.content
    assert response.json()["result"]["text_column"] == "review_text"
    assert set(Item.objects.values_list("text", "gold")) == {
        ("nice one", "positive"),
        ("awful", "negative"),
    }


# --- refused files: the upload page's checks, nothing written --------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"text,gold\nfine,positive\nbad,terrible\nok,maybe\n", "not in the label set"),
        ("text\ncaf\u00e9 cr\u00e8me\n".encode("cp1252"), "UTF-8"),
        (b"", "empty"),
        (b"text,gold\n", "no data rows"),
        (b"name,comment\nx,y\n", "text column"),
    ],
)
def test_a_bad_file_is_refused_with_the_upload_pages_messages(
    campaign: Campaign, manager: Any, data: bytes, expected: str
) -> None:
    upload = SimpleUploadedFile("bad.csv", data, content_type="text/csv")
    response = _post_file(api_as(manager), campaign, upload)
    assert response.status_code == 400, response.content
    body = response.json()
    with pytest.raises(UploadRejected) as page:
        parse_upload(data, "bad.csv", campaign.labels, import_limits())
    assert body["errors"] == page.value.errors  # the same checks, word for word
    assert expected.lower() in " ".join(body["errors"]).lower()
    assert body["status"] == "failed" and "nothing was imported" in body["detail"]
    assert not Item.objects.exists() and not EmbeddingJob.objects.exists()
    assert ImportJob.objects.get().data is None  # the refused file is not kept


def test_a_gold_label_contradicting_the_campaign_refuses_the_whole_file(
    campaign: Campaign, manager: Any
) -> None:
    client = api_as(manager)
    assert _post_file(client, campaign, _csv(["fine,positive"])).status_code == 201
    upload = _csv(["new text,negative", "another new one,positive", "fine,negative"])
    response = _post_file(client, campaign, upload)
    assert response.status_code == 400
    assert "different gold label" in response.json()["errors"][0]
    assert list(Item.objects.values_list("text", flat=True)) == ["fine"]  # all or nothing


def test_malformed_requests_are_json_errors(campaign: Campaign, manager: Any) -> None:
    client = api_as(manager)
    nothing = client.post(_url(campaign), {}, format="multipart")
    assert nothing.status_code == 400 and "file" in nothing.json()
    empty = client.post(_url(campaign), {"items": []}, format="json")
    assert empty.status_code == 400 and "items" in empty.json()
    strings = client.post(_url(campaign), {"items": ["just a string"]}, format="json")
    assert strings.status_code == 400 and "not JSON objects" in strings.json()["errors"][0]
    not_a_list = client.post(_url(campaign), {"items": {"text": "x"}}, format="json")
    assert not_a_list.status_code == 400 and "list" in not_a_list.json()["items"]
    no_text = client.post(_url(campaign), {"items": [{"body2": "x"}]}, format="json")
    assert no_text.status_code == 400 and "text" in " ".join(no_text.json()["errors"])
    assert not Item.objects.exists()


def test_a_file_over_the_size_limit_is_refused(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    settings.CARVE_UPLOAD_MAX_BYTES = 100
    upload = _csv([f"text number {i},positive" for i in range(20)])
    response = _post_file(api_as(manager), campaign, upload)
    assert response.status_code == 400 and "limit is 100 bytes" in response.json()["file"]
    assert not ImportJob.objects.exists()


def test_a_request_body_over_the_limit_is_a_json_413(campaign: Campaign, manager: Any) -> None:
    from django.conf import settings

    from labeling.middleware import FORM_OVERHEAD_BYTES

    response = api_as(manager).generic(
        "POST",
        _url(campaign),
        b"x",
        content_type="application/json",
        CONTENT_LENGTH=str(settings.CARVE_UPLOAD_MAX_BYTES + FORM_OVERHEAD_BYTES + 1),
    )
    assert response.status_code == 413 and "limited to" in response.json()["detail"]


# --- background imports ----------------------------------------------------------------------


def test_a_large_file_is_queued_and_its_job_reports_the_outcome(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    settings.CARVE_IMPORT_INLINE_BYTES = 64
    client = api_as(manager)
    upload = _csv([f"review number {i},{'positive' if i % 2 else 'negative'}" for i in range(50)])
    response = _post_file(client, campaign, upload)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["background"] is True
    assert response["Location"] == body["url"]
    assert not Item.objects.exists()  # nothing until a worker runs it

    assert import_jobs.run_import_job(body["id"], worker="test") is Outcome.DONE
    polled = client.get(body["url"]).json()
    assert polled["status"] == "done" and polled["result"]["n_created"] == 50
    assert Item.objects.filter(campaign=campaign).count() == 50
    # A duplicate delivery of the task finds the job done and writes nothing.
    assert import_jobs.run_import_job(body["id"]) is Outcome.NOTHING
    assert Item.objects.count() == 50


def test_background_can_be_asked_for_and_a_refusal_is_reported_on_the_job(
    campaign: Campaign, manager: Any
) -> None:
    client = api_as(manager)
    response = _post_file(client, campaign, _csv(["ok,positive", "hm,unsure"]), background="true")
    assert response.status_code == 202
    assert import_jobs.run_import_job(response.json()["id"]) is Outcome.FAILED
    job = client.get(response.json()["url"]).json()
    assert job["status"] == "failed" and "unsure" in job["errors"][0]
    assert not Item.objects.exists()


def test_inline_can_be_forced_for_a_large_file(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    settings.CARVE_IMPORT_INLINE_BYTES = 10
    response = _post_file(api_as(manager), campaign, _csv(["one,positive"]), background="false")
    assert response.status_code == 201


def _queued(campaign: Campaign, user: Any, n: int = 5) -> ImportJob:
    data = ("text\n" + "\n".join(f"line {i}" for i in range(n)) + "\n").encode()
    return import_jobs.start_import(campaign, user, data, "t.csv", background=True)


def test_a_job_whose_worker_died_is_taken_over_and_imported_once(
    campaign: Campaign, manager: Any
) -> None:
    job = _queued(campaign, manager)
    first = import_jobs.claim(job.pk, "doomed")
    assert isinstance(first, ImportJob) and first.attempt == 1
    # Not stale yet: a second delivery is told the job is busy.
    assert import_jobs.run_import_job(job.pk) is Outcome.BUSY
    ImportJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(hours=1))
    assert import_jobs.run_import_job(job.pk, "rescuer") is Outcome.DONE
    # The first run was only presumed dead; when it comes back it must not import again.
    assert import_jobs.execute(first) is Outcome.LOST
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("done", 2)
    assert Item.objects.filter(campaign=campaign).count() == 5


def test_a_job_that_killed_its_worker_too_often_fails_with_a_reason(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    job = _queued(campaign, manager)
    ImportJob.objects.filter(pk=job.pk).update(
        status="running",
        attempt=settings.CARVE_JOB_MAX_ATTEMPTS,
        started_at=timezone.now() - timedelta(hours=1),
    )
    assert import_jobs.run_import_job(job.pk) is Outcome.NOTHING
    job.refresh_from_db()
    assert job.status == "failed" and "started 3 times" in job.error and job.data is None
    assert not Item.objects.exists()


def test_polling_a_stuck_job_sends_it_again_once(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:
    from labeling import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.import_items, "delay", sent.append)
    job = _queued(campaign, manager)
    client = api_as(manager)
    client.get(_url(campaign, job.pk))
    assert sent == []  # just created: its message may still be on its way
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    client.get(_url(campaign, job.pk))
    assert sent == [job.pk]  # never sent (the broker was down at commit): sent now
    client.get(_url(campaign, job.pk))
    assert sent == [job.pk]  # not again within JOB_STALE_SECONDS
    ImportJob.objects.filter(pk=job.pk).update(sent_at=timezone.now() - timedelta(hours=1))
    client.get(_url(campaign, job.pk))
    assert sent == [job.pk, job.pk]


def test_a_starting_worker_resends_unfinished_imports(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:
    from labeling import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.import_items, "delay", sent.append)
    queued = _queued(campaign, manager)
    done = _queued(campaign, manager)
    import_jobs.run_import_job(done.pk)
    tasks.resume_pending_jobs()
    assert sent == [queued.pk]


# --- listing and permissions -----------------------------------------------------------------


def test_jobs_are_listed_newest_first_without_their_files(campaign: Campaign, manager: Any) -> None:
    client = api_as(manager)
    _post_file(client, campaign, _csv(["a,positive"]))
    _post_file(client, campaign, _csv(["b,wrong"]))
    with CaptureQueriesContext(connection) as queries:
        listed = client.get(_url(campaign)).json()["results"]
    assert [job["status"] for job in listed] == ["failed", "done"]
    # The stored files are never read to list the jobs.
    assert not any('"labeling_importjob"."data"' in q["sql"] for q in queries.captured_queries)


def test_only_the_campaigns_managers_import(
    campaign: Campaign, annotator: Any, outsider: Any, other_manager: Any, manager: Any
) -> None:
    job = _queued(campaign, manager)
    for user, code in ((annotator, 403), (outsider, 404), (other_manager, 404)):
        client = api_as(user)
        assert _post_file(client, campaign, _csv(["x,positive"])).status_code == code
        assert client.get(_url(campaign)).status_code == code
        assert client.get(_url(campaign, job.pk)).status_code == code
    other = Campaign.objects.create(name="Other", created_by=manager)
    assert api_as(manager).get(_url(other, job.pk)).status_code == 404  # job of another campaign
    assert not Item.objects.exists()


def test_a_json_list_may_be_larger_than_djangos_form_limit(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    settings.CARVE_IMPORT_INLINE_BYTES = 10**9
    items = [{"text": f"item {i} " + "words " * 50} for i in range(10_000)]  # ~3.3 MB
    response = api_as(manager).post(_url(campaign), {"items": items}, format="json")
    assert response.status_code == 201, response.content[:300]
    assert Item.objects.filter(campaign=campaign).count() == 10_000


def test_a_json_body_over_djangos_limit_elsewhere_is_a_json_413(
    campaign: Campaign, manager: Any
) -> None:
    texts = ["words " * 100] * 5_000  # ~3 MB, over DATA_UPLOAD_MAX_MEMORY_SIZE
    response = api_as(manager).post(
        f"/api/v1/campaigns/{campaign.pk}/predict/", {"texts": texts}, format="json"
    )
    assert response.status_code == 413 and "multipart file" in response.json()["detail"]


def test_too_many_json_items_are_refused_before_any_work(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    settings.CARVE_UPLOAD_MAX_ROWS = 5
    items = [{"text": f"t{i}"} for i in range(6)]
    response = api_as(manager).post(_url(campaign), {"items": items}, format="json")
    assert response.status_code == 400 and "at most 5" in response.json()["items"]
    assert not ImportJob.objects.exists()


def test_a_non_numeric_campaign_id_is_a_json_404(manager: Any) -> None:
    for path in ("abc/", "abc/metrics/", "abc/imports/", "1x/imports/2/"):
        response = api_as(manager).get(f"/api/v1/campaigns/{path}")
        assert response.status_code == 404 and response["Content-Type"] == "application/json"


def test_a_bad_content_length_on_the_api_is_json(manager: Any) -> None:
    response = api_as(manager).generic(
        "POST", "/api/v1/campaigns/", b"{}", content_type="application/json", CONTENT_LENGTH="x"
    )
    assert response.status_code == 400 and response.json()["detail"] == "Bad Content-Length."


def test_an_inline_import_the_database_cannot_finish_goes_to_a_worker(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:
    from labeling import tasks

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("database is locked")

    monkeypatch.setattr(write, "write_items", locked)
    response = _post_file(api_as(manager), campaign, _csv(["kept,positive"]))
    assert response.status_code == 202 and response.json()["background"] is True
    job = ImportJob.objects.get()
    assert job.status == "queued" and bytes(job.data or b"").startswith(b"text,gold")
    monkeypatch.undo()
    sent: list[int] = []
    monkeypatch.setattr(tasks.import_items, "delay", sent.append)
    tasks.resume_pending_jobs()  # it is pending like any background job
    assert sent == [job.pk]
    assert import_jobs.run_import_job(job.pk) is Outcome.DONE
    assert list(Item.objects.values_list("text", flat=True)) == ["kept"]


def test_an_unexpected_inline_failure_is_a_json_500_with_the_reason(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(write, "write_items", broken)
    response = _post_file(api_as(manager), campaign, _csv(["x,positive"]))
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == "failed" and "disk on fire" in body["error"]
    assert not Item.objects.exists() and ImportJob.objects.get().data is None


def test_polling_while_the_broker_is_down_still_answers(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:
    from kombu.exceptions import OperationalError as BrokerError

    from labeling import tasks

    def down(job_id: int) -> None:
        raise BrokerError("connection refused")

    monkeypatch.setattr(tasks.import_items, "delay", down)
    job = _queued(campaign, manager)
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    response = api_as(manager).get(_url(campaign, job.pk))
    assert response.status_code == 200 and response.json()["status"] == "queued"
    job.refresh_from_db()
    assert job.sent_at is None  # not marked sent: the next poll tries again


def test_a_slow_run_that_is_still_alive_is_not_taken_over(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:
    from labeling import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.import_items, "delay", sent.append)
    job = _queued(campaign, manager)
    running = import_jobs.claim(job.pk, "slow")
    assert isinstance(running, ImportJob)
    # Running for 10 minutes, far past JOB_STALE_SECONDS but within the task's time limit.
    ImportJob.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - timedelta(minutes=10), sent_at=None
    )
    api_as(manager).get(_url(campaign, job.pk))  # polling does not re-send it
    assert sent == []
    assert import_jobs.run_import_job(job.pk, "eager") is Outcome.BUSY
    assert import_jobs.execute(running) is Outcome.DONE  # the slow run finishes its work
    assert Item.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_a_takeover_arriving_during_the_write_waits_for_it_and_imports_nothing(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:

    job = import_jobs.start_import(campaign, manager, b"text\na\nb\nc\n", "t.csv", background=True)
    first = import_jobs.claim(job.pk, "A")
    assert isinstance(first, ImportJob)
    real, writing = write.write_items, threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        writing.set()
        time.sleep(1.5)  # the items are written, the transaction not yet committed
        return out

    monkeypatch.setattr(write, "write_items", slow)
    outcome: dict[str, Outcome] = {}

    def run_first() -> None:
        try:
            outcome["A"] = import_jobs.execute(first)
        finally:
            connection.close()

    thread = threading.Thread(target=run_first)
    thread.start()
    assert writing.wait(20)
    # B believes A dead (as it would past the time limit) and tries to take over now.
    monkeypatch.setattr(write, "write_items", real)
    monkeypatch.setattr(import_jobs, "dead_before", lambda: timezone.now() + timedelta(hours=1))
    outcome["B"] = import_jobs.run_import_job(job.pk, "B")
    thread.join(30)
    assert outcome == {"A": Outcome.DONE, "B": Outcome.NOTHING}
    assert Item.objects.count() == 3 and Upload.objects.count() == 1
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("done", 1)


def test_a_file_whose_label_column_is_not_gold_imports_with_gold_column_dash(
    campaign: Campaign, manager: Any
) -> None:
    # The same text twice with opposite labels (as in SST-2's training file) is refused as
    # gold; with gold_column "-" the column is metadata and the file imports.
    rows = ["good fun,positive", "dull,negative", "good fun,negative"]
    client = api_as(manager)
    refused = _post_file(client, campaign, _csv(rows, header="text,label"))
    assert refused.status_code == 400 and "different gold labels" in refused.json()["errors"][0]
    response = _post_file(client, campaign, _csv(rows, header="text,label"), gold_column="-")
    assert response.status_code == 201, response.content
    items = {i.text: (i.gold, i.metadata) for i in Item.objects.filter(campaign=campaign)}
    assert items == {"good fun": ("", {"label": "positive"}), "dull": ("", {"label": "negative"})}
    assert response.json()["result"]["gold_column"] == ""
