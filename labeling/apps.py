from __future__ import annotations

from django.apps import AppConfig


class LabelingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "labeling"
    verbose_name = "Labeling"

    def ready(self) -> None:
        # Register the Celery tasks in every process (web ones too): labeling.queue sends
        # messages by task name, looking the task up in the app's registry. Campaign events
        # become webhook deliveries (docs/platform.md, "Webhooks").
        from labeling import tasks  # noqa: F401
        from labeling.webhooks import receivers  # noqa: F401
