"""The near-duplicates page (docs/platform.md, "Near-duplicates"): managers only.

One view serves the page and its htmx partial (``#near-duplicates-results``); the actions
(merge, keep both) post to the same URL, for the checked pairs or every open one.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django_htmx.middleware import HtmxDetails

from labeling import items_page, near_duplicates, permissions
from labeling.models import Campaign

PAGE_SIZE = 50
#: Pairs one POST may name ("all open" goes without ids).
MAX_SELECTED = 1_000


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class PageForm(forms.Form):
    page = forms.IntegerField(required=False, min_value=1, max_value=10**6)


class PairActionForm(forms.Form):
    """Merge or keep the checked pairs (``ids``) or every open pair (``all_open``)."""

    ACTIONS = [("merge", "Merge"), ("keep", "Keep both")]
    action = forms.ChoiceField(required=False, choices=ACTIONS)
    ids = forms.CharField(required=False, max_length=20 * MAX_SELECTED)
    all_open = forms.BooleanField(required=False)
    # A row's own button: "merge:<pair id>" or "keep:<pair id>".
    one = forms.RegexField(required=False, regex=r"^(merge|keep):[1-9][0-9]{0,18}$")

    def clean_ids(self) -> list[int]:
        raw = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        out: list[int] = []
        for part in (p for value in raw for p in str(value).replace(",", " ").split()):
            # (The length before int(), which refuses strings of over 4,300 digits.)
            digits = part.isascii() and part.isdigit() and len(part) <= 19
            if not digits or not 0 < int(part) < 2**63:
                raise ValidationError(f"{part[:20]!r} is not a pair id.")
            out.append(int(part))
        if len(out) > MAX_SELECTED:
            raise ValidationError(f"Select at most {MAX_SELECTED} pairs, or all open ones.")
        return list(dict.fromkeys(out))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("one"):
            action, _, pk = str(data["one"]).partition(":")
            if int(pk) >= 2**63:  # 19 digits may still be past the id column's range
                raise ValidationError(f"{pk!r} is not a pair id.")
            data.update(action=action, ids=[int(pk)], all_open=False)
        if not data.get("action"):
            if "action" not in self.errors:
                raise ValidationError("Choose merge or keep both.")
        elif not data.get("ids") and not data.get("all_open"):
            raise ValidationError("Select some pairs first.")
        return data


@never_cache
@login_required
def near_duplicates_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: the campaign's open near-duplicate pairs side by side (or only the list part for
    htmx). POST: merge or keep the checked pairs, or all open ones."""
    campaign = permissions.get_campaign(request.user, pk, manage=True)
    if request.method == "POST":
        return _act(request, campaign)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD, POST"})
    paging = PageForm(request.GET)
    if not paging.is_valid():
        return _render(request, campaign, 1, status=400)
    return _render(request, campaign, paging.cleaned_data.get("page") or 1)


def _render(
    request: HtmxHttpRequest, campaign: Campaign, page: int, status: int = 200
) -> HttpResponse:
    pairs = near_duplicates.open_pairs(campaign).select_related("item", "duplicate_of")
    count = pairs.count()
    rows = list(pairs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE])
    context = {
        "campaign": campaign,
        "rows": near_duplicates.with_labels(rows),
        "count": count,
        "page": page,
        "prev_page": page - 1 if page > 1 else None,
        "next_page": page + 1 if page * PAGE_SIZE < count else None,
    }
    template = "labeling/near_duplicates.html"
    if request.htmx and not request.htmx.boosted:
        template += "#near-duplicates-results"
    return render(request, template, context, status=status)


def _act(request: HtmxHttpRequest, campaign: Campaign) -> HttpResponse:
    form = PairActionForm(request.POST)
    status = 200
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        status = 400
    else:
        ids = form.cleaned_data["ids"]
        if form.cleaned_data["all_open"]:
            ids = list(
                near_duplicates.open_pairs(campaign).values_list("pk", flat=True)[
                    : near_duplicates.MERGE_BATCH
                ]
            )
        if form.cleaned_data["action"] == "merge":
            try:
                merged = near_duplicates.merge(campaign, ids)
            except items_page.EmbeddingBusy as exc:
                messages.error(request, str(exc))
                status = 400  # (swapped by htmx, as the page's htmx config says for 400)
            else:
                messages.success(request, merged.describe())
        else:
            n, not_open = near_duplicates.keep(campaign, ids)
            text = f"Kept both items of {n} pair(s)."
            if not_open:
                text += f" {len(not_open)} pair(s) were not open (merged or kept already)."
            messages.success(request, text)
        if form.cleaned_data["all_open"] and (left := near_duplicates.open_pairs(campaign).count()):
            # "All open" acts on MERGE_BATCH pairs per request.
            messages.info(request, f"{left} open pair(s) left: press the button again.")
    if request.htmx and not request.htmx.boosted:
        return _render(request, campaign, 1, status=status)
    if status != 200:
        return _render(request, campaign, 1, status=status)
    return redirect("campaign-near-duplicates", pk=campaign.pk)
