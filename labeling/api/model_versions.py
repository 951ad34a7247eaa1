"""Model versions through the API: list, one, retrain, export (JSON, npz, ONNX), predict."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

import learner
from labeling import model_versions, onnx_export
from labeling.api.base import CampaignRoutes
from labeling.api.serializers import (
    ModelVersionSerializer,
    PredictInSerializer,
    PredictOutSerializer,
)
from labeling.api.throttle import PredictRateThrottle
from labeling.embeddings import pool
from learner.calibration import Calibration


class ModelVersionActions(CampaignRoutes):
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
        ``embedding`` float32 [N, d], outputs ``scores`` [N, 1] binary or [N, K] and
        ``probabilities`` [N, K], calibrated like predict's)."""
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
            cal = Calibration.from_dict(version.metrics.get("calibration") or {})
            data = onnx_export.to_onnx(
                net,
                campaign.labels,
                doc=f"Carve campaign {campaign.pk}, model v{version.number}",
                temperature=cal.temperature,
                bias=cal.bias,
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
    @action(detail=True, methods=["post"], throttle_classes=[PredictRateThrottle])
    def predict(self, request: Request, pk: Any = None) -> Response:
        """Labels, calibrated per-class probabilities (and the confidence of the label) and raw
        scores for ``texts`` from the newest finished model version, embedded server-side
        with the campaign's embedding model."""
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
        chars, most = sum(len(t) for t in texts), settings.CARVE_PREDICT_MAX_CHARS
        if chars > most:
            raise ValidationError(
                {"texts": f"{chars:,} characters in all; one request takes at most {most:,}."}
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
        # Calibrated on the version's labels (docs/learner.md, "Calibration"); a version
        # fitted before calibration existed has T = 1: a plain softmax of its scores.
        cal = Calibration.from_dict(version.metrics.get("calibration") or {})
        probs = cal.probabilities(scores, net.task)
        names = campaign.labels
        rows = []
        for row, cls, p in zip(scores, predicted, probs, strict=True):
            if len(names) == 2:  # binary: one score, > 0 means the second label
                per_class = {names[0]: float(-row[0]), names[1]: float(row[0])}
            else:
                per_class = {name: float(v) for name, v in zip(names, row, strict=True)}
            rows.append(
                {
                    "label": names[int(cls)],
                    "confidence": float(p[int(cls)]),
                    "probabilities": {name: float(v) for name, v in zip(names, p, strict=True)},
                    "scores": per_class,
                }
            )
        return Response({"model_version": version.number, "predictions": rows})
