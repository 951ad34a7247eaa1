"""Fixtures for the learner tests (no real data needed)."""

from __future__ import annotations

import pytest

SEEDS = (0, 1, 2)


@pytest.fixture(params=SEEDS)
def seed(request: pytest.FixtureRequest) -> int:
    """Each test that takes ``seed`` runs once per seed (sklearn's global_random_seed idea)."""
    return int(request.param)
