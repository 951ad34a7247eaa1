"""What every campaign route shares: the campaign, looked up under the caller's permissions."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets

from labeling import permissions
from labeling.models import Campaign


class CampaignRoutes(viewsets.GenericViewSet[Any]):
    """The base of the campaign viewset and of its per-concern action classes."""

    # /campaigns/abc/... (or 5,000 digits: int() refuses them) is a 404, not an error in int()
    lookup_value_regex = r"\d{1,19}"

    def _campaign(self, pk: Any, *, manage: bool = False) -> Campaign:
        return permissions.get_campaign(self.request.user, int(pk), manage=manage)
