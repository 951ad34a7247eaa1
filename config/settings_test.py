"""Test settings: the production settings with only what makes tests fast and offline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# settings.py refuses to start without a SECRET_KEY when DEBUG is off, so provide one before
# importing it (CI may already set SECRET_KEY=dummy).
os.environ.setdefault("SECRET_KEY", "insecure-test-only-key")

from config.settings import *  # noqa: E402, F403

SECRET_KEY = "insecure-test-only-key"

# Hashing with the default PBKDF2 makes every test that logs a user in slow.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# PostgreSQL when DATABASE_URL names it (make test-postgres); pytest-django then creates and
# drops test_<name>. Otherwise SQLite in a file, not in memory: the integration tests start a
# real Celery worker process that must open the same test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    _test_db = Path(tempfile.gettempdir()) / f"carve-test-{os.getpid()}.sqlite3"
    DATABASES["default"]["NAME"] = str(_test_db)  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(_test_db)}  # noqa: F405
# Deterministic hash-seeded vectors: no model download, no torch.
CARVE_EMBEDDER = "fake"
# Nothing is collected in tests: whitenoise serves straight from the finders.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
# Unit tests publish to an in-memory broker that nothing consumes (jobs stay QUEUED); the
# integration tests point the app at a real redis-server and run a real worker.
CELERY_BROKER_URL = "memory://"
# Rate limits count in this process (no Redis in unit tests).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
