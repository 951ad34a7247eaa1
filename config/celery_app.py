"""The Celery application. Workers start it with ``celery -A config worker``."""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("carve")
# Every CELERY_* Django setting configures the app (CELERY_BROKER_URL -> broker_url, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def config_loggers(*args: Any, **kwargs: Any) -> None:
    """Configure worker logging from Django's LOGGING instead of Celery's defaults."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
