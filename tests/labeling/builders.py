"""Test builders: the setups many test modules share, spelled once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labeling.embeddings import jobs as embedding_jobs
from labeling.embeddings.embedders import FakeEmbedder
from labeling.imports.write import import_file
from labeling.models import Campaign, EmbeddingJob, Item


def embedded_campaign(
    campaign: Campaign,
    texts: int | Sequence[str] = 60,
    *,
    labels: Sequence[str] | None = None,
    **campaign_fields: Any,
) -> tuple[list[Item], np.ndarray]:
    """Give a campaign without items ``texts`` as its items, embedded by the fake embedder.

    ``texts``: the item texts, one CSV line each (written as they are, unquoted), or a count
    ``n`` for ``item 0`` ... ``item n-1``. ``labels``: a gold column, one label per text
    (``""`` for none); the CSV then has a ``text,label`` header. ``campaign_fields`` are set
    on the campaign (one UPDATE, then ``refresh_from_db``) before the import. The campaign
    gets no evaluation set (``evaluation_size=0``) unless ``campaign_fields`` asks for one:
    tests that count training labels need every label trained on.

    The file is imported as the campaign's creator, then its embedding job runs in this
    process (the test settings' CARVE_EMBEDDER is "fake"). Returns the items in position
    order and their embedding matrix (one row per item, as FakeEmbedder computes it).
    """
    if isinstance(texts, int):
        texts = [f"item {i}" for i in range(texts)]
    campaign_fields.setdefault("evaluation_size", 0)
    if campaign_fields:
        Campaign.objects.filter(pk=campaign.pk).update(**campaign_fields)
        campaign.refresh_from_db()
    if labels is None:
        body = "text\n" + "".join(f"{text}\n" for text in texts)
    else:
        rows = zip(texts, labels, strict=True)
        body = "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows)
    import_file(campaign, campaign.created_by, body.encode(), "d.csv")
    embedding_jobs.run_embedding_job(EmbeddingJob.objects.get(campaign=campaign).pk)
    items = list(Item.objects.filter(campaign=campaign).order_by("position"))
    return items, FakeEmbedder().encode([item.text for item in items])
