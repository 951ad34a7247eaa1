"""Pages. Each view: fetch with permission (labeling.permissions), validate with a form,
save, respond. A view whose page has an htmx-refreshed part serves that part too."""

from __future__ import annotations

import copy
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
from django.utils.text import Truncator
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe
from django_htmx.middleware import HtmxDetails

from labeling import (
    annotation,
    campaign_learner,
    charts,
    consensus,
    dashboard,
    evaluation,
    model_versions,
    near_duplicates,
    permissions,
    suggestions,
    tokens,
)
from labeling.embeddings import jobs as embedding_jobs
from labeling.forms import (
    LEARNER_FIELDS,
    CampaignForm,
    DecisionForm,
    LabelActionForm,
    TokenForm,
    UploadForm,
)
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
    form = CampaignForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        form.instance.created_by = request.user
        campaign = form.save()
        messages.success(request, f"Campaign “{campaign.name}” created. Now upload its texts.")
        return redirect("campaign-detail", pk=campaign.pk)
    return render(request, "labeling/campaign_form.html", {"form": form, "campaign": None})


@login_required
def campaign_edit(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    before = copy.copy(campaign)  # validating the form writes the posted values into campaign
    form = CampaignForm(request.POST or None, instance=campaign)
    rebuild = None
    if request.method == "POST" and form.is_valid():
        # A change that rebuilds the learner from its labels is confirmed first
        # (docs/platform.md, "Campaign settings"); the API saves it at once.
        rebuild = _rebuild_warning(before, form)
        if rebuild is None or request.POST.get("confirm_rebuild"):
            with transaction.atomic():
                form.save()
                evaluation.top_up(campaign)  # the evaluation set follows its size setting
                if campaign.overlap != before.overlap:
                    consensus.recount_done(campaign)  # "fully labeled" moved
                campaign_learner.request_update(campaign.pk)  # new settings: rebuild the learner
            messages.success(request, "Campaign saved.")
            return redirect("campaign-detail", pk=campaign.pk)
    context = {"form": form, "campaign": before, "rebuild": rebuild}
    return render(request, "labeling/campaign_form.html", context)


def _rebuild_warning(before: Campaign, form: CampaignForm) -> dict[str, object] | None:
    """What the edit page says before saving settings that rebuild a learner with labels."""
    after = form.proposed()
    if not campaign_learner.forces_rebuild(before, after):
        return None
    cost = campaign_learner.rebuild_cost(before)
    if not cost.n_labels:
        return None
    changed = [str(form[name].label) for name in LEARNER_FIELDS if name in form.changed_data]
    if len(after.labels) != len(before.labels):
        changed.append("number of labels")
    return {"cost": cost, "changed": changed}


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
        "uploads": near_duplicates.annotate_uploads(
            campaign, list(campaign.uploads.order_by("-created_at")[:20])
        ),
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
        near_duplicates=form.cleaned_data.get("near_duplicates"),
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


#: Keys of the label buttons, in order: 1..9, 0, then letters, leaving out the page's other
#: keys (s skip, u undo); campaigns have at most 20 labels (docs/platform.md, "The labeling page").
LABEL_KEYS = "1234567890abcdefghij"
#: Labels listed in the annotator's history panel.
HISTORY_LENGTH = 10
#: At most this many metadata fields on the card, each cut to so many characters.
CARD_METADATA_FIELDS = 8
CARD_METADATA_CHARS = 200


def _card_metadata(campaign: Campaign, item: Item) -> list[tuple[str, str]]:
    """The item's metadata fields shown on the card: the campaign's ``card_metadata`` keys
    (in that order), or every key when it is None."""
    meta = item.metadata if isinstance(item.metadata, dict) else {}
    chosen = campaign.card_metadata
    keys = chosen if isinstance(chosen, list) else list(meta)
    shown = [k for k in keys if isinstance(k, str) and k in meta][:CARD_METADATA_FIELDS]
    values = ["" if meta[k] is None else str(meta[k]) for k in shown]
    return [
        (Truncator(k).chars(60), Truncator(v).chars(CARD_METADATA_CHARS))
        for k, v in zip(shown, values, strict=True)
    ]


def _snippet(item: Item) -> str:
    return Truncator(item.text).words(6, truncate="…")


def _label_page(
    request: HtmxHttpRequest,
    campaign: Campaign,
    form: LabelActionForm | None = None,
    status: int = 200,
    feedback: str = "",
) -> HttpResponse:
    served = annotation.next_assignment(campaign, request.user)
    mine = Label.objects.filter(
        item__campaign=campaign,
        annotator=permissions.signed_in(request.user),
        undone_at__isnull=True,
    )
    n_mine = mine.count()
    last = mine.order_by("-created_at", "-pk").values_list("item_id", flat=True).first()
    # Positions run 0..n-1 (docs/platform.md, "Embeddings"): the largest one is an index
    # look-up, a count reads every item of the campaign.
    top = Item.objects.filter(campaign=campaign).order_by("-position")
    last_position = top.values_list("position", flat=True).first()
    n_items = 0 if last_position is None else last_position + 1
    snapshot_version = (
        LearnerSnapshot.objects.filter(campaign=campaign).values_list("version", flat=True).first()
    )
    # Kept as labels change (docs/scaling.md, "The labeling card's progress"): no count here.
    label_version, n_done = Campaign.objects.values_list("label_version", "n_fully_labeled").get(
        pk=campaign.pk
    )
    context = {
        "campaign": campaign,
        "assignment": served,
        # Label changes the learner's queue does not reflect yet (load benchmark, UI hint).
        "learner_lag": label_version - (snapshot_version or 0),
        "buttons": list(zip(LABEL_KEYS, campaign.labels, strict=False)),
        "n_mine": n_mine,
        "can_undo": n_mine > 0,
        "last_item": last,
        "form": form,
        # docs/platform.md, "The labeling page": what the annotator sees around the item.
        "feedback": feedback,
        "metadata": _card_metadata(campaign, served.item) if served else [],
        # docs/platform.md, "Suggestions": the model's guess, where the campaign shows it.
        "suggestion": suggestions.for_served(campaign, served.item) if served else None,
        "history": annotation.recent_labels(campaign, request.user, HISTORY_LENGTH),
        "n_skipped": 0 if served else annotation.skipped_count(campaign, request.user),
        "n_done": n_done,
        "done_goal": campaign.label_goal or n_items,
        "my_goal": campaign.annotator_goal,
    }
    template = "labeling/label.html"
    if request.htmx:
        template += "#label-card"
    return render(request, template, context, status=status)


@never_cache
@login_required
def label(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The annotator's page: one item at a time; POST label / skip / undo (or edit an earlier
    label, or bring skipped items back), then the next item.

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
    feedback = ""
    if action == "undo":
        undone = annotation.undo_last(campaign, request.user, form.cleaned_data["item"])
        if undone is not None:
            feedback = f"Undid “{undone.value}” on «{_snippet(undone.item)}»."
    elif action == "edit":
        value = form.cleaned_data["value"]
        try:
            changed = annotation.relabel(campaign, request.user, form.cleaned_data["label"], value)
        except ValueError:  # a manager renamed the labels since this page was loaded
            changed = None
        if changed is None:  # not this annotator's label, or withdrawn meanwhile
            form.add_error(None, "That label is not one of yours, or it was withdrawn.")
            return _label_page(request, campaign, form, status=400)
        old, new = changed
        feedback = (
            f"Changed «{_snippet(new.item)}» from “{old.value}” to “{new.value}”."
            if old.pk != new.pk
            else f"«{_snippet(new.item)}» stays “{new.value}”."
        )
    elif action == "unskip":
        n = annotation.unskip(campaign, request.user)
        feedback = f"{n} skipped item(s) back in your queue."
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
            feedback = f"Skipped «{_snippet(served.item)}»."
        else:
            try:
                given = annotation.submit_label(
                    served.item,
                    request.user,
                    form.cleaned_data["value"],
                    form.cleaned_data["comment"],
                )
            except ValueError:  # a manager renamed the labels since this page was loaded
                form.add_error(None, "The campaign's labels have changed: choose again.")
                return _label_page(request, campaign, form, status=400)
            feedback = f"Labeled “{given.label.value}” on «{_snippet(served.item)}»."
    if request.htmx:
        return _label_page(request, campaign, feedback=feedback)
    if feedback:
        messages.info(request, feedback)
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
    # The honest accuracy first (docs/platform.md, "The evaluation set"); the learner's own
    # measurements go under "Learner diagnostics".
    trusted = [p if p.n_eval >= evaluation.MIN_LABELS else None for p in summary.curve]
    context = {
        "campaign": campaign,
        "s": summary,
        "estimate_chart": charts.line_chart(
            [
                charts.Series(
                    "evaluation set (Wilson 95 % interval)",
                    xs,
                    [p.eval_accuracy if p else None for p in trusted],
                    low=[p.eval_low if p else None for p in trusted],
                    high=[p.eval_high if p else None for p in trusted],
                ),
                charts.Series(
                    "cross-validated estimate (from training labels)",
                    xs,
                    [p.cv_accuracy for p in summary.curve],
                ),
            ],
            title="Estimated accuracy ± 95 % interval",
            x_label="labels",
            y_range=(0.0, 1.0),
        ),
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
