"""The export page in a real browser (docs/platform.md, "Export jobs"): Export on the
campaign page, a job run by a real worker, the page following it, and the download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labeling.imports.write import import_file
from labeling.models import Campaign, EmbeddingJob, ExportJob
from tests.labeling.test_browser import db, signed_in_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

TEXTS = ["An export-worthy review", "Another one, with a comma", "A third text"]


@pytest.fixture
def three(campaign: Campaign) -> Campaign:
    """Three items, made before the browser's event loop starts."""
    body = "text\n" + "".join(f'"{text}"\n' for text in TEXTS)
    import_file(campaign, campaign.created_by, body.encode(), "d.csv")
    EmbeddingJob.objects.filter(campaign=campaign).update(status="failed")  # nothing embeds
    return campaign


def test_export_starts_a_job_and_downloads_its_file(
    three: Campaign,
    live_server: Any,
    manager: Any,
    start_worker: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.CARVE_EXPORT_INLINE_ITEMS = 1  # three items are "big": a job, not a direct download
    start_worker("exporter", EXPORT_PART_BYTES="64")  # several parts for a small file
    with signed_in_page(live_server, manager) as page:
        page.goto(f"{live_server.url}/campaigns/{three.pk}/")
        with page.expect_navigation():
            page.click("#export-link")
        page.select_option("#id_format", "csv")
        page.select_option("#id_rows", "items")
        page.select_option("#id_items", "all")
        with page.expect_navigation():
            page.click("#export-button")
        page.locator(".msg.success").wait_for()
        job = db(lambda: ExportJob.objects.get())
        # The jobs part polls until the worker is done, then shows the link.
        link = page.locator(f"#download-{job.pk}")
        link.wait_for(timeout=60_000)
        assert page.locator(f"#export-job-{job.pk} [data-status]").inner_text() == "Done"
        with page.expect_download() as info:
            link.click()
        download = info.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
    assert download.suggested_filename == f"campaign-{three.pk}-labels.csv"
    content = saved.read_text(encoding="utf-8")
    for text in TEXTS:
        assert text in content
    job = db(lambda: ExportJob.objects.get())
    assert (job.status, job.rows, job.items) == ("done", "items", "all")
    assert db(lambda: job.parts.count()) > 1 and saved.stat().st_size == job.size_bytes
