"""Embedding jobs called directly (the worker path is in test_worker_integration.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from labeling import jobs
from labeling.embedding import EmbeddingStore, FakeEmbedder
from labeling.models import Campaign, EmbeddingJob, Item
from labeling.services import import_file

pytestmark = pytest.mark.django_db
Status = EmbeddingJob.Status


def _import(campaign: Campaign, texts: list[str], name: str = "data.csv") -> None:
    body = "text\n" + "\n".join(texts) + "\n"
    import_file(campaign, campaign.created_by, body.encode(), name)


def _job(campaign: Campaign) -> EmbeddingJob:
    return EmbeddingJob.objects.filter(campaign=campaign).latest("pk")


def _expected(campaign: Campaign) -> np.ndarray:
    texts = list(Item.objects.filter(campaign=campaign).values_list("text", flat=True))
    return FakeEmbedder().encode(texts)


def test_import_queues_one_job_and_reuses_it_while_queued(campaign: Campaign) -> None:
    _import(campaign, ["a", "b"])
    _import(campaign, ["c"], "more.csv")
    assert EmbeddingJob.objects.filter(campaign=campaign, status=Status.QUEUED).count() == 1


def test_an_import_of_only_known_texts_queues_nothing_new(campaign: Campaign) -> None:
    _import(campaign, ["a", "b"])
    jobs.run_embedding_job(_job(campaign).pk)
    _import(campaign, ["b", "a"], "again.csv")
    assert not EmbeddingJob.objects.filter(status=Status.QUEUED).exists()


def test_it_embeds_every_item_in_position_order(campaign: Campaign, settings: Any) -> None:
    settings.CARVE_EMBEDDING_BATCH = 4  # chunks of 16 rows
    _import(campaign, [f"review number {i}" for i in range(50)])
    outcome = jobs.run_embedding_job(_job(campaign).pk, worker="w1")

    job = _job(campaign)
    assert outcome is jobs.Outcome.DONE
    assert (job.status, job.n_total, job.n_done, job.dim, job.attempt) == (
        Status.DONE,
        50,
        50,
        32,
        1,
    )
    assert (job.worker, job.error, job.device) == ("w1", "", "cpu")
    assert job.finished_at is not None
    store = jobs.store_for(campaign.pk, job.model_name)
    matrix = store.load()
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, _expected(campaign))
    assert not store.parts.exists()  # chunks are joined and removed


def test_a_second_upload_embeds_only_the_new_items(campaign: Campaign, settings: Any) -> None:
    _import(campaign, ["one", "two", "three"])
    jobs.run_embedding_job(_job(campaign).pk)
    _import(campaign, ["three", "four"], "more.csv")
    jobs.run_embedding_job(_job(campaign).pk)

    job = _job(campaign)
    assert (job.n_total, job.n_cached, job.n_done) == (4, 3, 4)
    np.testing.assert_array_equal(
        jobs.store_for(campaign.pk, job.model_name).load(), _expected(campaign)
    )


def test_a_retry_after_success_uses_the_cache_only(campaign: Campaign, monkeypatch: Any) -> None:
    _import(campaign, ["x", "y"])
    jobs.run_embedding_job(_job(campaign).pk)

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(jobs, "embedder_from_settings", no_model)
    retry = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert jobs.run_embedding_job(retry.pk) is jobs.Outcome.DONE
    retry.refresh_from_db()
    assert (retry.n_cached, retry.n_done, retry.dim) == (2, 2, 32)


def test_a_finished_job_is_not_run_twice(campaign: Campaign) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)
    assert jobs.run_embedding_job(job.pk) is jobs.Outcome.DONE
    assert jobs.run_embedding_job(job.pk) is jobs.Outcome.NOTHING
    assert jobs.run_embedding_job(10_000) is jobs.Outcome.NOTHING
    job.refresh_from_db()
    assert job.attempt == 1


def test_a_job_held_by_a_live_worker_is_busy(campaign: Campaign) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)
    EmbeddingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, attempt=1, heartbeat_at=timezone.now()
    )
    assert jobs.run_embedding_job(job.pk) is jobs.Outcome.BUSY
    job.refresh_from_db()
    assert (job.status, job.attempt) == (Status.RUNNING, 1)


def test_another_job_of_the_same_campaign_waits_for_the_running_one(campaign: Campaign) -> None:
    _import(campaign, ["x"])
    first = _job(campaign)
    EmbeddingJob.objects.filter(pk=first.pk).update(
        status=Status.RUNNING, attempt=1, heartbeat_at=timezone.now()
    )
    second = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert jobs.run_embedding_job(second.pk) is jobs.Outcome.BUSY
    second.refresh_from_db()
    assert second.status == Status.QUEUED


def test_a_stale_running_job_is_taken_over_and_resumes_from_its_chunks(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    settings.CARVE_EMBEDDING_BATCH = 2  # chunks of 8 rows
    _import(campaign, [f"text {i}" for i in range(20)])
    job = _job(campaign)
    # A first attempt wrote the chunk of rows 0..8, then its worker died.
    keys = list(Item.objects.filter(campaign=campaign).values_list("text_sha256", flat=True))
    store = jobs.store_for(campaign.pk, job.model_name)
    first = store.plan(keys, 0, chunk_rows=8)[0]
    store.write_chunk(first, _expected(campaign)[:8])
    long_ago = timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS + 5)
    EmbeddingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, attempt=1, heartbeat_at=long_ago, n_total=20, n_done=8
    )
    encoded: list[int] = []
    real = FakeEmbedder.encode

    def counting(self: FakeEmbedder, texts: list[str]) -> np.ndarray:
        encoded.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(FakeEmbedder, "encode", counting)
    assert jobs.run_embedding_job(job.pk, worker="w2") is jobs.Outcome.DONE

    job.refresh_from_db()
    assert (job.status, job.attempt, job.worker, job.n_done) == (Status.DONE, 2, "w2", 20)
    assert encoded == [8, 4]  # rows 8..16 and 16..20; the dead worker's chunk was reused
    np.testing.assert_array_equal(store.load(), _expected(campaign))


def test_a_worker_that_lost_its_claim_stops_without_writing(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    settings.CARVE_EMBEDDING_BATCH = 2
    _import(campaign, [f"text {i}" for i in range(20)])
    job = _job(campaign)
    real = FakeEmbedder.encode

    def taken_over(self: FakeEmbedder, texts: list[str]) -> np.ndarray:
        # Another worker claims the job while this one is encoding its first chunk.
        EmbeddingJob.objects.filter(pk=job.pk).update(attempt=7)
        return real(self, texts)

    monkeypatch.setattr(FakeEmbedder, "encode", taken_over)
    assert jobs.run_embedding_job(job.pk) is jobs.Outcome.LOST
    job.refresh_from_db()
    assert (job.status, job.attempt, job.n_done) == (Status.RUNNING, 7, 0)
    assert not jobs.store_for(campaign.pk, job.model_name).parts.exists()


def test_a_failure_is_written_on_the_row_and_raised(campaign: Campaign, monkeypatch: Any) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)

    def broken() -> Any:
        raise OSError("model files missing")

    monkeypatch.setattr(jobs, "embedder_from_settings", broken)
    with pytest.raises(OSError, match="model files missing"):
        jobs.run_embedding_job(job.pk)
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error == "OSError: model files missing"
    assert job.finished_at is not None


def test_an_empty_campaign_finishes_with_nothing_to_do(campaign: Campaign) -> None:
    job = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert jobs.run_embedding_job(job.pk) is jobs.Outcome.DONE
    job.refresh_from_db()
    assert (job.status, job.n_total, job.percent) == (Status.DONE, 0, 100)


def test_pending_jobs_lists_queued_and_running(campaign: Campaign) -> None:
    queued = EmbeddingJob.objects.create(campaign=campaign, model_name="m")
    running = EmbeddingJob.objects.create(campaign=campaign, model_name="m", status="running")
    EmbeddingJob.objects.create(campaign=campaign, model_name="m", status="done")
    EmbeddingJob.objects.create(campaign=campaign, model_name="m", status="failed")
    assert sorted(jobs.pending_jobs()) == sorted([(queued.pk, "queued"), (running.pk, "running")])


# --- the cache on its own ---------------------------------------------------------------------


def test_store_rejects_a_cache_of_other_texts(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    keys = ["a" * 64, "b" * 64]
    chunks = store.plan(keys, 0, chunk_rows=1)
    for chunk in chunks:
        store.write_chunk(chunk, FakeEmbedder().encode(["t"]))
    store.finish(keys, 0, chunks, "fake-32")
    assert store.valid_rows(keys) == 2
    assert store.valid_rows([*keys, "c" * 64]) == 2  # a longer campaign reuses the prefix
    assert store.valid_rows(["b" * 64, "a" * 64]) == 0  # other rows: nothing is reused
    assert store.valid_rows(keys[:1]) == 0  # fewer items than cached rows: start again


def test_store_paths_are_per_campaign_and_model(tmp_path: Path) -> None:
    a = EmbeddingStore.for_campaign(tmp_path, 3, "sentence-transformers/all-MiniLM-L6-v2")
    b = EmbeddingStore.for_campaign(tmp_path, 3, "../../etc")
    assert (
        a.root
        == tmp_path / "campaigns" / "3" / "embeddings" / "sentence-transformers--all-MiniLM-L6-v2"
    )
    assert b.root.parent == tmp_path / "campaigns" / "3" / "embeddings"


def test_fake_embedder_is_deterministic_and_unit_norm() -> None:
    a = FakeEmbedder().encode(["same", "other"])
    b = FakeEmbedder().encode(["same"])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert not np.allclose(a[0], a[1])
