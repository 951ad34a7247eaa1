"""The campaign viewset: create, list, read and update campaigns, stop and resume them.

Its other routes live with their concern (:mod:`labeling.api.imports`,
:mod:`labeling.api.annotation`, :mod:`labeling.api.reports`,
:mod:`labeling.api.model_versions`); every one uses the same permissions as the pages
(:mod:`labeling.permissions`).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from labeling import campaign_learner, permissions
from labeling.api.annotation import AnnotationActions
from labeling.api.imports import ImportActions
from labeling.api.model_versions import ModelVersionActions
from labeling.api.reports import ReportActions
from labeling.api.serializers import CampaignSerializer
from labeling.models import Campaign


class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ImportActions,
    ReportActions,
    AnnotationActions,
    ModelVersionActions,
):
    """Campaigns the caller may see. Managers create campaigns and update their own;
    annotators read the campaigns they are assigned to. Others get 404."""

    serializer_class = CampaignSerializer

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
