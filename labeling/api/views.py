"""API views: the same permissions as the pages (labeling.permissions)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

import learner
from labeling import (
    annotation,
    campaign_learner,
    dashboard,
    model_versions,
    onnx_export,
    permissions,
    review,
)
from labeling.api.parsing import ImportJSONParser
from labeling.api.serializers import (
    CampaignSerializer,
    DecisionInSerializer,
    DecisionOutSerializer,
    ImportFileSerializer,
    ImportItemsSerializer,
    ImportJobSerializer,
    ImportOptionsSerializer,
    ItemRefSerializer,
    ItemSerializer,
    LabelInSerializer,
    LabelOutSerializer,
    MetricsSerializer,
    ModelVersionSerializer,
    NextItemSerializer,
    PredictInSerializer,
    PredictOutSerializer,
    UndoInSerializer,
)
from labeling.embeddings import jobs as embedding_jobs
from labeling.embeddings import pool
from labeling.imports import jobs as import_jobs
from labeling.models import Assignment, Campaign, ImportJob, Label

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _label_body(label: Label, *, created: bool) -> dict[str, Any]:
    """A label as LabelOutSerializer shows it (``created`` False: a repeat or an undo)."""
    return {
        "id": label.pk,
        "item": label.item_id,
        "value": label.value,
        "comment": label.comment,
        "created": created,
    }


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[Any],
):
    """Campaigns the caller may see. Managers create campaigns and update their own;
    annotators read the campaigns they are assigned to. Others get 404."""

    serializer_class = CampaignSerializer
    lookup_value_regex = r"\d+"  # /campaigns/abc/... is a 404, not an error in int()

    def get_queryset(self) -> QuerySet[Campaign]:
        return (
            permissions.visible_campaigns(self.request.user)
            .annotate(n_items=Count("items", distinct=True))
            .order_by("-created_at", "-pk")
        )

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        if not permissions.is_manager(self.request.user):
            raise PermissionDenied("Only campaign managers create campaigns.")
        serializer.save(created_by=self.request.user)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        campaign = serializer.instance
        if not isinstance(campaign, Campaign) or not permissions.can_manage(
            self.request.user, campaign
        ):
            raise PermissionDenied("Only the campaign's managers may change it.")
        with transaction.atomic():
            serializer.save()
            campaign_learner.request_update(campaign.pk)  # new settings: rebuild the learner

    def _campaign(self, pk: Any, *, manage: bool = False) -> Campaign:
        return permissions.get_campaign(self.request.user, int(pk), manage=manage)

    # ---- bulk import ------------------------------------------------------------------------

    def _job_body(self, job: ImportJob) -> dict[str, Any]:
        return dict(ImportJobSerializer(job, context={"request": self.request}).data)

    @extend_schema(methods=["GET"], responses=ImportJobSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request={
            "multipart/form-data": ImportFileSerializer,
            "application/json": ImportItemsSerializer,
        },
        responses={
            201: OpenApiResponse(ImportJobSerializer, description="Imported during the request."),
            202: OpenApiResponse(ImportJobSerializer, description="Queued: poll its url."),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A refused file: the job (status failed) with its ``errors`` and "
                "a ``detail``; nothing was imported. Or invalid fields: {field: message}.",
            ),
            413: OpenApiResponse(OpenApiTypes.OBJECT, description="The body is too large."),
            500: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="An unexpected failure: the job (status failed) with its ``error``.",
            ),
        },
    )
    @action(
        detail=True, methods=["get", "post"], parser_classes=[MultiPartParser, ImportJSONParser]
    )
    def imports(self, request: Request, pk: Any = None) -> Response:
        """Import items (managers): a CSV or JSON Lines ``file`` (multipart), or a JSON list
        of ``items``, checked like an upload on the campaign page and imported all or nothing.
        Files up to IMPORT_INLINE_BYTES are imported during the request (201, or 400 with
        ``errors``); larger ones, or any with ``background=true``, answer 202 with a job whose
        ``url`` reports its progress. GET lists the campaign's import jobs, newest first."""
        campaign = self._campaign(pk, manage=True)
        if request.method == "GET":
            rows = campaign.import_jobs.defer("data").order_by("-pk")
            page = self.paginate_queryset(rows)
            bodies = [self._job_body(job) for job in (page if page is not None else rows)]
            return self.get_paginated_response(bodies) if page is not None else Response(bodies)
        as_json = (request.content_type or "").startswith("application/json")
        if as_json:
            # The options through the serializer; the items go as they are to the JSON Lines
            # checks (one line per item), which is cheaper than validating each dict here and
            # reports problems the way an upload does.
            body: BaseSerializer[Any] = ImportOptionsSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            options = body.validated_data
            items = request.data.get("items") if isinstance(request.data, dict) else None
            if not isinstance(items, list) or not items:
                raise ValidationError({"items": "Send a non-empty list of item objects."})
            if len(items) > settings.CARVE_UPLOAD_MAX_ROWS:
                raise ValidationError(
                    {
                        "items": f"{len(items):,} items; one import takes at most "
                        f"{settings.CARVE_UPLOAD_MAX_ROWS:,}."
                    }
                )
            data, filename = import_jobs.items_as_jsonl(items), import_jobs.ITEMS_FILENAME
        else:
            body = ImportFileSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            options = body.validated_data
            upload = options["file"]
            if upload.size > settings.CARVE_UPLOAD_MAX_BYTES:
                raise ValidationError(
                    {
                        "file": f"The file is {upload.size:,} bytes; the limit is "
                        f"{settings.CARVE_UPLOAD_MAX_BYTES:,} bytes."
                    }
                )
            data, filename = upload.read(), upload.name or "upload"
        job = import_jobs.start_import(
            campaign,
            request.user,
            data,
            filename,
            text_column=options["text_column"].strip(),
            gold_column=options["gold_column"].strip(),
            background=options["background"],
        )
        answer = self._job_body(job)
        if job.status == ImportJob.Status.FAILED and job.errors:
            answer["detail"] = "The file was refused; nothing was imported. See errors."
            return Response(answer, status=status.HTTP_400_BAD_REQUEST)
        if job.status == ImportJob.Status.FAILED:
            answer["detail"] = "The import failed; nothing was imported. See error."
            return Response(answer, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
        if job.status == ImportJob.Status.DONE:
            return Response(answer, status=status.HTTP_201_CREATED)
        return Response(
            answer, status=status.HTTP_202_ACCEPTED, headers={"Location": answer["url"]}
        )

    @extend_schema(responses=ImportJobSerializer)
    @action(detail=True, methods=["get"], url_path=r"imports/(?P<job_id>\d+)")
    def import_job(self, request: Request, pk: Any = None, job_id: str = "") -> Response:
        """One import job: ``queued``, ``running``, ``done`` (with ``result``) or ``failed``
        (with ``errors`` for a refused file, ``error`` otherwise; nothing was imported)."""
        campaign = self._campaign(pk, manage=True)
        job = campaign.import_jobs.defer("data").filter(pk=int(job_id)).first()
        if job is None:
            raise NotFound("No import job with that id in this campaign.")
        import_jobs.nudge(job)  # stuck behind a broker outage or a dead worker: send it again
        return Response(self._job_body(job))

    # ---- metrics and diagnostics --------------------------------------------------------------

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
        last = s.curve[-1] if s.curve else None
        latest = campaign.models.filter(status="done").order_by("-number").first()
        body = {
            "n_items": s.n_items,
            "n_done": s.n_done,
            "n_labels": s.n_labels,
            "n_review": s.n_review,
            "n_gold": s.n_gold,
            "stopped": campaign.stopped_at is not None,
            "stop_suggested": bool(
                last
                and last.disagreement is not None
                and last.threshold is not None
                and last.disagreement < last.threshold
            ),
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

    # ---- items, serving and labels -------------------------------------------------------

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=["labeled", "unlabeled", "review"], required=False)
        ],
        responses=ItemSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: Any = None) -> Response:
        """The campaign's items; ``state`` filters labeled, unlabeled or in-review items.
        Gold labels are shown to managers only."""
        campaign = self._campaign(pk)
        manager = permissions.can_manage(request.user, campaign)
        active = Label.objects.filter(undone_at__isnull=True)
        items = campaign.items.order_by("position").prefetch_related(
            Prefetch("labels", queryset=active, to_attr="active_labels")
        )
        state = request.query_params.get("state")
        if state == "labeled":
            items = items.filter(labels__in=active).distinct()
        elif state == "unlabeled":
            items = items.exclude(labels__in=active)
        elif state == "review":
            items = items.filter(pk__in=review.review_items(campaign))
        elif state is not None:
            raise ValidationError({"state": "Use labeled, unlabeled or review."})
        page = self.paginate_queryset(items)
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
        request=None,
        responses={
            200: NextItemSerializer,
            204: OpenApiResponse(description="Nothing to label right now."),
        },
    )
    @action(detail=True, methods=["post"])
    def next(self, request: Request, pk: Any = None) -> Response:
        """Lease the caller's next item (the same leasing as the labeling page)."""
        campaign = self._campaign(pk)
        served = annotation.next_assignment(campaign, request.user)
        if served is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            {"id": served.item_id, "text": served.item.text, "lease_expires_at": served.expires_at}
        )

    @extend_schema(
        request=LabelInSerializer, responses={201: LabelOutSerializer, 200: LabelOutSerializer}
    )
    @action(detail=True, methods=["post"])
    def labels(self, request: Request, pk: Any = None) -> Response:
        """Label an item the caller was served. Repeating a submission returns the first label
        (200); a label outside the label set, or for an item not served to the caller or
        skipped by them, is a 400."""
        campaign = self._campaign(pk)
        data = LabelInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        served = self._served(campaign, data.validated_data["item"])
        if served.state == Assignment.State.SKIPPED:
            raise ValidationError({"item": "You skipped this item."})
        if data.validated_data["value"] not in campaign.labels:
            raise ValidationError({"value": f"Choose one of: {', '.join(campaign.labels)}."})
        out = annotation.submit_label(
            served.item,
            request.user,
            data.validated_data["value"],
            data.validated_data.get("comment", ""),
        )
        body = _label_body(out.label, created=out.created)
        return Response(body, status=status.HTTP_201_CREATED if out.created else status.HTTP_200_OK)

    def _served(self, campaign: Campaign, item_id: int) -> Assignment:
        served = (
            Assignment.objects.filter(
                item_id=item_id,
                item__campaign=campaign,
                annotator=permissions.signed_in(self.request.user),
            )
            .select_related("item")
            .first()
        )
        if served is None:
            raise ValidationError({"item": "This item was not served to you."})
        return served

    @extend_schema(
        request=ItemRefSerializer,
        responses={204: OpenApiResponse(description="Skipped (or already labeled: unchanged).")},
    )
    @action(detail=True, methods=["post"])
    def skip(self, request: Request, pk: Any = None) -> Response:
        """Set an item the caller was served aside (others may still get it)."""
        campaign = self._campaign(pk)
        body = ItemRefSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        annotation.skip(self._served(campaign, body.validated_data["item"]).item, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=UndoInSerializer,
        responses={
            200: LabelOutSerializer,
            204: OpenApiResponse(description="Nothing to undo."),
        },
    )
    @action(detail=True, methods=["post"])
    def undo(self, request: Request, pk: Any = None) -> Response:
        """Withdraw the caller's latest label (kept, marked undone) and lease its item back."""
        campaign = self._campaign(pk)
        body = UndoInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        label = annotation.undo_last(campaign, request.user, body.validated_data.get("item"))
        if label is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_label_body(label, created=False))

    @extend_schema(request=DecisionInSerializer, responses={201: DecisionOutSerializer})
    @action(detail=True, methods=["post"])
    def decisions(self, request: Request, pk: Any = None) -> Response:
        """A manager's verdict on an item (typically one in review): it overrides the
        annotators' labels in training; their labels stay."""
        campaign = self._campaign(pk, manage=True)
        body = DecisionInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = campaign.items.filter(pk=body.validated_data["item"]).first()
        if item is None:
            raise ValidationError({"item": "No such item in this campaign."})
        value = body.validated_data["value"]
        if value not in campaign.labels:
            raise ValidationError({"value": f"Choose one of: {', '.join(campaign.labels)}."})
        decision = review.decide(item, request.user, value)
        out = {
            "id": decision.pk,
            "item": item.pk,
            "value": decision.value,
            "decided_by": request.user.get_username(),
            "created_at": decision.created_at,
        }
        return Response(DecisionOutSerializer(out).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=CampaignSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: Any = None) -> Response:
        """Stop serving items (managers); labels already given stay."""
        return self._set_stopped(pk, timezone.now())

    @extend_schema(request=None, responses=CampaignSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: Any = None) -> Response:
        """Serve items again after a stop (managers)."""
        return self._set_stopped(pk, None)

    def _set_stopped(self, pk: Any, when: Any) -> Response:
        campaign = self._campaign(pk, manage=True)
        Campaign.objects.filter(pk=campaign.pk).update(stopped_at=when)
        return Response(CampaignSerializer(self.get_queryset().get(pk=campaign.pk)).data)

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

        def as_csv() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(fields)
            for row in rows.iterator(chunk_size=1000):
                writer.writerow(
                    [row[0], *(spreadsheet_safe(str(v)) for v in row[1:5]), row[5].isoformat()]
                )
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()

        def as_jsonl() -> Iterator[str]:
            for row in rows.iterator(chunk_size=1000):
                record = dict(zip(fields, (*row[:5], row[5].isoformat()), strict=True))
                yield json.dumps(record, ensure_ascii=False) + "\n"

        content_type = "text/csv" if kind == "csv" else "application/x-ndjson"
        response = StreamingHttpResponse(
            as_csv() if kind == "csv" else as_jsonl(), content_type=f"{content_type}; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="campaign-{campaign.pk}-labels.{kind}"'
        )
        return response

    # ---- model versions and predictions ---------------------------------------------------

    @extend_schema(responses=ModelVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)  # a plain list, unpaginated
    def models(self, request: Request, pk: Any = None) -> Response:
        """The campaign's model versions with their metrics, newest first."""
        campaign = self._campaign(pk)
        rows = campaign.models.order_by("-number")
        return Response(ModelVersionSerializer(rows, many=True).data)

    @extend_schema(responses=ModelVersionSerializer)
    @action(detail=True, methods=["get"], url_path=r"models/(?P<number>\d+)")
    def model(self, request: Request, pk: Any = None, number: str = "") -> Response:
        """One model version: ``queued``, ``running``, ``done`` (with metrics) or ``failed``."""
        campaign = self._campaign(pk)
        version = campaign.models.filter(number=int(number)).first()
        if version is None:
            raise NotFound("No model version with that number.")
        model_versions.nudge(campaign)  # a version stuck behind a dead worker is sent again
        return Response(ModelVersionSerializer(version).data)

    @extend_schema(request=None, responses={202: ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def retrain(self, request: Request, pk: Any = None) -> Response:
        """Queue a new model version fitted on all labels so far (managers); poll
        ``models/{number}/`` until it is done."""
        campaign = self._campaign(pk, manage=True)
        with transaction.atomic():
            version = model_versions.request_retrain(campaign, user=request.user)
        url = reverse("api-campaign-model", kwargs={"pk": campaign.pk, "number": version.number})
        return Response(
            ModelVersionSerializer(version).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": request.build_absolute_uri(url)},
        )

    @extend_schema(
        parameters=[OpenApiParameter("as", str, enum=["json", "npz", "onnx"], required=False)],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
        },
    )
    @action(detail=True, methods=["get"], url_path=r"models/(?P<number>\d+)/export")
    def export_model(self, request: Request, pk: Any = None, number: str = "") -> HttpResponse:
        """A finished model version as JSON (weights, gates, preprocessing, classes), ``.npz``
        (both load with ``learner.ReLUNetwork.from_dict`` / ``from_npz``) or ONNX (input
        ``embedding`` float32 [N, d], output ``scores`` [N, 1] binary or [N, K])."""
        campaign = self._campaign(pk)
        version = campaign.models.filter(number=int(number), status="done").first()
        if version is None:
            raise NotFound("No finished model version with that number.")
        kind = request.query_params.get("as", "json")
        if kind not in ("json", "npz", "onnx"):
            raise ValidationError({"as": "Use json, npz or onnx."})
        document = {
            "campaign": campaign.pk,
            "model_version": version.number,
            "classes": campaign.labels,
            "embedding_model": version.embedding_model,
            "chosen": version.chosen,
            "network": version.network,
        }
        if kind == "json":
            return JsonResponse(document)
        net = learner.ReLUNetwork.from_dict(version.network)
        if kind == "npz":
            data = net.to_npz()
        else:
            data = onnx_export.to_onnx(
                net, campaign.labels, doc=f"Carve campaign {campaign.pk}, model v{version.number}"
            )
        response = HttpResponse(data, content_type="application/octet-stream")
        response["Content-Disposition"] = (
            f'attachment; filename="campaign-{campaign.pk}-v{version.number}.{kind}"'
        )
        return response

    @extend_schema(
        request=PredictInSerializer,
        responses={200: PredictOutSerializer, 409: OpenApiResponse(description="No model yet.")},
    )
    @action(detail=True, methods=["post"])
    def predict(self, request: Request, pk: Any = None) -> Response:
        """Labels and per-class scores for ``texts`` from the newest finished model version,
        embedded server-side with the campaign's embedding model."""
        campaign = self._campaign(pk)
        body = PredictInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        texts = body.validated_data["texts"]
        limit = settings.CARVE_PREDICT_MAX_TEXTS
        if not texts:
            raise ValidationError({"texts": "Send at least one text."})
        if len(texts) > limit:
            raise ValidationError(
                {"texts": f"At most {limit} texts per request, got {len(texts)}."}
            )
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValidationError(
                {"texts": f"Entries must be non-empty strings; not so at index {bad[:10]}."}
            )
        version = campaign.models.filter(status="done").order_by("-number").first()
        if version is None:
            return Response(
                {"detail": "This campaign has no trained model yet: retrain first."},
                status=status.HTTP_409_CONFLICT,
            )
        serving = pool.model_name_from_settings()
        if version.embedding_model and version.embedding_model != serving:
            return Response(
                {
                    "detail": f"Model version {version.number} was trained on "
                    f"{version.embedding_model} embeddings; this server embeds with {serving}."
                },
                status=status.HTTP_409_CONFLICT,
            )
        net = learner.ReLUNetwork.from_dict(version.network)
        E = pool.embedder_from_settings().encode(texts)
        scores, predicted = net.scores(E), net.predict(E)
        names = campaign.labels
        rows = []
        for row, cls in zip(scores, predicted, strict=True):
            if len(names) == 2:  # binary: one score, > 0 means the second label
                per_class = {names[0]: float(-row[0]), names[1]: float(row[0])}
            else:
                per_class = {name: float(v) for name, v in zip(names, row, strict=True)}
            rows.append({"label": names[int(cls)], "scores": per_class})
        return Response({"model_version": version.number, "predictions": rows})
