"""One run at a time: locks that die with the process that holds them.

A learner update of one campaign, or the fit of one model version, must never run twice at
once, and a run whose worker was killed must not keep the next one out. A row claim with an
expiry can do neither well: a long run looks dead, a dead one looks alive until the expiry.
These locks belong to the process instead (docs/platform.md, "Reliability"):

- on PostgreSQL, a session-level advisory lock (``pg_try_advisory_lock``): held by the
  database connection, released by the server when that connection closes, whichever machine
  the worker runs on;
- on SQLite (one machine by nature), an OS file lock under ``CARVE_DATA_DIR/locks/``,
  released by the kernel when the process dies.

Both are tried without waiting: :func:`hold` yields whether this process got the lock.
The PostgreSQL lock needs a session of its own: not through a transaction-pooling proxy
(PgBouncer in transaction mode), and the server's TCP keepalives decide how soon the lock of
a crashed worker host is freed (docs/platform.md, "Reliability").
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection

from labeling import filelock


def _key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (stable across processes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def hold(name: str) -> Iterator[bool]:
    """Hold lock ``name`` (e.g. ``"learner:12"``) for the block if it is free; yields whether
    it was taken. Never blocks."""
    if connection.vendor == "postgresql":
        key = _key(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            got = bool(cursor.fetchone()[0])
        try:
            yield got
        finally:
            # A broken connection has released the lock already; its error must not hide
            # the block's own exception.
            if got:
                with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    path = settings.CARVE_DATA_DIR / "locks" / f"{name.replace(':', '-')}.lock"
    with filelock.exclusive(path) as got:
        yield got


def is_free(name: str) -> bool:
    """Whether nobody holds lock ``name`` right now (its holder, if any, is alive)."""
    with hold(name) as got:
        return got
