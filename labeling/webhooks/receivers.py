"""The campaign events of :mod:`labeling.signals` turned into webhook deliveries
(docs/platform.md, "Webhooks"). Connected when the app loads (``LabelingConfig.ready``).

The signals are sent after the transaction that made the event true has committed; a receiver
only writes delivery rows and sends the task, so a page or API call never waits on an HTTP
request to a webhook.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver
from django.urls import reverse

from labeling import signals
from labeling.models import ExportJob, ModelVersion
from labeling.webhooks import delivery
from labeling.webhooks.subscriptions import EXPORT_READY, MODEL_TRAINED, STOP_SUGGESTED


def _api(campaign_id: int) -> str:
    """The campaign's API path, ``/api/v1/campaigns/<id>/``."""
    return reverse("api-campaign-detail", kwargs={"pk": campaign_id})


@receiver(signals.items_labeled, dispatch_uid="carve.webhooks.items_labeled")
def on_items_labeled(
    sender: Any, *, campaign_id: int, item_ids: list[int], n_labels: int, **kwargs: Any
) -> None:
    delivery.enqueue_labeled(campaign_id, [int(pk) for pk in item_ids], int(n_labels))


@receiver(signals.model_trained, dispatch_uid="carve.webhooks.model_trained")
def on_model_trained(
    sender: Any, *, campaign_id: int, model_version_id: int, **kwargs: Any
) -> None:
    if not delivery.subscribed(campaign_id, MODEL_TRAINED):
        return
    version = ModelVersion.objects.filter(pk=model_version_id).defer("network").first()
    if version is None:
        return
    metrics = version.metrics or {}
    data = {
        "model_version": version.number,
        "id": version.pk,
        "trigger": version.trigger,
        "n_labels": version.n_labels,
        "chosen": version.chosen,
        "gold_accuracy": metrics.get("gold_accuracy"),
        "evaluation": metrics.get("evaluation"),
        "embedding_model": version.embedding_model,
        "url": f"{_api(campaign_id)}models/{version.number}/",
    }
    delivery.enqueue(campaign_id, MODEL_TRAINED, data)


@receiver(signals.stop_suggested, dispatch_uid="carve.webhooks.stop_suggested")
def on_stop_suggested(
    sender: Any, *, campaign_id: int, n_labels: int, estimate: dict[str, Any], **kwargs: Any
) -> None:
    data = {"n_labels": n_labels, "estimate": estimate, "metrics": f"{_api(campaign_id)}metrics/"}
    delivery.enqueue(campaign_id, STOP_SUGGESTED, data)


@receiver(signals.export_ready, dispatch_uid="carve.webhooks.export_ready")
def on_export_ready(sender: Any, *, campaign_id: int, export_job_id: int, **kwargs: Any) -> None:
    if not delivery.subscribed(campaign_id, EXPORT_READY):
        return
    job = (
        ExportJob.objects.filter(pk=export_job_id)
        .only("pk", "format", "size_bytes", "n_rows", "filename", "sha256", "status")
        .first()
    )
    if job is None:
        return
    data = {
        "export_job": job.pk,
        "format": job.format,
        "filename": job.filename,
        "size_bytes": job.size_bytes,
        "n_rows": job.n_rows,
        "sha256": job.sha256,
        "download_url": f"{_api(campaign_id)}exports/{job.pk}/download/",
    }
    delivery.enqueue(campaign_id, EXPORT_READY, data)
