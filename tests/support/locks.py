"""Holding a labeling.locks lock the way another worker would, for tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

from labeling import locks


@contextmanager
def held_elsewhere(name: str) -> Iterator[None]:
    """Hold lock ``name`` from another thread (its own database connection, as another
    worker process would) for the block."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with locks.hold(name) as got:
                assert got
                taken.set()
                release.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(10), f"could not take {name}"
        yield
    finally:
        release.set()
        thread.join(10)
