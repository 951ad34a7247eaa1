"""The export page (docs/platform.md, "Export jobs"): managers only.

The manager chooses the format, the rows and the items. A campaign of at most
CARVE_EXPORT_INLINE_ITEMS items is downloaded at once from the streamed export
(``GET /api/v1/campaigns/<id>/export/``, the same session); a larger one starts an export job,
and the page lists the recent jobs, reloading that list (its htmx part) every second or two
while one is pending, with a download link once a job is done.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django_htmx.middleware import HtmxDetails

from labeling import permissions
from labeling.exports import formats
from labeling.exports import jobs as export_jobs
from labeling.models import Campaign

#: Export jobs listed on the page.
RECENT_JOBS = 10


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        choices=[
            ("csv", "CSV"),
            ("jsonl", "JSON Lines"),
            ("parquet", "Parquet"),
            ("hf", "Hugging Face datasets folder (zip)"),
            ("labelstudio", "Label Studio JSON"),
        ],
        initial="csv",
    )
    rows = forms.ChoiceField(
        choices=[
            (formats.ROWS_LABELS, "One row per label"),
            (formats.ROWS_ITEMS, "One row per item, its labels nested"),
        ],
        initial=formats.ROWS_LABELS,
        help_text="The Hugging Face folder and Label Studio JSON always have one record per item.",
    )
    items = forms.ChoiceField(
        choices=[
            (export_jobs.ITEMS_LABELED, "Items with a label or a decision"),
            (export_jobs.ITEMS_ALL, "All items"),
        ],
        initial=export_jobs.ITEMS_LABELED,
    )


def _context(campaign: Campaign, form: ExportForm) -> dict[str, object]:
    jobs = list(campaign.export_jobs.select_related("created_by").order_by("-pk")[:RECENT_JOBS])
    for job in jobs:
        if job.is_active:
            export_jobs.nudge(job)  # stuck behind a broker outage or a dead worker
    return {
        "campaign": campaign,
        "form": form,
        "jobs": jobs,
        "polling": any(job.is_active for job in jobs),
        "inline_items": settings.CARVE_EXPORT_INLINE_ITEMS,
    }


@never_cache
@login_required
def campaign_export(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: the form and the recent export jobs (only the jobs part for htmx). POST: export
    now (a small campaign: redirected to the streamed export) or start a job."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    if request.method == "POST":
        form = ExportForm(request.POST)
        if not form.is_valid():
            return render(request, "labeling/export.html", _context(campaign, form), status=400)
        kind, rows, items = (form.cleaned_data[k] for k in ("format", "rows", "items"))
        if campaign.items.count() <= settings.CARVE_EXPORT_INLINE_ITEMS:
            url = reverse("api-campaign-export", args=[campaign.pk])
            return redirect(f"{url}?{urlencode({'as': kind, 'rows': rows, 'items': items})}")
        with transaction.atomic():
            job = export_jobs.start_export(
                campaign, request.user, kind=kind, rows=rows, items=items
            )
        messages.success(
            request, f"Export job {job.pk} started: the download link appears below when it ends."
        )
        return redirect("campaign-export", pk=campaign.pk)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD, POST"})
    template = "labeling/export.html"
    if request.htmx and not request.htmx.boosted:
        template += "#export-jobs"
    return render(request, template, _context(campaign, ExportForm()))
