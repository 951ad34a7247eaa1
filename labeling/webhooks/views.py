"""The campaign's Webhooks page: add and remove webhooks, see the delivery log
(docs/platform.md, "Webhooks"). Managers only, like the API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from labeling import permissions
from labeling.models import Campaign, Webhook, WebhookDelivery
from labeling.webhooks import delivery, subscriptions
from labeling.webhooks.forms import WebhookActionForm, WebhookForm

#: Deliveries the page's log shows.
LOG_ROWS = 50


def _page(
    request: HttpRequest,
    campaign: Campaign,
    form: WebhookForm,
    *,
    created: Webhook | None = None,
    status: int = 200,
) -> HttpResponse:
    template = "labeling/webhooks.html"
    if request.headers.get("HX-Request") == "true":  # the log's refresh asks for its part only
        template += "#delivery-log"
    log = (
        WebhookDelivery.objects.filter(webhook__campaign=campaign)
        .select_related("webhook")
        .order_by("-created_at", "-pk")[:LOG_ROWS]
    )
    busy = WebhookDelivery.objects.filter(
        Q(status=WebhookDelivery.Status.PENDING) | Q(status=WebhookDelivery.Status.SENDING),
        webhook__campaign=campaign,
    ).exists()
    context = {
        "campaign": campaign,
        "form": form,
        "webhooks": campaign.webhooks.order_by("pk"),
        "created": created,
        "log": log,
        "busy": busy,
        "events": subscriptions.DESCRIPTIONS,
    }
    return render(request, template, context, status=status)


@never_cache
@login_required
def webhooks(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    if request.method in ("GET", "HEAD"):
        return _page(request, campaign, WebhookForm())
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD, POST"})
    if "action" in request.POST:
        return _act(request, campaign)
    form = WebhookForm(request.POST)
    if not form.is_valid():
        return _page(request, campaign, form, status=400)
    created = subscriptions.create(
        campaign, form.cleaned_data["url"], form.cleaned_data["events"], request.user
    )
    # The secret is in this answer only (not a redirect): it is never shown again.
    return _page(request, campaign, WebhookForm(), created=created)


def _act(request: HttpRequest, campaign: Campaign) -> HttpResponse:
    form = WebhookActionForm(request.POST)
    hook = None
    if form.is_valid():
        hook = campaign.webhooks.filter(pk=form.cleaned_data["webhook"]).first()
    if hook is None:
        messages.error(request, "No such webhook in this campaign.")
        return redirect("campaign-webhooks", pk=campaign.pk)
    match form.cleaned_data["action"]:
        case "delete":
            hook.delete()
            messages.success(request, f"Webhook to {hook.url} removed, with its delivery log.")
        case "toggle":
            Webhook.objects.filter(pk=hook.pk).update(active=not hook.active)
            state = "turned off" if hook.active else "turned on"
            messages.success(request, f"Webhook to {hook.url} {state}.")
        case _:
            delivery.ping(hook)
            messages.success(request, f"A ping is on its way to {hook.url}.")
    return redirect("campaign-webhooks", pk=campaign.pk)
