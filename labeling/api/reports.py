"""What the API reports: the dashboard's metrics, the items, and the label export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Exists, Max, OuterRef, Prefetch, QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import campaign_learner, dashboard, permissions, review
from labeling.api.base import CampaignRoutes
from labeling.api.pagination import StrictLimitOffsetPagination
from labeling.api.serializers import ItemSerializer, MetricsSerializer
from labeling.embeddings import jobs as embedding_jobs
from labeling.models import Item, Label

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The export streams rows fetched CHUNK_ROWS at a time, in pieces of about PIECE characters.
CHUNK_ROWS, PIECE = 2000, 64 * 1024


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


class ReportActions(CampaignRoutes):
    @extend_schema(responses=MetricsSerializer)
    @action(detail=True, methods=["get"])
    def metrics(self, request: Request, pk: Any = None) -> Response:
        """What the dashboard shows (managers): progress, labels per annotator, agreement,
        gold accuracy, the label distribution, the embedding job, the learner's diagnostics
        and learning curve, and the newest finished model version."""
        campaign = self._campaign(pk, manage=True)
        campaign_learner.nudge(campaign)
        s = dashboard.summarize(campaign)
        job = embedding_jobs.latest_job(campaign)
        snap = s.snapshot
        latest = campaign.models.filter(status="done").order_by("-number").first()
        body = {
            "n_items": s.n_items,
            "n_done": s.n_done,
            "n_labels": s.n_labels,
            "n_review": s.n_review,
            "n_gold": s.n_gold,
            "stopped": campaign.stopped_at is not None,
            "stop_suggested": s.stop.stop,
            "stop": vars(s.stop),
            "n_evaluation": s.n_evaluation,
            "estimate": None
            if s.estimate is None
            else {**vars(s.estimate), "caption": s.estimate.caption},
            "distribution": dict(s.distribution),
            "annotators": [vars(a) for a in s.annotators],
            "agreement": vars(s.agreement),
            "embedding": None
            if job is None
            else {
                "status": job.status,
                "model_name": job.model_name,
                "n_done": job.n_done,
                "n_total": job.n_total,
                "dim": job.dim,
                "device": job.device,
                "error": job.error,
            },
            "learner": None
            if snap is None
            else {
                "version": snap.version,
                "lag": s.lag,
                **{
                    f: getattr(snap, f)
                    for f in (
                        "n_labels",
                        "round",
                        "center_status",
                        "solver",
                        "seconds",
                        "rebuilt",
                        "message",
                        "error",
                        "queue",
                        "conflicts",
                        "suspects",
                        "updated_at",
                    )
                },
            },
            "curve": [
                {
                    f: getattr(p, f)
                    for f in (
                        "n_labels",
                        "gold_accuracy",
                        "n_gold",
                        "eval_accuracy",
                        "eval_low",
                        "eval_high",
                        "n_eval",
                        "cv_accuracy",
                        "log_volume",
                        "disagreement",
                        "threshold",
                    )
                }
                for p in s.curve
            ],
            "latest_model": latest.number if latest else None,
        }
        return Response(MetricsSerializer(body).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=["labeled", "unlabeled", "review"], required=False)
        ],
        responses=ItemSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: Any = None) -> Response:
        """The campaign's items; ``state`` filters labeled, unlabeled or (managers) in-review
        items. Managers see every label and the gold labels; an annotator sees only their own
        labels, and ``labeled``/``unlabeled`` mean by them, so that double labeling stays
        independent."""
        campaign = self._campaign(pk)
        manager = permissions.can_manage(request.user, campaign)
        active = Label.objects.filter(undone_at__isnull=True)
        if not manager:
            active = active.filter(annotator=permissions.signed_in(request.user))
        items = campaign.items.order_by("position").prefetch_related(
            Prefetch("labels", queryset=active, to_attr="active_labels")
        )
        state = request.query_params.get("state")
        # One (NOT) EXISTS per item, walked in position order until the page is full: no
        # DISTINCT over the item rows, no IN over every label of every campaign; and the
        # page's count from the labels and the positions, not a COUNT(*) over the items
        # (docs/scaling.md, "Items listing").
        has_label = Exists(active.filter(item=OuterRef("pk")))
        if state not in (None, "labeled", "unlabeled", "review"):
            raise ValidationError({"state": "Use labeled, unlabeled or review."})
        if state == "review" and not manager:
            raise PermissionDenied("Only the campaign's managers see items in review.")
        page: list[Any] | None
        if state == "review":
            items = items.filter(pk__in=review.review_items(campaign))
            page = self.paginate_queryset(items)
        else:
            # Positions run 0..n-1 in order (items are append-only; docs/platform.md,
            # "Uploads"), so the whole list's offset is a position to seek to.
            last = campaign.items.aggregate(m=Max("position"))["m"]
            n_items = 0 if last is None else last + 1
            listed = items
            if state == "labeled":
                listed = items.filter(has_label)
            elif state == "unlabeled":
                listed = items.exclude(has_label)

            def rows_of(offset: int, limit: int) -> QuerySet[Item]:
                if state is None:
                    return items.filter(position__gte=offset)[:limit]
                return listed[offset : offset + limit]

            count = n_items
            if state is not None:  # labeled or unlabeled: the campaign's labeled items
                n_labeled = active.filter(item__campaign=campaign).aggregate(
                    n=Count("item_id", distinct=True)
                )["n"]
                count = n_labeled if state == "labeled" else n_items - n_labeled
            items = listed
            paginator = self.paginator
            assert isinstance(paginator, StrictLimitOffsetPagination)
            page = paginator.paginate_counted(count, rows_of, request)
        rows = [
            {
                "id": item.pk,
                "position": item.position,
                "text": item.text,
                "metadata": item.metadata,
                "labels": [label.value for label in item.active_labels],
                **({"gold": item.gold} if manager else {}),
            }
            for item in (page if page is not None else items)
        ]
        return self.get_paginated_response(rows) if page is not None else Response(rows)

    @extend_schema(
        parameters=[OpenApiParameter("as", str, enum=["csv", "jsonl"], required=False)],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
        },
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: Any = None) -> StreamingHttpResponse:
        """All active labels, streamed as CSV (default; cells that a spreadsheet would run as
        formulas are prefixed with ') or JSON Lines (``?as=jsonl``). Managers only."""
        campaign = self._campaign(pk, manage=True)
        kind = request.query_params.get("as", "csv")
        if kind not in ("csv", "jsonl"):
            raise ValidationError({"as": "Use csv or jsonl."})
        rows = (
            Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
            .order_by("pk")
            .values_list(
                "item_id", "item__text", "value", "annotator__username", "comment", "created_at"
            )
        )
        fields = ["item", "text", "label", "annotator", "comment", "created_at"]

        # Rows go out in pieces of about PIECE characters: one write to the socket per
        # piece, not per row (docs/scaling.md, "CSV export").
        def as_csv() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(fields)
            for row in rows.iterator(chunk_size=CHUNK_ROWS):
                writer.writerow(
                    [row[0], *(spreadsheet_safe(str(v)) for v in row[1:5]), row[5].isoformat()]
                )
                if buffer.tell() >= PIECE:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()

        def as_jsonl() -> Iterator[str]:
            lines: list[str] = []
            size = 0
            for row in rows.iterator(chunk_size=CHUNK_ROWS):
                record = dict(zip(fields, (*row[:5], row[5].isoformat()), strict=True))
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
                size += len(lines[-1])
                if size >= PIECE:
                    yield "".join(lines)
                    lines, size = [], 0
            yield "".join(lines)

        content_type = "text/csv" if kind == "csv" else "application/x-ndjson"
        response = StreamingHttpResponse(
            as_csv() if kind == "csv" else as_jsonl(), content_type=f"{content_type}; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="campaign-{campaign.pk}-labels.{kind}"'
        )
        return response
