"""What the API reports: the dashboard's metrics, the items, and the label export
(written by ``labeling/exports``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Prefetch, QuerySet
from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import campaign_learner, dashboard, permissions, review
from labeling.api.base import CampaignRoutes
from labeling.api.pagination import StrictLimitOffsetPagination
from labeling.api.serializers import ItemSerializer, MetricsSerializer
from labeling.embeddings import jobs as embedding_jobs
from labeling.exports import formats
from labeling.exports import rows as export_rows
from labeling.models import Item, Label

#: ``?as=`` of the label export: content type and file suffix.
EXPORT_FORMATS = formats.EXPORT_FORMATS
#: The formats written to a file before they are sent.
FILE_FORMATS = formats.FILE_FORMATS


class TooBigToStream(APIException):
    status_code = 409
    default_code = "export_too_big"


def _export_schema(kind: str) -> Any:
    """The OpenAPI schema of one export format's answer: Label Studio's is a JSON array of
    task objects; the files are binary; CSV and JSON Lines are text."""
    if kind == "labelstudio":
        return {"type": "array", "items": {"type": "object", "additionalProperties": True}}
    return OpenApiTypes.BINARY if kind in FILE_FORMATS else OpenApiTypes.STR


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
        parameters=[
            OpenApiParameter(
                "as",
                str,
                enum=list(EXPORT_FORMATS),
                required=False,
                description="csv (default), jsonl, parquet, hf (a zipped Hugging Face datasets "
                "folder) or labelstudio (Label Studio JSON tasks).",
            ),
            OpenApiParameter(
                "rows",
                str,
                enum=[formats.ROWS_LABELS, formats.ROWS_ITEMS],
                required=False,
                description="One row per active label (default) or per item, its labels "
                "nested (csv: one JSON cell). hf and labelstudio are one record per item.",
            ),
            OpenApiParameter(
                "items",
                str,
                enum=["labeled", "all"],
                required=False,
                description="Only the items with an active label or a decision (default), "
                "or all items.",
            ),
        ],
        responses={
            **{
                (200, content_type): _export_schema(kind)
                for kind, (content_type, _) in EXPORT_FORMATS.items()
            },
            (409, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="More items than EXPORT_STREAM_ITEMS: use an export job "
                "(POST exports/).",
            ),
        },
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: Any = None) -> StreamingHttpResponse:
        """The labels with their items (managers only; docs/platform.md, "Label export"):
        text, metadata, the final label and its source (the manager's latest decision or the
        agreeing labels), every active label with its annotator, time and comment, the gold
        label, the evaluation flag, and the served model's prediction, confidence and version.
        CSV (default; cells a spreadsheet would run as formulas are prefixed with '), JSON
        Lines and Label Studio JSON are streamed; Parquet and the zipped Hugging Face folder
        are written to a temporary file a chunk at a time and then streamed. An export of
        more than EXPORT_STREAM_ITEMS items (200,000) is refused with 409: run it as an export
        job (``exports/``)."""
        campaign = self._campaign(pk, manage=True)
        params = request.query_params
        kind = params.get("as", "csv")
        if kind not in EXPORT_FORMATS:
            raise ValidationError({"as": "Use " + ", ".join(EXPORT_FORMATS) + "."})
        rows = params.get("rows", formats.ROWS_LABELS)
        if rows not in (formats.ROWS_LABELS, formats.ROWS_ITEMS):
            raise ValidationError({"rows": "Use labels or items."})
        which = params.get("items", "labeled")
        if which not in ("labeled", "all"):
            raise ValidationError({"items": "Use labeled or all."})
        plan = export_rows.plan(campaign, labeled_only=which == "labeled")
        if plan.n_items > settings.CARVE_EXPORT_STREAM_ITEMS:
            # docs/platform.md, "Export jobs": a request this long would outlast a web
            # worker's timeout.
            raise TooBigToStream(
                f"This export covers {plan.n_items} items, more than EXPORT_STREAM_ITEMS "
                f"({settings.CARVE_EXPORT_STREAM_ITEMS}) a request streams: start an export "
                f"job (POST /api/v1/campaigns/{campaign.pk}/exports/ with the same options) "
                "and download its file when it is done."
            )
        content_type, suffix = EXPORT_FORMATS[kind]
        filename = f"campaign-{campaign.pk}-labels.{suffix}"
        response: StreamingHttpResponse
        if kind in FILE_FORMATS:
            response = _file_response(plan, kind, rows, filename, content_type)
        else:
            text = (
                formats.as_csv(plan, rows)
                if kind == "csv"
                else formats.as_jsonl(plan, rows)
                if kind == "jsonl"
                else formats.as_labelstudio(plan)
            )
            response = StreamingHttpResponse(text, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _file_response(
    plan: export_rows.Plan, kind: str, rows: str, filename: str, content_type: str
) -> FileResponse:
    """Parquet and the zipped ``datasets`` folder need a file: written under CARVE_DATA_DIR/exports
    a chunk at a time, opened, unlinked (the open handle keeps it readable), and streamed
    in blocks by FileResponse (docs/platform.md, "Label export")."""
    from labeling.exports import arrow  # pyarrow, loaded only for these formats

    root = Path(settings.CARVE_DATA_DIR) / "exports"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-", dir=root))
    try:
        path = work / filename
        if kind == "parquet":
            arrow.write_parquet(plan, path, rows)
        else:
            name = filename.removesuffix(".zip")
            arrow.write_hf_folder(plan, work / name)
            arrow.zip_folder(work / name, path, name)
        handle = path.open("rb")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return FileResponse(handle, content_type=content_type)
