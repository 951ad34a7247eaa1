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
