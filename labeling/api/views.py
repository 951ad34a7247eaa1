"""API views: the same permissions as the pages (labeling.permissions)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Count, QuerySet
from rest_framework import mixins, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.serializers import BaseSerializer

from labeling import learning, permissions
from labeling.api.serializers import CampaignSerializer
from labeling.models import Campaign


class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
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
        if not permissions.can_manage(self.request.user, campaign):
            raise PermissionDenied("Only the campaign's managers may change it.")
        with transaction.atomic():
            serializer.save()
            learning.request_update(campaign.pk)  # new settings: rebuild the learner
