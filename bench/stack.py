"""The stack the HTTP benchmarks run against: redis-server, Celery workers and gunicorn.

``make bench-loop``, ``make bench-faults`` and ``make bench-scale`` start the same
topology as ``make demo`` (labeling/demo.py), on loopback, with a throwaway data directory:
SQLite there, or PostgreSQL when DATABASE_URL names it (scripts/with-postgres.sh). Each
child runs in its own process group and everything started is stopped by :meth:`Stack.stop`.

    stack = Stack.prepare("loop")       # environment for this process and the children
    try:
        stack.start_redis()
        django.setup()                  # after prepare(): the settings read os.environ
        ...                             # create users and campaigns
        stack.start_worker()
        stack.start_web(4)
    finally:
        stack.stop()
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from labeling.demo import (
    Processes,
    answers,
    celery_worker_argv,
    free_port,
    gunicorn_argv,
    port_is_free,
    redis_argv,
    wait_until,
)


@dataclass
class Stack:
    """One benchmark's processes and the environment they share."""

    tmp: Path  # CARVE_DATA_DIR and the children's logs
    env: dict[str, str]
    procs: Processes
    port: int  # gunicorn
    redis_port: int

    @classmethod
    def prepare(cls, name: str, **extra: str) -> Stack:
        """The environment of a benchmark called ``name`` (also set in ``os.environ``, so
        Django in this process uses the same database and broker as the children).
        ``extra`` variables override the defaults; EMBEDDER, LOG_LEVEL and DB_CONN_MAX_AGE
        keep a value the caller's environment sets."""
        tmp = Path(tempfile.mkdtemp(prefix=f"carve-bench-{name}-"))
        port, redis_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            CARVE_DATA_DIR=str(tmp),
            SECRET_KEY=f"bench-{name}-only",
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            DJANGO_SETTINGS_MODULE="config.settings",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            EMBEDDER=env.get("EMBEDDER", "fake"),
            HF_HUB_OFFLINE="1",
            OPENBLAS_NUM_THREADS="1",
            LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"),
            # Persistent connections, as a deployment would run (on PostgreSQL a new
            # connection per request costs more than the request; docs/platform.md, "The
            # labeling loop").
            DB_CONN_MAX_AGE=os.environ.get("DB_CONN_MAX_AGE", "60"),
        )
        env.update(extra)
        os.environ.update(env)
        return cls(tmp, env, Processes(tmp), port, redis_port)

    @property
    def base(self) -> str:
        """The web server's root URL, with a trailing slash."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def db(self) -> str:
        return "PostgreSQL" if self.env.get("DATABASE_URL", "").startswith("postgres") else "SQLite"

    def start_redis(self) -> None:
        self.procs.start("redis", redis_argv(self.redis_port, self.tmp), self.env)
        wait_until(lambda: not port_is_free(self.redis_port), 20, "redis-server")

    def worker_argv(self, name: str = "bench", concurrency: int = 1) -> list[str]:
        return celery_worker_argv(name, concurrency, self.env["LOG_LEVEL"])

    def start_worker(
        self, name: str = "bench", concurrency: int = 1, **env: str
    ) -> tuple[list[str], dict[str, str]]:
        """Start the Celery worker (child ``worker``); ``env`` overrides variables of this
        worker only. Returns its argv and environment, to start it again after a kill."""
        argv, worker_env = self.worker_argv(name, concurrency), {**self.env, **env}
        self.procs.start("worker", argv, worker_env)
        return argv, worker_env

    def start_web(self, workers: int, timeout: float = 60) -> None:
        """Start gunicorn (child ``web``) and wait until /healthz answers."""
        self.procs.start("web", gunicorn_argv(self.port, workers), self.env)
        wait_until(lambda: answers(self.base + "healthz"), timeout, "gunicorn")

    def pid(self, name: str) -> int | None:
        """The process id of the running child ``name`` (None when it is not running)."""
        for child, proc, _log in self.procs.children:
            if child == name and proc.poll() is None:
                return proc.pid
        return None

    def stop(self) -> None:
        self.procs.stop()
