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

from labeling import campaign_learner, consensus, evaluation, permissions
from labeling.api.annotation import AnnotationActions
from labeling.api.exports import ExportJobActions
from labeling.api.imports import ImportActions
from labeling.api.model_versions import ModelVersionActions
from labeling.api.near_duplicates import NearDuplicateActions
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
    ExportJobActions,
    NearDuplicateActions,
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

    # Permission first, then validation: a caller who may not create or change a campaign
    # gets 403 whatever the body, never the validation errors of a form they cannot submit.
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not permissions.is_manager(request.user):
            raise PermissionDenied("Only campaign managers create campaigns.")
        return super().create(request, *args, **kwargs)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not permissions.can_manage(request.user, self.get_object()):
            raise PermissionDenied("Only the campaign's managers may change it.")
        return super().update(request, *args, **kwargs)

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.save(created_by=self.request.user)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        campaign = serializer.instance
        assert isinstance(campaign, Campaign)
        overlap = campaign.overlap
        with transaction.atomic():
            serializer.save()
            evaluation.top_up(campaign)  # the evaluation set follows its size setting
            if campaign.overlap != overlap:
                consensus.recount_done(campaign)  # "fully labeled" moved
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
