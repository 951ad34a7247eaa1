"""Export jobs through the API: ``campaigns/{id}/exports/``, one job, and its download
(docs/platform.md, "Export jobs"). The streamed export of small campaigns stays in
:mod:`labeling.api.reports`."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import CampaignRoutes
from labeling.exports import formats
from labeling.exports import jobs as export_jobs
from labeling.models import Campaign, ExportJob


class ExportOptionsSerializer(serializers.Serializer[Any]):
    """The options of an export job, as the streamed export takes them."""

    vars()["as"] = serializers.ChoiceField(
        choices=list(formats.EXPORT_FORMATS),
        default="csv",
        help_text="csv, jsonl, parquet, hf (a zipped Hugging Face datasets folder) or "
        "labelstudio (Label Studio JSON tasks).",
    )
    rows = serializers.ChoiceField(
        choices=[formats.ROWS_LABELS, formats.ROWS_ITEMS],
        default=formats.ROWS_LABELS,
        help_text="One row per active label or per item (hf and labelstudio: always items).",
    )
    items = serializers.ChoiceField(
        choices=[export_jobs.ITEMS_LABELED, export_jobs.ITEMS_ALL],
        default=export_jobs.ITEMS_LABELED,
        help_text="Only the items with an active label or a decision, or all items.",
    )


class ExportJobSerializer(serializers.ModelSerializer[Any]):
    url = serializers.SerializerMethodField(help_text="Poll this for the job's progress.")
    download = serializers.SerializerMethodField(
        help_text="The file, once the job is done (null before)."
    )
    created_by = serializers.SerializerMethodField()
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "url",
            "download",
            "status",
            "format",
            "rows",
            "items",
            "filename",
            "content_type",
            "n_total",
            "n_done",
            "percent",
            "n_rows",
            "size_bytes",
            "sha256",
            "error",
            "attempt",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: ExportJob) -> str:
        return self._absolute(
            reverse("api-campaign-export-job", kwargs={"pk": job.campaign_id, "job_id": job.pk})
        )

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download(self, job: ExportJob) -> str | None:
        if job.status != ExportJob.Status.DONE:
            return None
        return self._absolute(
            reverse(
                "api-campaign-export-download", kwargs={"pk": job.campaign_id, "job_id": job.pk}
            )
        )

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, job: ExportJob) -> str | None:
        return job.created_by.get_username() if job.created_by is not None else None


class ExportJobActions(CampaignRoutes):
    def _export_body(self, job: ExportJob) -> dict[str, Any]:
        return dict(ExportJobSerializer(job, context={"request": self.request}).data)

    def _export_job_of(self, campaign: Campaign, job_id: str) -> ExportJob:
        job = (
            ExportJob.objects.filter(campaign=campaign, pk=int(job_id))
            .select_related("created_by")
            .first()
        )
        if job is None:
            raise NotFound("No export job with that id in this campaign.")
        return job

    @extend_schema(methods=["GET"], responses=ExportJobSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request=ExportOptionsSerializer,
        responses={
            202: OpenApiResponse(ExportJobSerializer, description="Queued: poll its url."),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid options."),
        },
    )
    @action(detail=True, methods=["get", "post"])
    def exports(self, request: Request, pk: Any = None) -> Response:
        """Start an export job (managers): the label export of ``GET …/export/`` with the same
        options (``as``, ``rows``, ``items``), written by a worker and kept in the database,
        for campaigns too large to export during one request. Answers 202 with the job; poll
        its ``url`` until ``status`` is ``done``, then fetch ``download``. GET lists the
        campaign's export jobs, newest first."""
        campaign = self._campaign(pk, manage=True)
        if request.method == "GET":
            rows = campaign.export_jobs.select_related("created_by").order_by("-pk")
            page = self.paginate_queryset(rows)
            bodies = [self._export_body(job) for job in (page if page is not None else rows)]
            return self.get_paginated_response(bodies) if page is not None else Response(bodies)
        body = ExportOptionsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        options = body.validated_data
        with transaction.atomic():
            job = export_jobs.start_export(
                campaign,
                request.user,
                kind=options["as"],
                rows=options["rows"],
                items=options["items"],
            )
        answer = self._export_body(job)
        return Response(
            answer, status=status.HTTP_202_ACCEPTED, headers={"Location": answer["url"]}
        )

    @extend_schema(responses=ExportJobSerializer)
    @action(detail=True, methods=["get"], url_path=r"exports/(?P<job_id>\d+)")
    def export_job(self, request: Request, pk: Any = None, job_id: str = "") -> Response:
        """One export job: ``queued``, ``running`` (``n_done`` of ``n_total`` items written),
        ``done`` (with ``download``, ``size_bytes``, ``sha256`` and ``n_rows``) or ``failed``
        (with ``error``)."""
        campaign = self._campaign(pk, manage=True)
        job = self._export_job_of(campaign, job_id)
        export_jobs.nudge(job)  # stuck behind a broker outage or a dead worker: send it again
        return Response(self._export_body(job))

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The file, with the job's content type, Content-Disposition "
                "and Content-Length.",
            ),
            409: OpenApiResponse(
                OpenApiTypes.OBJECT, description="The job is not done (yet, or it failed)."
            ),
        },
    )
    @action(detail=True, methods=["get"], url_path=r"exports/(?P<job_id>\d+)/download")
    def export_download(
        self, request: Request, pk: Any = None, job_id: str = ""
    ) -> StreamingHttpResponse | Response:
        """The file of a finished export job, streamed from the database one part at a time
        (its SHA-256 is the job's ``sha256``)."""
        campaign = self._campaign(pk, manage=True)
        job = self._export_job_of(campaign, job_id)
        if job.status != ExportJob.Status.DONE:
            detail = (
                f"Export job {job.pk} failed: {job.error}. Start a new export."
                if job.status == ExportJob.Status.FAILED
                else f"Export job {job.pk} is {job.status} ({job.n_done} of "
                f"{job.n_total or '?'} items written); download it once its status is done."
            )
            return Response(
                {"detail": detail, "status": job.status}, status=status.HTTP_409_CONFLICT
            )
        response = StreamingHttpResponse(
            export_jobs.parts(job), content_type=job.content_type or "application/octet-stream"
        )
        response["Content-Length"] = str(job.size_bytes)
        response["Content-Disposition"] = f'attachment; filename="{job.filename}"'
        return response
