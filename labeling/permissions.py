"""Who may do what: the one place views (and later the API) ask.

- Campaign managers are staff users and members of the "campaign manager" group. They create
  campaigns; staff manage every campaign, other managers the ones they created.
- Annotators see only the campaigns they are assigned to, and change nothing about them.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from labeling.models import Campaign

MANAGER_GROUP = "campaign manager"


def signed_in(user: User | AnonymousUser) -> User:
    """The user of a request that passed the login check (PermissionDenied for anonymous)."""
    if isinstance(user, AnonymousUser):
        raise PermissionDenied("Sign in first.")
    return user


def is_manager(user: Any) -> bool:
    """May create campaigns."""
    return bool(
        user.is_authenticated
        and user.is_active
        and (user.is_staff or user.groups.filter(name=MANAGER_GROUP).exists())
    )


def managed_campaigns(user: Any) -> QuerySet[Campaign]:
    if not is_manager(user):
        return Campaign.objects.none()
    if user.is_staff:
        return Campaign.objects.all()
    return Campaign.objects.filter(created_by=user)


def visible_campaigns(user: Any) -> QuerySet[Campaign]:
    """Campaigns the user may open: managed ones plus those they annotate."""
    if not (user.is_authenticated and user.is_active):
        return Campaign.objects.none()
    if user.is_staff:
        return Campaign.objects.all()
    managed = Q(created_by=user) if is_manager(user) else Q(pk__in=[])
    return Campaign.objects.filter(managed | Q(annotators=user)).distinct()


def can_manage(user: Any, campaign: Campaign) -> bool:
    return managed_campaigns(user).filter(pk=campaign.pk).exists()


def get_campaign(user: Any, pk: int, *, manage: bool = False) -> Campaign:
    """The campaign if the user may see it (404 otherwise, so its existence is not revealed);
    with ``manage=True`` a visible campaign the user may not manage is 403."""
    campaign = get_object_or_404(visible_campaigns(user), pk=pk)
    if manage and not can_manage(user, campaign):
        raise PermissionDenied("Only the campaign's managers may do this.")
    return campaign
