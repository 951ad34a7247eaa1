"""Bulk item imports through the API: ``campaigns/{id}/imports/`` and one import job."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from labeling.api.base import CampaignRoutes
from labeling.api.parsing import ImportJSONParser
from labeling.api.serializers import (
    ImportFileSerializer,
    ImportItemsSerializer,
    ImportJobSerializer,
    ImportOptionsSerializer,
)
from labeling.imports import jobs as import_jobs
from labeling.models import ImportJob


class ImportActions(CampaignRoutes):
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
        """Import items (managers): a ``file`` (multipart) in any upload page format, or a JSON list
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
            near_duplicates=options.get("near_duplicates"),
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
