"""config/env.py: typed environment readers that fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envint, envlist, envsecret, envstr

VAR = "CARVE_TEST_VARIABLE"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)
    monkeypatch.delenv(f"{VAR}_FILE", raising=False)


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "Yes", "on", "ON", " on "])
def test_envbool_reads_true_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    assert envbool(VAR, False) is True


@pytest.mark.parametrize("value", ["false", "FALSE", "0", "no", "No", "off", "Off"])
def test_envbool_reads_false_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    assert envbool(VAR, True) is False


@pytest.mark.parametrize("value", [None, "", "   "])
def test_envbool_uses_default_when_unset_or_blank(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv(VAR, value)
    assert envbool(VAR, True) is True
    assert envbool(VAR, False) is False


@pytest.mark.parametrize("value", ["maybe", "2", "y", "enabled"])
def test_envbool_rejects_other_values_naming_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(VAR, value)
    with pytest.raises(ImproperlyConfigured, match=rf"{VAR}='{value}'"):
        envbool(VAR, False)


def test_envint_parses_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envint(VAR, 7) == 7
    monkeypatch.setenv(VAR, " -42 ")
    assert envint(VAR, 7) == -42


@pytest.mark.parametrize("value", ["4.2", "ten", "0x10", "1e3"])
def test_envint_rejects_non_integers(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(VAR, value)
    with pytest.raises(ImproperlyConfigured, match=rf"{VAR}='{value}' is not an integer"):
        envint(VAR, 0)


def test_envstr_returns_value_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envstr(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, "value")
    assert envstr(VAR, "fallback") == "value"


def test_envstr_with_choices_returns_canonical_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "Postgres")
    assert envstr(VAR, "sqlite", choices=("sqlite", "postgres")) == "postgres"


def test_envstr_with_choices_rejects_unknown_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "mysql")
    with pytest.raises(ImproperlyConfigured, match="is not one of sqlite, postgres"):
        envstr(VAR, "sqlite", choices=("sqlite", "postgres"))


def test_envlist_splits_on_commas_and_drops_blanks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, " a.example , b.example,,c.example ,")
    assert envlist(VAR) == ["a.example", "b.example", "c.example"]


def test_envlist_returns_a_copy_of_default_when_unset() -> None:
    default = ["localhost"]
    result = envlist(VAR, default)
    assert result == ["localhost"]
    result.append("x")
    assert default == ["localhost"]


def test_envsecret_reads_value_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envsecret(VAR) is None
    assert envsecret(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, " s3cret ")
    assert envsecret(VAR) == " s3cret "


def test_envsecret_reads_file_named_by_file_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-docker-secret\n", encoding="utf-8")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))

    assert envsecret(VAR, "fallback") == "from-a-docker-secret"


def test_envsecret_refuses_both_value_and_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("one", encoding="utf-8")
    monkeypatch.setenv(VAR, "two")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))

    with pytest.raises(ImproperlyConfigured, match="not both"):
        envsecret(VAR)


def test_envsecret_raises_when_file_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(f"{VAR}_FILE", str(tmp_path / "absent"))

    with pytest.raises(ImproperlyConfigured, match=f"{VAR}_FILE=.*cannot be read"):
        envsecret(VAR, "fallback")


def test_envsecret_raises_when_file_is_empty(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("\n", encoding="utf-8")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret_file))

    with pytest.raises(ImproperlyConfigured, match="is empty"):
        envsecret(VAR)
