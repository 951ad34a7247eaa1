"""Password guessing is stopped: after SIGNIN_MAX_FAILURES failed sign-ins for one account
from one address, that pair waits, even with the right password."""

from __future__ import annotations

from typing import Any

from django.test import Client


def _sign_in(password: str, address: str = "10.0.0.1", path: str = "/accounts/login/") -> Any:
    return Client(REMOTE_ADDR=address).post(path, {"username": "annotator", "password": password})


def test_too_many_failed_sign_ins_lock_the_account_from_that_address(
    annotator: Any, settings: Any
) -> None:
    settings.CARVE_SIGNIN_MAX_FAILURES = 3
    for _ in range(3):
        assert _sign_in("wrong").status_code == 200  # the form again, with an error
    locked = _sign_in("pw-annotator")
    assert locked.status_code == 200 and "Too many failed sign-ins" in locked.content.decode()
    assert _sign_in("pw-annotator", address="10.0.0.2").status_code == 302  # another address


def test_a_successful_sign_in_clears_the_count(annotator: Any, settings: Any) -> None:
    settings.CARVE_SIGNIN_MAX_FAILURES = 3
    for _ in range(2):
        _sign_in("wrong")
    assert _sign_in("pw-annotator").status_code == 302
    for _ in range(2):
        _sign_in("wrong")
    assert _sign_in("pw-annotator").status_code == 302  # 2 + 2 failures: never 3 in a row


def test_the_admin_sign_in_has_the_same_limit(staff: Any, settings: Any) -> None:
    settings.CARVE_SIGNIN_MAX_FAILURES = 2
    client = Client(REMOTE_ADDR="10.0.0.3")
    body = {"username": "admin", "password": "wrong", "next": "/admin/"}
    for _ in range(2):
        client.post("/admin/login/", body)
    locked = client.post("/admin/login/", {**body, "password": "pw-admin"})
    assert "Too many failed sign-ins" in locked.content.decode()


def test_another_spelling_of_the_name_shares_the_count(annotator: Any, settings: Any) -> None:
    """A full-width spelling signs in to the same account: it shares the count."""
    settings.CARVE_SIGNIN_MAX_FAILURES = 2
    client = Client(REMOTE_ADDR="10.0.0.4")
    for name in ("annotator", "\uff41nnotator"):
        client.post("/accounts/login/", {"username": name, "password": "wrong"})
    locked = client.post("/accounts/login/", {"username": "ANNOTATOR", "password": "pw-annotator"})
    assert "Too many failed sign-ins" in locked.content.decode()


def test_guessing_from_many_addresses_locks_the_account_everywhere(
    annotator: Any, settings: Any
) -> None:
    settings.CARVE_SIGNIN_MAX_FAILURES = 1  # so 5 failures in all lock the account
    for i in range(5):
        _sign_in("wrong", address=f"10.1.0.{i}")
    assert "Too many failed" in _sign_in("pw-annotator", address="10.2.0.1").content.decode()


def test_behind_a_trusted_proxy_the_forwarded_address_counts(annotator: Any, settings: Any) -> None:
    settings.CARVE_SIGNIN_MAX_FAILURES = 2
    settings.CARVE_TRUSTED_PROXIES = 1

    def via_proxy(password: str, client_address: str) -> Any:
        return Client(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=client_address).post(
            "/accounts/login/", {"username": "annotator", "password": password}
        )

    for _ in range(2):
        via_proxy("wrong", "198.51.100.7")
    assert "Too many failed" in via_proxy("pw-annotator", "198.51.100.7").content.decode()
    assert via_proxy("pw-annotator", "203.0.113.5").status_code == 302  # another person
