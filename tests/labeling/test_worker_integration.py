"""Embedding through the real stack: redis-server, a Celery worker process, the database.

The same module runs on SQLite (a file the worker opens too) and on PostgreSQL
(`make test-postgres`). The worker uses the production settings module, configured through
environment variables only.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from labeling.embeddings import pool
from labeling.embeddings.embedders import FakeEmbedder
from labeling.imports.write import import_file
from labeling.models import Campaign, EmbeddingJob, Item
from tests.support.processes import (
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
Status = EmbeddingJob.Status


def _import(campaign: Campaign, texts: list[str]) -> EmbeddingJob:
    body = "text,label\n" + "".join(f'"{t}",\n' for t in texts)
    import_file(campaign, campaign.created_by, body.encode(), "data.csv")
    return EmbeddingJob.objects.get(campaign=campaign)


def _status(job: EmbeddingJob) -> EmbeddingJob:
    job.refresh_from_db()
    return job


def _matrix(campaign: Campaign, job: EmbeddingJob) -> np.ndarray:
    stored = pool.embeddings(campaign)
    assert stored is not None, "the campaign's chunks do not cover its items"
    return stored.matrix


def test_a_worker_embeds_an_imported_csv(campaign: Campaign, start_worker: Any) -> None:
    worker = start_worker("w1")
    texts = [f"review {i}: {'good' if i % 2 else 'bad'} film" for i in range(40)]
    job = _import(campaign, texts)

    wait_for(lambda: _status(job).status == Status.DONE, 60, "the embedding job", worker.log)

    assert (job.n_total, job.n_done, job.dim, job.attempt, job.error) == (40, 40, 32, 1, "")
    assert job.worker.startswith("w1@")
    np.testing.assert_array_equal(_matrix(campaign, job), FakeEmbedder().encode(texts))


def test_a_killed_worker_is_replaced_and_the_job_finishes_without_losing_rows(
    campaign: Campaign, start_worker: Any
) -> None:
    slow = {
        "FAKE_EMBED_DELAY_MS": "400",
        "EMBEDDING_BATCH": "4",
        "EMBEDDING_CHUNK_ROWS": "16",
        "JOB_STALE_SECONDS": "3",
    }
    first = start_worker("doomed", **slow)
    texts = [f"sentence number {i}" for i in range(160)]  # 10 chunks of 16 rows
    job = _import(campaign, texts)
    wait_for(lambda: _status(job).n_done >= 32, 60, "two chunks", first.log)

    first.kill()
    job = _status(job)
    assert job.status == Status.RUNNING
    assert 32 <= job.n_done < 160
    done_before_kill = job.n_done

    second = start_worker("rescuer", **slow)
    wait_for(lambda: _status(job).status == Status.DONE, 90, "the taken-over job", second.log)

    assert (job.n_total, job.n_done, job.attempt) == (160, 160, 2)
    assert job.worker.startswith("rescuer@")
    matrix = _matrix(campaign, job)
    assert matrix.shape == (160, 32)  # no row lost, none twice
    in_order = list(Item.objects.filter(campaign=campaign).values_list("text", flat=True))
    np.testing.assert_array_equal(matrix, FakeEmbedder().encode(in_order))
    # The rescuer planned only the rows the database did not hold yet.
    assert job.n_cached >= done_before_kill
    reused = re.search(r"160 items \((\d+) already stored\)", second.log.read_text())
    assert reused is not None and int(reused.group(1)) == job.n_cached


def test_the_real_minilm_model_embeds_through_the_worker(
    campaign: Campaign, start_worker: Any
) -> None:
    worker = start_worker("minilm", EMBEDDER="sentence-transformers")
    texts = [
        "A wonderful, moving film.",
        "A truly great movie, I loved it.",
        "The soup was cold and the waiter was rude.",
    ]
    job = _import(campaign, texts)

    wait_for(lambda: _status(job).status == Status.DONE, 180, "MiniLM embeddings", worker.log)

    assert (job.model_name, job.dim) == ("all-MiniLM-L6-v2", 384)
    assert job.device in ("cpu", "cuda")
    matrix = _matrix(campaign, job)
    assert matrix.shape == (3, 384) and matrix.dtype == np.float32
    # fp16 on a GPU rounds the norms to about 1e-3.
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=2e-3)
    similarity = matrix @ matrix.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # the two film reviews are closest
