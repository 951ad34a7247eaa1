"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class NetworkAccessBlocked(RuntimeError):
    """Raised when a test tries to reach a host other than this machine."""


def _is_loopback(address: Any) -> bool:
    # AF_UNIX sockets connect to a filesystem path (str or bytes), which never leaves the host.
    if isinstance(address, str | bytes):
        return True
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:  # a hostname other than localhost
        return False


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that connects anywhere but loopback (Redis/Postgres on 127.0.0.1 are fine).

    Hostnames are refused before DNS resolution, so a test cannot even look one up through
    socket.create_connection.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection

    def guard(address: Any) -> None:
        if not _is_loopback(address):
            raise NetworkAccessBlocked(f"network access blocked in tests: {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        guard(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        guard(address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)


def pytest_report_header(config: pytest.Config) -> str:
    """Name the database the run uses (SQLite by default, PostgreSQL under make test-postgres)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    where = db["NAME"] if db["ENGINE"].endswith("sqlite3") else f"{db['HOST']}:{db['PORT']}"
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} ({where})"
