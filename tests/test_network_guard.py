"""The autouse fixture in conftest.py keeps tests off the network but lets loopback through."""

from __future__ import annotations

import socket

import pytest


def test_it_blocks_connections_to_remote_addresses() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the real connect would hang, not succeed.
    with pytest.raises(RuntimeError, match="network access blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError):
        sock.connect(("192.0.2.1", 80))


def test_it_blocks_hostnames_before_dns_lookup() -> None:
    with pytest.raises(RuntimeError, match="example.org"):
        socket.create_connection(("example.org", 443), timeout=1)


def test_it_allows_loopback_connections() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
