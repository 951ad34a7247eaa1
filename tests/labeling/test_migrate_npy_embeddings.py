"""Campaigns embedded before embeddings moved into the database keep working: migration 0016
copies each finished ``embeddings.npy`` into EmbeddingChunk rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from labeling.embeddings import pool
from labeling.embeddings.embedders import FakeEmbedder
from labeling.imports.write import import_file
from labeling.models import Campaign, EmbeddingChunk, EmbeddingJob, Item

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("labeling", "0015_model_version_attempt")


def _legacy_store(data_dir: Path, campaign_id: int, model: str, keys: list[str], E: Any) -> Path:
    """Write a cache the way the file-based store did: embeddings.npy + manifest.json."""
    slug = f"{model}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"
    root = data_dir / "campaigns" / str(campaign_id) / "embeddings" / slug
    root.mkdir(parents=True)
    np.save(root / "embeddings.npy", E)
    digest = hashlib.sha256("".join(keys).encode("ascii")).hexdigest()
    manifest = {"model": model, "dim": E.shape[1], "n": len(keys), "rows_digest": digest}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def test_a_finished_npy_matrix_becomes_chunks_and_the_others_are_queued_again(
    campaign: Campaign, manager: Any, settings: Any, tmp_path: Path
) -> None:
    settings.CARVE_DATA_DIR = tmp_path
    other_campaign = Campaign.objects.create(name="Other", created_by=manager)
    torn_campaign = Campaign.objects.create(name="Torn", created_by=manager)
    texts = [f"old review {i}" for i in range(2500)]  # three legacy chunks of 1024 rows
    import_file(campaign, campaign.created_by, ("text\n" + "\n".join(texts)).encode(), "a.csv")
    import_file(other_campaign, other_campaign.created_by, b"text\nx\ny\n", "b.csv")
    import_file(torn_campaign, torn_campaign.created_by, b"text\nz\n", "c.csv")
    EmbeddingJob.objects.update(status=EmbeddingJob.Status.DONE)
    items = list(Item.objects.filter(campaign=campaign).order_by("position"))
    keys = [item.text_sha256 for item in items]
    E = FakeEmbedder().encode([item.text for item in items])
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("labeling")
    _migrate([BEFORE])
    try:
        _legacy_store(tmp_path, campaign.pk, "fake-32", keys, E)
        # Another campaign's cache that no longer matches its items (re-imported since).
        _legacy_store(tmp_path, other_campaign.pk, "fake-32", ["0" * 64, "1" * 64], E[:2])
        # A file torn by a crash.
        torn = _legacy_store(tmp_path, torn_campaign.pk, "fake-32", ["0" * 64], E[:1])
        (torn / "embeddings.npy").write_bytes(b"")
    finally:
        _migrate(latest)

    spans = list(
        EmbeddingChunk.objects.filter(campaign=campaign).values_list("start", "stop", "worker")
    )
    assert [(a, b) for a, b, _ in spans] == [(0, 1024), (1024, 2048), (2048, 2500)]
    assert {w for _, _, w in spans} == {"migrated from embeddings.npy"}
    stored = pool.embeddings(campaign)
    assert stored is not None
    np.testing.assert_array_equal(stored.matrix, E)
    assert stored.items.tolist() == [item.pk for item in items]
    assert not EmbeddingJob.objects.filter(campaign=campaign, status="queued").exists()
    # The two that could not be copied wait for a worker, which embeds them again.
    for left in (other_campaign, torn_campaign):
        assert not EmbeddingChunk.objects.filter(campaign=left).exists()
        assert EmbeddingJob.objects.filter(campaign=left, status="queued").count() == 1
        assert pool.embeddings(left) is None
