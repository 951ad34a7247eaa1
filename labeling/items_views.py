"""The items page and one item's history (docs/platform.md, "The items page"): managers only.

The list serves its htmx partial (``#items-results``) when the filters change; the actions
post to the same URL, carrying the filters in the query string for "all matching".
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django_htmx.middleware import HtmxDetails

from labeling import items_page, permissions
from labeling.models import Campaign, Item, Upload


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _filters(query: QueryDict) -> str:
    """The query string without the page position: what links and actions carry along."""
    kept = query.copy()
    for name in items_page.ItemsQueryForm.PAGING:
        kept.pop(name, None)
    return kept.urlencode()


@never_cache
@login_required
def items(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: the campaign's items, filtered and paged (or only the results part for htmx).
    POST: an action on the selected items, all matching ones, or an upload."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    query = items_page.ItemsQueryForm(request.GET, campaign=campaign)
    if request.method == "POST":
        return _act(request, campaign, query)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD, POST"})
    context = _context(campaign, query, request.GET)
    template = "labeling/items.html"
    if request.htmx and not request.htmx.boosted:
        template += "#items-results"
    return render(request, template, context, status=200 if query.is_valid() else 400)


def _context(
    campaign: Campaign, query: items_page.ItemsQueryForm, params: QueryDict
) -> dict[str, object]:
    page = items_page.page_of(campaign, query.cleaned_data) if query.is_valid() else None
    rows = []
    if page is not None:
        for item in page.items:
            predicted = item.predicted
            label = (
                campaign.labels[predicted]
                if predicted is not None and predicted < len(campaign.labels)
                else ""
            )
            rows.append({"item": item, "labels": page.labels.get(item.pk, []), "predicted": label})
    uploads = campaign.uploads.annotate(n_items=Count("items")).order_by("-created_at")
    return {
        "campaign": campaign,
        "query": query,
        "page": page,
        "rows": rows,
        "filters": _filters(params),
        "uploads": uploads,
    }


def _back(campaign: Campaign, filters: str) -> HttpResponse:
    url = reverse("campaign-items", args=[campaign.pk])
    return redirect(f"{url}?{filters}" if filters else url)


def _act(
    request: HttpRequest, campaign: Campaign, query: items_page.ItemsQueryForm
) -> HttpResponse:
    form = items_page.ItemsActionForm(request.POST)
    filters = _filters(request.GET)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return _back(campaign, filters)
    action = form.cleaned_data["action"]
    upload = None
    selected: QuerySet[Item]
    if action == "delete_upload":
        upload = Upload.objects.filter(campaign=campaign, pk=form.cleaned_data["upload"]).first()
        if upload is None:
            messages.error(request, "No such upload in this campaign (deleted already?).")
            return _back(campaign, filters)
        selected = Item.objects.filter(campaign=campaign, upload=upload)
    elif form.cleaned_data["all_matching"]:
        if not query.is_valid():
            messages.error(request, "The filter is not valid; fix it before acting on it.")
            return _back(campaign, filters)
        data = {k: v for k, v in query.cleaned_data.items() if k not in query.PAGING}
        selected = items_page.matching(campaign, data)
    else:
        selected = Item.objects.filter(campaign=campaign, pk__in=form.cleaned_data["ids"])
    if action in ("delete", "delete_upload") and not form.cleaned_data["confirm"]:
        context = {
            "campaign": campaign,
            "action": action,
            "upload": upload,
            "n": selected.count(),
            "sample": list(selected.order_by("position")[:10]),
            "ids": form.cleaned_data["ids"],
            "all_matching": form.cleaned_data["all_matching"],
            "filters": filters,
        }
        return render(request, "labeling/items_confirm.html", context)
    if action == "review":
        n = items_page.send_to_review(selected)
        messages.success(request, f"Sent {n} item{'s' * (n != 1)} to review.")
    elif action == "gold":
        result = items_page.mark_gold(selected)
        if result.marked:
            messages.success(
                request, f"Marked {result.marked} item(s) gold with their final label."
            )
        if result.refused:
            messages.error(
                request,
                f"{len(result.refused)} item(s) have no final label (no labels, or labels that "
                "disagree and no decision) and were not marked gold: "
                + ", ".join(f"#{pk}" for pk in result.refused[:20])
                + ("…" if len(result.refused) > 20 else ""),
            )
    else:
        try:
            deleted = items_page.delete_items(campaign, selected, upload)
        except items_page.EmbeddingBusy as exc:
            messages.error(request, str(exc))
            return _back(campaign, filters)
        what = f"the upload “{deleted.upload}” and " if deleted.upload else ""
        messages.success(
            request,
            f"Deleted {what}{deleted.items} item(s) with their {deleted.labels} label(s). "
            "The learner is rebuilding without them.",
        )
    return _back(campaign, filters)


@never_cache
@login_required
def item_detail(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """One item: its text, metadata, gold, evaluation flag, the model's prediction, and its
    history (labels, undone ones marked, skips, decisions, review requests)."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    if item_pk >= 2**63:
        raise Http404("No such item.")
    item = get_object_or_404(Item.objects.select_related("upload"), campaign=campaign, pk=item_pk)
    predicted = ""
    if item.predicted is not None and item.predicted < len(campaign.labels):
        predicted = campaign.labels[item.predicted]
    context = {
        "campaign": campaign,
        "item": item,
        "events": items_page.history(item),
        "final": items_page.final_label(item),
        "predicted": predicted,
    }
    return render(request, "labeling/item_detail.html", context)
