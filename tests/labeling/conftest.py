"""Personas and a campaign, after healthchecks's hc/test.py: who may see and do what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group

from labeling.models import Campaign
from labeling.permissions import MANAGER_GROUP


@pytest.fixture(autouse=True)
def _data_dir(settings: Any, tmp_path: Path) -> Path:
    """Embedding caches go to a fresh directory per test, never into the checkout."""
    settings.CARVE_DATA_DIR = tmp_path / "data"
    return settings.CARVE_DATA_DIR


@pytest.fixture
def manager(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("manager", password="pw-manager")
    group, _ = Group.objects.get_or_create(name=MANAGER_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def other_manager(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("other-manager", password="pw-other")
    group, _ = Group.objects.get_or_create(name=MANAGER_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("admin", password="pw-admin", is_staff=True)


@pytest.fixture
def annotator(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("annotator", password="pw-annotator")


@pytest.fixture
def outsider(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("outsider", password="pw-outsider")


@pytest.fixture
def campaign(manager: Any, annotator: Any) -> Campaign:
    campaign = Campaign.objects.create(
        name="Movie reviews", instructions="Is the review positive?", created_by=manager
    )
    campaign.annotators.add(annotator)
    return campaign
