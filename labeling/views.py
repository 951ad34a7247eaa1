"""Pages. Each view: fetch with permission (labeling.permissions), validate with a form,
save, respond. A view whose page has an htmx-refreshed part serves that part too."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe
from django_htmx.middleware import HtmxDetails

from labeling import (
    annotation,
    campaign_learner,
    charts,
    dashboard,
    model_versions,
    permissions,
    tokens,
)
from labeling.embeddings import jobs as embedding_jobs
from labeling.forms import CampaignForm, DecisionForm, LabelActionForm, TokenForm, UploadForm
from labeling.imports import jobs as import_jobs
from labeling.models import Assignment, Campaign, ImportJob, Item, Label, LearnerSnapshot
from labeling.review import decide, review_items

logger = logging.getLogger(__name__)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness probe for load balancers and Docker: 200 "ok" when the database answers.

    On failure it returns 503 with the exception's class name only; details go to the log.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("healthz: database check failed", exc_info=True)
        return HttpResponse(type(exc).__name__, status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")


@login_required
@require_safe
def campaign_list(request: HttpRequest) -> HttpResponse:
    campaigns = (
        permissions.visible_campaigns(request.user)
        .annotate(
            n_items=Count("items", distinct=True),
            n_labeled=Count(
                "items",
                filter=Q(items__labels__isnull=False, items__labels__undone_at__isnull=True),
                distinct=True,
            ),
        )
        .order_by("-created_at")
    )
    return render(
        request,
        "labeling/campaign_list.html",
        {"campaigns": campaigns, "is_manager": permissions.is_manager(request.user)},
    )


@login_required
def campaign_create(request: HttpRequest) -> HttpResponse:
    if not permissions.is_manager(request.user):
        raise PermissionDenied("Only campaign managers create campaigns.")
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.instance.created_by = request.user
        campaign = form.save()
        messages.success(request, f"Campaign “{campaign.name}” created. Now upload its texts.")
        return redirect("campaign-detail", pk=campaign.pk)
    return render(request, "labeling/campaign_form.html", {"form": form, "campaign": None})


@login_required
def campaign_edit(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    form = CampaignForm(request.POST or None, instance=campaign)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
            campaign_learner.request_update(campaign.pk)  # new settings: rebuild the learner
        messages.success(request, "Campaign saved.")
        return redirect("campaign-detail", pk=campaign.pk)
    return render(request, "labeling/campaign_form.html", {"form": form, "campaign": campaign})


def _detail(
    request: HtmxHttpRequest, campaign: Campaign, upload_form: UploadForm | None, status: int = 200
) -> HttpResponse:
    job = embedding_jobs.latest_job(campaign)
    if job is not None and job.is_active:
        embedding_jobs.nudge(job)  # a stuck job (broker was down, worker killed) is sent again
    template = "labeling/campaign_detail.html"
    if request.htmx:  # the polling progress bar asks for its part only
        template += "#embedding-status"
    context = {
        "campaign": campaign,
        "job": job,
        "can_manage": permissions.can_manage(request.user, campaign),
        "n_items": campaign.items.count(),
        "n_gold": campaign.items.exclude(gold="").count(),
        "uploads": campaign.uploads.order_by("-created_at")[:20],
        "upload_form": upload_form,
    }
    return render(request, template, context, status=status)


def _upload_form(data: object = None, files: object = None) -> UploadForm:
    return UploadForm(data, files, max_bytes=settings.CARVE_UPLOAD_MAX_BYTES)


@never_cache
@login_required
@require_safe
def campaign_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    campaign = permissions.get_campaign(request.user, pk)
    return _detail(request, campaign, _upload_form())


@login_required
@require_POST
def campaign_upload(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    form = _upload_form(request.POST, request.FILES)
    if not form.is_valid():
        return _detail(request, campaign, form, status=400)
    upload = form.cleaned_data["file"]
    # The same ImportJob lifecycle as the API's imports, run during the request.
    job = import_jobs.start_import(
        campaign,
        request.user,
        upload.read(),
        upload.name or "upload",
        text_column=form.cleaned_data["text_column"],
        gold_column=form.cleaned_data["gold_column"],
        background=False,
    )
    if job.status == ImportJob.Status.DONE:
        messages.success(request, job.result["message"])
        return redirect("campaign-detail", pk=campaign.pk)
    if job.status == ImportJob.Status.QUEUED and job.background:  # the database was busy
        messages.info(request, "The file was handed to a worker; its items appear when done.")
        return redirect("campaign-detail", pk=campaign.pk)
    if job.status == ImportJob.Status.FAILED and job.errors:  # a refused file
        for error in job.errors:
            form.add_error("file", error)
        return _detail(request, campaign, form, status=400)
    # An unexpected failure (its detail is in the log and on the job row), or a database too
    # busy to even hand the job over: nothing was imported yet.
    form.add_error("file", "The import failed on the server; nothing was imported. Try again.")
    failed = job.status == ImportJob.Status.FAILED
    return _detail(request, campaign, form, status=500 if failed else 503)


@login_required
@require_POST
def embedding_retry(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    with transaction.atomic():
        embedding_jobs.request_embedding(campaign)
    messages.info(request, "Embedding job queued.")
    return redirect("campaign-detail", pk=campaign.pk)


def _label_page(
    request: HtmxHttpRequest,
    campaign: Campaign,
    form: LabelActionForm | None = None,
    status: int = 200,
) -> HttpResponse:
    served = annotation.next_assignment(campaign, request.user)
    mine = Label.objects.filter(
        item__campaign=campaign,
        annotator=permissions.signed_in(request.user),
        undone_at__isnull=True,
    )
    n_mine = mine.count()
    last = mine.order_by("-created_at", "-pk").values_list("item_id", flat=True).first()
    snapshot_version = (
        LearnerSnapshot.objects.filter(campaign=campaign).values_list("version", flat=True).first()
    )
    label_version = Campaign.objects.values_list("label_version", flat=True).get(pk=campaign.pk)
    context = {
        "campaign": campaign,
        "assignment": served,
        # Label changes the learner's queue does not reflect yet (load benchmark, UI hint).
        "learner_lag": label_version - (snapshot_version or 0),
        "buttons": [(i + 1, name) for i, name in enumerate(campaign.labels)],
        "n_mine": n_mine,
        "can_undo": n_mine > 0,
        "last_item": last,
        "form": form,
    }
    template = "labeling/label.html"
    if request.htmx:
        template += "#label-card"
    return render(request, template, context, status=status)


@never_cache
@login_required
def label(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The annotator's page: one item at a time; POST label / skip / undo, then the next item.

    Without JavaScript the form posts and the page redirects to itself; with htmx the card is
    swapped in place.
    """
    campaign = permissions.get_campaign(request.user, pk)
    if request.method != "POST":
        campaign_learner.nudge(campaign)  # a learner update lost with a dead worker is sent again
        return _label_page(request, campaign)
    form = LabelActionForm(request.POST, labels=campaign.labels)
    if not form.is_valid():
        return _label_page(request, campaign, form, status=400)
    action = form.cleaned_data["action"]
    if action == "undo":
        annotation.undo_last(campaign, request.user, form.cleaned_data["item"])
    else:
        served = (
            Assignment.objects.filter(
                item_id=form.cleaned_data["item"],
                item__campaign=campaign,
                annotator=permissions.signed_in(request.user),
            )
            .select_related("item")
            .first()
        )
        if served is None:  # never served to this annotator: refuse, do not guess
            form.add_error(None, "This item was not served to you.")
            return _label_page(request, campaign, form, status=400)
        if action == "label" and served.state == Assignment.State.SKIPPED:
            form.add_error(None, "You skipped this item; it may have gone to someone else.")
            return _label_page(request, campaign, form, status=400)
        if action == "skip":
            annotation.skip(served.item, request.user)
        else:
            annotation.submit_label(
                served.item, request.user, form.cleaned_data["value"], form.cleaned_data["comment"]
            )
    if request.htmx:
        return _label_page(request, campaign)
    return redirect("campaign-label", pk=campaign.pk)


@never_cache
@login_required
def review(request: HttpRequest, pk: int) -> HttpResponse:
    """Items whose labels disagree, contradict each other or look wrong to the learner; the
    manager decides each."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    form = DecisionForm(request.POST or None, labels=campaign.labels)
    if request.method == "POST":
        if form.is_valid():
            item = Item.objects.filter(campaign=campaign, pk=form.cleaned_data["item"]).first()
            if item is not None:
                decide(item, request.user, form.cleaned_data["value"])
                messages.success(request, f"Decided “{form.cleaned_data['value']}”.")
                return redirect("campaign-review", pk=campaign.pk)
            form.add_error("item", "No such item in this campaign.")
        status = 400
    else:
        status = 200
    ids = review_items(campaign)
    items = Item.objects.filter(pk__in=ids).prefetch_related("labels__annotator")
    order = {pk: i for i, pk in enumerate(ids)}
    context = {
        "campaign": campaign,
        "items": sorted(items, key=lambda item: order[item.pk]),
        "form": form,
    }
    return render(request, "labeling/review.html", context, status=status)


@never_cache
@login_required
def campaign_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    """Progress, throughput, agreement, gold accuracy, the learning curve and diagnostics."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    model_versions.nudge(campaign)  # versions stuck behind a dead worker or broker are sent again
    summary = dashboard.summarize(campaign)
    xs = [p.n_labels for p in summary.curve]
    threshold = next((p.threshold for p in reversed(summary.curve) if p.threshold), None)
    context = {
        "campaign": campaign,
        "s": summary,
        "accuracy_chart": charts.line_chart(
            [charts.Series("centre network", xs, [p.gold_accuracy for p in summary.curve])],
            title="Accuracy on held-out gold items",
            x_label="labels",
            y_range=(0.0, 1.0),
        ),
        "disagreement_chart": charts.line_chart(
            [charts.Series("disagreement", xs, [p.disagreement for p in summary.curve])],
            title="Version-space disagreement on the pool",
            x_label="labels",
            hline=(threshold, f"stop below {threshold:g}") if threshold else None,
        ),
        "volume_chart": charts.line_chart(
            [charts.Series("log-volume proxy", xs, [p.log_volume for p in summary.curve])],
            title="Log-volume proxy of the version space",
            x_label="labels",
        ),
        "distribution_chart": charts.bar_chart(summary.distribution, title="Labels given"),
        "versions": campaign.models.order_by("-number")[:20],
    }
    return render(request, "labeling/dashboard.html", context)


@login_required
@require_POST
def campaign_stop(request: HttpRequest, pk: int) -> HttpResponse:
    """Stop serving items (or resume, with ``resume=1``)."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    resume = request.POST.get("resume") == "1"
    Campaign.objects.filter(pk=campaign.pk).update(stopped_at=None if resume else timezone.now())
    messages.success(request, "Campaign resumed." if resume else "Campaign stopped.")
    return redirect("campaign-dashboard", pk=campaign.pk)


@login_required
@require_POST
def campaign_retrain(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue a new model version now."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    version = model_versions.request_retrain(campaign, user=request.user)
    messages.success(request, f"Model version {version.number} queued.")
    return redirect("campaign-dashboard", pk=campaign.pk)


@never_cache
@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The user's API tokens: create one (shown once, stored hashed) or revoke one."""
    form = TokenForm(request.POST or None)
    created = None
    status = 200
    if request.method == "POST":
        if form.is_valid() and form.cleaned_data.get("revoke"):
            if tokens.revoke(request.user, form.cleaned_data["revoke"]):
                messages.success(request, "Token revoked.")
            return redirect("api-tokens")
        if form.is_valid():
            _row, created = tokens.create_token(request.user, form.cleaned_data["name"].strip())
            form = TokenForm()
        else:
            status = 400
    rows = permissions.signed_in(request.user).api_tokens.all()
    return render(
        request,
        "labeling/tokens.html",
        {"form": form, "tokens": rows, "created": created},
        status=status,
    )
