"""config/settings.py, imported in a fresh interpreter with a controlled environment."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_DUMP = (
    "import json; from config import settings as s; "
    "print(json.dumps({'secret': s.SECRET_KEY, 'debug': s.DEBUG, "
    "'db': {k: str(v) for k, v in s.DATABASES['default'].items() if k != 'OPTIONS'}, "
    "'visibility': s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], "
    "'hosts': s.ALLOWED_HOSTS}))"
)


def _import_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Only the variables given here: nothing leaks in from the developer's shell.
    return subprocess.run(
        [sys.executable, "-c", _DUMP],
        cwd=REPO_ROOT,
        env={"CARVE_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_refuses_to_start_without_secret_key_when_debug_is_off(tmp_path: Path) -> None:
    result = _import_settings(tmp_path)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr


def test_it_uses_a_marked_dev_key_when_debug_is_on(tmp_path: Path) -> None:
    result = _import_settings(tmp_path, DEBUG="1")

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["debug"] is True
    assert values["secret"].startswith("django-insecure-")
    assert "DEV-ONLY" in values["secret"]


def test_it_defaults_to_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    result = _import_settings(tmp_path, SECRET_KEY="k")

    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)["db"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str((tmp_path / "data" / "carve.sqlite3").resolve())
    assert (tmp_path / "data").is_dir()


def test_it_builds_postgres_settings_from_database_url(tmp_path: Path) -> None:
    result = _import_settings(
        tmp_path,
        SECRET_KEY="k",
        DATABASE_URL="postgres://carve_user:p%40ss@db:6543/carve_prod",
    )

    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)["db"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "carve_prod",
        "carve_user",
        "p@ss",
        "db",
        "6543",
    )


def test_it_reads_database_url_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "db-url"
    secret.write_text(f"sqlite:///{tmp_path / 'elsewhere' / 'x.sqlite3'}\n", encoding="utf-8")

    result = _import_settings(tmp_path, SECRET_KEY="k", DATABASE_URL_FILE=str(secret))

    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)["db"]
    assert db["NAME"] == str(tmp_path / "elsewhere" / "x.sqlite3")
    assert (tmp_path / "elsewhere").is_dir()


def test_it_rejects_an_unsupported_database_without_echoing_the_url(tmp_path: Path) -> None:
    result = _import_settings(tmp_path, SECRET_KEY="k", DATABASE_URL="mysql://u:hunter2@h/db")

    assert result.returncode != 0
    assert "DATABASE_URL must name sqlite or postgres" in result.stderr
    assert "hunter2" not in result.stderr


def test_it_rejects_a_visibility_timeout_shorter_than_the_task_time_limit(
    tmp_path: Path,
) -> None:
    result = _import_settings(
        tmp_path,
        SECRET_KEY="k",
        CELERY_TASK_TIME_LIMIT="3600",
        CELERY_BROKER_VISIBILITY_TIMEOUT="1800",
    )

    assert result.returncode != 0
    assert "CELERY_BROKER_VISIBILITY_TIMEOUT" in result.stderr


def test_it_reads_allowed_hosts_as_a_list(tmp_path: Path) -> None:
    result = _import_settings(tmp_path, SECRET_KEY="k", ALLOWED_HOSTS="carve.example.org, web")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hosts"] == ["carve.example.org", "web"]


def _variables_read_by_settings() -> set[str]:
    tree = ast.parse((REPO_ROOT / "config" / "settings.py").read_text(encoding="utf-8"))
    readers = {"envbool", "envint", "envstr", "envlist", "envsecret"}
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in readers
        and isinstance(node.args[0], ast.Constant)
    }


def test_env_example_documents_every_variable_settings_reads() -> None:
    names = _variables_read_by_settings()
    documented = set(
        re.findall(
            r"^#?\s*([A-Z][A-Z0-9_]*)=",
            (REPO_ROOT / ".env.example").read_text(encoding="utf-8"),
            flags=re.MULTILINE,
        )
    )

    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= names  # the parser found them
    assert names - documented == set()
