"""Test settings: the production settings with only what makes tests fast and offline."""

from __future__ import annotations

import os

# settings.py refuses to start without a SECRET_KEY when DEBUG is off, so provide one before
# importing it (CI may already set SECRET_KEY=dummy).
os.environ.setdefault("SECRET_KEY", "insecure-test-only-key")

from config.settings import *  # noqa: E402, F403

SECRET_KEY = "insecure-test-only-key"

# Hashing with the default PBKDF2 makes every test that logs a user in slow.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
# Deterministic hash-seeded vectors: no model download, no torch.
CARVE_EMBEDDER = "fake"
