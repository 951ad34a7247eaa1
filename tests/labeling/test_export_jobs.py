"""Export jobs (docs/platform.md, "Export jobs"): written by a real worker, stored in parts,
taken over when their worker dies, streamed back byte for byte; the API's refusals and the
export page."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from labeling import signals
from labeling.exports import jobs as export_jobs
from labeling.jobrows import Outcome
from labeling.models import Campaign, ExportJob, ExportPart
from tests.labeling.test_export_formats import labeled, other  # noqa: F401  (fixtures)
from tests.support.clients import api_as, logged_in

# The worker tests need a transactional database; the others run in a rolled-back one.
worker_db = pytest.mark.django_db(transaction=True)
db = pytest.mark.django_db


def _exports(campaign: Campaign) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/exports/"


def _streamed(client: Any, campaign: Campaign, **query: str) -> bytes:
    response = client.get(f"/api/v1/campaigns/{campaign.pk}/export/", query)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def _download(client: Any, body: dict[str, Any]) -> tuple[Any, bytes]:
    response = client.get(body["download"])
    assert response.status_code == 200, response.content
    return response, b"".join(response.streaming_content)


def _wait_done(client: Any, url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(url).json()
        if body["status"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, f"export job still {body['status']}: {body}"
        time.sleep(0.2)


# --- on a real worker -------------------------------------------------------------------------


@worker_db
def test_a_worker_writes_the_same_bytes_as_the_streamed_export_in_several_parts(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    start_worker: Any,
) -> None:
    start_worker("exporter", EXPORT_PART_BYTES="300")  # small parts: several per file
    client = api_as(manager)
    options = [
        {"as": "csv", "rows": "labels", "items": "labeled"},
        {"as": "csv", "rows": "items", "items": "all"},
        {"as": "jsonl", "rows": "labels", "items": "all"},
        {"as": "jsonl", "rows": "items", "items": "labeled"},
    ]
    for option in options:
        response = client.post(_exports(labeled), option, format="json")
        assert response.status_code == 202, response.content
        created = response.json()
        assert response["Location"] == created["url"] and created["download"] is None
        assert (created["format"], created["rows"], created["items"]) == tuple(option.values())
        body = _wait_done(client, created["url"])
        assert body["status"] == "done", body
        streamed = _streamed(client, labeled, **option)
        answer, content = _download(client, body)
        assert content == streamed  # byte for byte
        assert int(answer["Content-Length"]) == len(content) == body["size_bytes"]
        assert answer["Content-Disposition"] == f'attachment; filename="{body["filename"]}"'
        assert body["sha256"] == hashlib.sha256(content).hexdigest()
        lines = content.decode().splitlines()
        header = 1 if option["as"] == "csv" else 0
        assert body["n_rows"] == len(lines) - header  # no text here spans lines
        parts = ExportPart.objects.filter(job_id=body["id"])
        assert parts.count() == -(-len(content) // 300) > 1
        assert max(len(bytes(p.data)) for p in parts) <= 300
        assert body["n_done"] == body["n_total"] == (4 if option["items"] == "all" else 3)
    listed = client.get(_exports(labeled)).json()["results"]
    assert [job["id"] for job in listed] == sorted((job["id"] for job in listed), reverse=True)
    assert len(listed) == len(options) and all(job["download"] for job in listed)


@worker_db
def test_a_job_whose_worker_died_mid_run_is_taken_over_by_a_worker(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    start_worker: Any,
) -> None:
    client = api_as(manager)
    response = client.post(_exports(labeled), {"as": "csv", "items": "all"}, format="json")
    job_id = response.json()["id"]
    # A worker claimed it, stored a part, and died: its heartbeat stops.
    dead = export_jobs.claim(job_id, "dead-worker")
    assert isinstance(dead, ExportJob) and dead.attempt == 1
    ExportPart.objects.create(job_id=job_id, attempt=1, number=0, data=b"half a file")
    ExportJob.objects.filter(pk=job_id).update(
        heartbeat_at=timezone.now() - timedelta(hours=1), n_done=2
    )
    start_worker("rescuer")  # takes the job over from its message (and resends on start)
    body = _wait_done(client, response.json()["url"])
    assert (body["status"], body["attempt"]) == ("done", 2)
    _, content = _download(client, body)
    assert content == _streamed(client, labeled, **{"as": "csv", "items": "all"})
    assert set(ExportPart.objects.filter(job_id=job_id).values_list("attempt", flat=True)) == {2}
    # The presumed-dead run comes back: it stops at its first write and changes nothing.
    assert export_jobs.execute(dead) is Outcome.LOST
    _, again = _download(client, client.get(body["url"]).json())
    assert again == content


# --- in this process --------------------------------------------------------------------------


@db
def test_a_takeover_leaves_one_complete_file_and_signals_once(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    heard: list[dict[str, Any]] = []

    def listen(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    signals.export_ready.connect(listen)
    try:
        job = export_jobs.start_export(labeled, manager, kind="jsonl", rows="items")
        first = export_jobs.claim(job.pk, "doomed")
        assert isinstance(first, ExportJob)
        assert export_jobs.run_export_job(job.pk, "early") is Outcome.BUSY  # heartbeat fresh
        ExportPart.objects.create(job_id=job.pk, attempt=1, number=0, data=b"stale")
        ExportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            assert export_jobs.run_export_job(job.pk, "rescuer") is Outcome.DONE
        assert export_jobs.execute(first) is Outcome.LOST  # wrote nothing more
    finally:
        signals.export_ready.disconnect(listen)
    job.refresh_from_db()
    assert (job.status, job.attempt, job.worker) == ("done", 2, "rescuer")
    assert heard == [
        {"campaign_id": labeled.pk, "export_job_id": job.pk, "signal": signals.export_ready}
    ]
    content = b"".join(export_jobs.parts(job))
    assert content == _streamed(api_as(manager), labeled, **{"as": "jsonl", "rows": "items"})
    assert list(ExportPart.objects.filter(job=job).values_list("attempt", flat=True)) == [2]
    assert export_jobs.run_export_job(job.pk) is Outcome.NOTHING  # a duplicate delivery


@db
def test_the_arrow_formats_and_label_studio_are_written_by_a_job(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    settings: Any,
) -> None:
    import io
    import zipfile

    import pyarrow.parquet as pq

    settings.CARVE_EXPORT_PART_BYTES = 1000
    for kind in ("parquet", "hf", "labelstudio"):
        job = export_jobs.start_export(labeled, manager, kind=kind, rows="items", items="all")
        assert export_jobs.run_export_job(job.pk) is Outcome.DONE
        job.refresh_from_db()
        content = b"".join(export_jobs.parts(job))
        assert len(content) == job.size_bytes and job.n_rows == 4 and job.rows == "items"
        if kind == "parquet":
            assert pq.read_table(io.BytesIO(content)).column("text").to_pylist()[1] == "plain text"
        elif kind == "hf":
            names = zipfile.ZipFile(io.BytesIO(content)).namelist()
            assert f"campaign-{labeled.pk}-labels/data-00000-of-00001.arrow" in names
        else:
            assert content.startswith(b"[") and b'"plain text"' in content


@db
def test_a_job_whose_workers_died_too_often_fails_with_a_reason(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    settings: Any,
) -> None:
    job = export_jobs.start_export(labeled, manager)
    ExportJob.objects.filter(pk=job.pk).update(
        status="running",
        attempt=settings.CARVE_JOB_MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    # What its dead runs had stored (they died between parts) goes with it.
    for attempt in (1, settings.CARVE_JOB_MAX_ATTEMPTS):
        ExportPart.objects.create(job_id=job.pk, attempt=attempt, number=0, data=b"x")
    assert export_jobs.run_export_job(job.pk) is Outcome.NOTHING
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding 3 times" in job.error
    assert not ExportPart.objects.filter(job=job).exists()


@db
def test_a_failing_export_records_why_and_keeps_no_parts(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    monkeypatch: Any,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("disk full")

    job = export_jobs.start_export(labeled, manager)
    monkeypatch.setattr(export_jobs, "write_file", broken)
    with pytest.raises(ValueError):
        export_jobs.run_export_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.error == "ValueError: disk full"
    assert not ExportPart.objects.filter(job=job).exists()
    response = api_as(manager).get(f"{_exports(labeled)}{job.pk}/download/")
    assert response.status_code == 409
    assert "failed: ValueError: disk full" in response.json()["detail"]


@db
def test_stuck_jobs_are_sent_again_and_a_starting_worker_resends_unfinished_ones(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    monkeypatch: Any,
) -> None:
    from labeling import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.export_campaign, "delay", sent.append)
    queued = export_jobs.start_export(labeled, manager)
    done = export_jobs.start_export(labeled, manager)
    export_jobs.run_export_job(done.pk)
    sent.clear()
    tasks.resume_pending_jobs()
    assert sent == [queued.pk]
    sent.clear()
    client = api_as(manager)
    client.get(f"{_exports(labeled)}{queued.pk}/")
    assert sent == []  # just created: its message may still be on its way
    ExportJob.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(hours=1))
    client.get(f"{_exports(labeled)}{queued.pk}/")
    client.get(f"{_exports(labeled)}{queued.pk}/")
    assert sent == [queued.pk]  # once per JOB_STALE_SECONDS


# --- the API's refusals -----------------------------------------------------------------------


@db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"as": "xml"}, "as"),
        ({"rows": "cells"}, "rows"),
        ({"items": "some"}, "items"),
        ({"as": ["csv"]}, "as"),
    ],
)
def test_bad_options_are_a_400_naming_the_field(
    campaign: Campaign, manager: Any, body: dict[str, Any], field: str
) -> None:
    response = api_as(manager).post(_exports(campaign), body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ExportJob.objects.exists()


@db
def test_a_body_that_is_not_an_object_is_a_400(campaign: Campaign, manager: Any) -> None:
    response = api_as(manager).post(_exports(campaign), ["csv"], format="json")
    assert response.status_code == 400
    assert not ExportJob.objects.exists()


@db
def test_an_unfinished_or_unknown_job_cannot_be_downloaded(
    campaign: Campaign, manager: Any, other_manager: Any
) -> None:
    client = api_as(manager)
    job = client.post(_exports(campaign), {}, format="json").json()
    assert (job["format"], job["rows"], job["items"]) == ("csv", "labels", "labeled")
    response = client.get(f"{job['url']}download/")
    assert response.status_code == 409
    assert "is queued" in response.json()["detail"] and response.json()["status"] == "queued"
    assert client.get(f"{_exports(campaign)}999999/download/").status_code == 404
    assert client.get(f"{_exports(campaign)}999999/").status_code == 404
    theirs = Campaign.objects.create(name="theirs", created_by=other_manager)
    elsewhere = f"/api/v1/campaigns/{theirs.pk}/exports/{job['id']}/"
    assert api_as(other_manager).get(elsewhere).status_code == 404  # not that campaign's job


@db
def test_only_the_campaigns_managers_export(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    annotator: Any,
    outsider: Any,
) -> None:
    job = export_jobs.start_export(labeled, manager)
    export_jobs.run_export_job(job.pk)
    urls = [
        _exports(labeled),
        f"{_exports(labeled)}{job.pk}/",
        f"{_exports(labeled)}{job.pk}/download/",
    ]
    for user, expected in ((annotator, 403), (outsider, 404)):
        client = api_as(user)
        for url in urls:
            assert client.get(url).status_code == expected, (user, url)
        assert client.post(_exports(labeled), {}, format="json").status_code == expected
        assert logged_in(user).get(f"/campaigns/{labeled.pk}/export/").status_code == expected
    assert ExportJob.objects.count() == 1


# --- the export page ----------------------------------------------------------------------


@db
def test_a_small_campaign_is_downloaded_at_once_from_the_page(
    labeled: Campaign,  # noqa: F811
    manager: Any,
) -> None:
    client = logged_in(manager)
    page = client.get(f"/campaigns/{labeled.pk}/")
    assert f'href="/campaigns/{labeled.pk}/export/"' in page.content.decode()
    response = client.post(
        f"/campaigns/{labeled.pk}/export/", {"format": "jsonl", "rows": "items", "items": "all"}
    )
    assert response.status_code == 302
    assert response["Location"] == (
        f"/api/v1/campaigns/{labeled.pk}/export/?as=jsonl&rows=items&items=all"
    )
    download: Any = client.get(response["Location"])
    assert b"plain text" in b"".join(download.streaming_content)  # the session is enough
    assert not ExportJob.objects.exists()


@db
def test_a_large_campaign_starts_a_job_that_the_page_follows(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    settings: Any,
) -> None:
    settings.CARVE_EXPORT_INLINE_ITEMS = 2
    client = logged_in(manager)
    url = f"/campaigns/{labeled.pk}/export/"
    response = client.post(url, {"format": "csv", "rows": "labels", "items": "labeled"})
    assert response.status_code == 302 and response["Location"] == url
    job = ExportJob.objects.get()
    assert (job.format, job.created_by) == ("csv", manager)
    page = client.get(url).content.decode()
    assert f"Export job {job.pk} started" in page
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and 'id="export-jobs"' in part
    assert 'hx-trigger="load delay:1s"' in part  # polling while the job is pending
    assert f'id="download-{job.pk}"' not in part
    export_jobs.run_export_job(job.pk)
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in part  # done: the polling stops
    link = f'href="/api/v1/campaigns/{labeled.pk}/exports/{job.pk}/download/"'
    assert link in part and f'id="download-{job.pk}"' in part
    download: Any = client.get(f"/api/v1/campaigns/{labeled.pk}/exports/{job.pk}/download/")
    assert b"plain text" in b"".join(download.streaming_content)


@db
def test_a_bad_choice_on_the_page_is_a_400_with_the_form(campaign: Campaign, manager: Any) -> None:
    response = logged_in(manager).post(
        f"/campaigns/{campaign.pk}/export/", {"format": "xml", "rows": "labels", "items": "all"}
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not ExportJob.objects.exists()


@db
def test_the_streamed_export_refuses_more_items_than_it_may_stream(
    labeled: Campaign,  # noqa: F811
    manager: Any,
    settings: Any,
) -> None:
    """Four items in all, three of them labeled: a limit of three streams the labeled ones
    and refuses all four with a 409 that names the export job endpoint."""
    settings.CARVE_EXPORT_STREAM_ITEMS = 3
    client = api_as(manager)
    assert _streamed(client, labeled, **{"rows": "items"}).count(b"\n") == 4  # header + 3
    refused = client.get(f"/api/v1/campaigns/{labeled.pk}/export/", {"items": "all"})
    assert refused.status_code == 409
    assert f"/api/v1/campaigns/{labeled.pk}/exports/" in refused.json()["detail"]
