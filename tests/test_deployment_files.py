"""docker-compose.yml and the Dockerfile, checked as files (no Docker engine in CI)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
CARVE_SERVICES = ("web", "worker", "worker-slow", "flower")


def test_compose_has_the_platform_services() -> None:
    assert set(COMPOSE["services"]) == {"web", "worker", "worker-slow", "redis", "db", "flower"}
    assert COMPOSE["services"]["db"]["image"].startswith("postgres:")
    assert COMPOSE["services"]["redis"]["image"].startswith("redis:")


def test_carve_services_get_database_and_broker_urls() -> None:
    for name in CARVE_SERVICES:
        env = COMPOSE["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://"), name
        assert env["DATABASE_URL"].endswith("@db:5432/${DB_NAME:-carve}"), name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert COMPOSE["services"][name]["build"]["dockerfile"] == "platform/Dockerfile"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    documented = set(
        re.findall(
            r"^#?\s*([A-Z][A-Z0-9_]*)=",
            (REPO_ROOT / ".env.example").read_text(encoding="utf-8"),
            flags=re.MULTILINE,
        )
    )
    assert used - documented == set()


def test_the_image_copies_every_runtime_directory() -> None:
    dockerfile = (REPO_ROOT / "platform" / "Dockerfile").read_text(encoding="utf-8")
    for directory in ("config", "labeling", "learner", "templates", "static"):
        assert f"COPY {directory} ./{directory}" in dockerfile
    # The Dockerfile must not name settings variables that no longer exist.
    assert "DB_ENGINE" not in dockerfile
    assert "DATABASE_URL=sqlite:" in dockerfile


def test_platform_is_not_a_python_package() -> None:
    # A package named `platform` would shadow the standard library module.
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
