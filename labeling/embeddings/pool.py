"""A campaign's pool matrix: the embedder and store the settings name, and the matrix itself.

The matrix is read from the campaign's :class:`~labeling.embeddings.store.EmbeddingStore`
only once every item is embedded: row ``i`` is the item at position ``i``.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings

from labeling.embeddings.embedders import Embedder, make_embedder
from labeling.embeddings.store import EmbeddingStore
from labeling.models import Campaign, EmbeddingJob, Item


def embedder_from_settings() -> Embedder:
    """The embedder CARVE_EMBEDDER, CARVE_EMBEDDING_MODEL and CARVE_EMBEDDING_BATCH name."""
    return make_embedder(
        settings.CARVE_EMBEDDER,
        settings.CARVE_EMBEDDING_MODEL,
        settings.CARVE_EMBEDDING_BATCH,
        fake_delay=settings.CARVE_FAKE_EMBED_DELAY,
    )


def model_name_from_settings() -> str:
    """The name the settings' embedder records on the rows it embeds."""
    if settings.CARVE_EMBEDDER == "fake":
        return "fake-32"
    return str(settings.CARVE_EMBEDDING_MODEL)


def store_for(campaign_id: int, model_name: str) -> EmbeddingStore:
    """The cache of ``campaign_id``'s embeddings by ``model_name`` under CARVE_DATA_DIR."""
    return EmbeddingStore.for_campaign(settings.CARVE_DATA_DIR, campaign_id, model_name)


def current_embedding_model(campaign: Campaign) -> str | None:
    """The model of the campaign's latest finished embedding job."""
    return (
        EmbeddingJob.objects.filter(campaign=campaign, status=EmbeddingJob.Status.DONE)
        .order_by("-pk")
        .values_list("model_name", flat=True)
        .first()
    )


def embeddings(campaign: Campaign) -> tuple[np.ndarray, dict[int, int], str] | None:
    """(pool matrix, item id -> row, fingerprint part) once every item is embedded."""
    done = (
        EmbeddingJob.objects.filter(campaign=campaign, status=EmbeddingJob.Status.DONE)
        .order_by("-pk")
        .first()
    )
    if done is None:
        return None
    items = list(
        Item.objects.filter(campaign=campaign).order_by("position").values_list("pk", "text_sha256")
    )
    store = store_for(campaign.pk, done.model_name)
    keys = [key for _, key in items]
    if not items or store.valid_rows(keys, done.model_name) != len(items):
        return None  # new items are still being embedded
    manifest = store.manifest() or {}
    rows = {pk: row for row, (pk, _) in enumerate(items)}
    return store.load(len(items)), rows, f"{done.model_name}:{manifest.get('rows_digest')}"
