"""Embedding jobs called directly (the worker path is in test_worker_integration.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from labeling import tasks
from labeling.embeddings import jobs as embedding_jobs
from labeling.embeddings import pool
from labeling.embeddings.embedders import FakeEmbedder
from labeling.embeddings.store import EmbeddingStore
from labeling.imports.write import import_file
from labeling.jobrows import Outcome
from labeling.models import Campaign, EmbeddingJob, Item

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
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    _import(campaign, ["b", "a"], "again.csv")
    assert not EmbeddingJob.objects.filter(status=Status.QUEUED).exists()


def test_it_embeds_every_item_in_position_order(campaign: Campaign, settings: Any) -> None:
    settings.CARVE_EMBEDDING_BATCH = 4  # chunks of 16 rows
    _import(campaign, [f"review number {i}" for i in range(50)])
    outcome = embedding_jobs.run_embedding_job(_job(campaign).pk, worker="w1")

    job = _job(campaign)
    assert outcome is Outcome.DONE
    assert (job.status, job.n_total, job.n_done, job.dim, job.attempt) == (
        Status.DONE,
        50,
        50,
        32,
        1,
    )
    assert (job.worker, job.error, job.device) == ("w1", "", "cpu")
    assert job.finished_at is not None
    store = pool.store_for(campaign.pk, job.model_name)
    matrix = store.load()
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, _expected(campaign))
    assert not store.parts.exists()  # chunks are joined and removed


def test_a_second_upload_embeds_only_the_new_items(campaign: Campaign, settings: Any) -> None:
    _import(campaign, ["one", "two", "three"])
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    _import(campaign, ["three", "four"], "more.csv")
    embedding_jobs.run_embedding_job(_job(campaign).pk)

    job = _job(campaign)
    assert (job.n_total, job.n_cached, job.n_done) == (4, 3, 4)
    np.testing.assert_array_equal(
        pool.store_for(campaign.pk, job.model_name).load(), _expected(campaign)
    )


def test_a_retry_after_success_uses_the_cache_only(campaign: Campaign, monkeypatch: Any) -> None:
    _import(campaign, ["x", "y"])
    embedding_jobs.run_embedding_job(_job(campaign).pk)

    def no_encoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(FakeEmbedder, "encode", no_encoding)
    retry = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert embedding_jobs.run_embedding_job(retry.pk) is Outcome.DONE
    retry.refresh_from_db()
    assert (retry.n_cached, retry.n_done, retry.dim) == (2, 2, 32)


def test_a_finished_job_is_not_run_twice(campaign: Campaign) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.DONE
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.NOTHING
    assert embedding_jobs.run_embedding_job(10_000) is Outcome.NOTHING
    job.refresh_from_db()
    assert job.attempt == 1


def test_a_job_held_by_a_live_worker_is_busy(campaign: Campaign) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)
    EmbeddingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, attempt=1, heartbeat_at=timezone.now()
    )
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.BUSY
    job.refresh_from_db()
    assert (job.status, job.attempt) == (Status.RUNNING, 1)


def test_another_job_of_the_same_campaign_waits_for_the_running_one(campaign: Campaign) -> None:
    _import(campaign, ["x"])
    first = _job(campaign)
    EmbeddingJob.objects.filter(pk=first.pk).update(
        status=Status.RUNNING, attempt=1, heartbeat_at=timezone.now()
    )
    second = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert embedding_jobs.run_embedding_job(second.pk) is Outcome.BUSY
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
    store = pool.store_for(campaign.pk, job.model_name)
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
    assert embedding_jobs.run_embedding_job(job.pk, worker="w2") is Outcome.DONE

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
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.LOST
    job.refresh_from_db()
    assert (job.status, job.attempt, job.n_done) == (Status.RUNNING, 7, 0)
    assert not pool.store_for(campaign.pk, job.model_name).parts.exists()


def test_a_job_whose_worker_died_too_often_fails_instead_of_being_taken_over(
    campaign: Campaign, settings: Any
) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)
    long_ago = timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS + 5)
    EmbeddingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, attempt=settings.CARVE_JOB_MAX_ATTEMPTS, heartbeat_at=long_ago
    )
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.NOTHING
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert "stopped responding 3 times" in job.error


def test_a_new_job_supersedes_a_dead_job_of_the_same_campaign(
    campaign: Campaign, settings: Any
) -> None:
    _import(campaign, ["x", "y"])
    dead = _job(campaign)
    long_ago = timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS + 5)
    EmbeddingJob.objects.filter(pk=dead.pk).update(
        status=Status.RUNNING, attempt=1, heartbeat_at=long_ago
    )
    fresh = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert embedding_jobs.run_embedding_job(fresh.pk) is Outcome.DONE
    dead.refresh_from_db()
    assert (dead.status, dead.attempt) == (Status.FAILED, 2)  # a zombie run would now stop
    assert f"Superseded by embedding job {fresh.pk}" in dead.error
    assert _status_of(fresh) == Status.DONE


def _status_of(job: EmbeddingJob) -> str:
    job.refresh_from_db()
    return job.status


def test_a_locked_cache_makes_the_job_wait_without_claiming(campaign: Campaign) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)
    with pool.store_for(campaign.pk, "fake-32").exclusive() as held:
        assert held
        assert embedding_jobs.run_embedding_job(job.pk) is Outcome.BUSY
    job.refresh_from_db()
    assert (job.status, job.attempt) == (Status.QUEUED, 0)


def test_a_lost_database_connection_hands_the_job_back(
    campaign: Campaign, monkeypatch: Any
) -> None:
    from django.db import OperationalError

    _import(campaign, ["x"])
    job = _job(campaign)

    def disconnected(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(embedding_jobs, "_embed", disconnected)
    with pytest.raises(OperationalError):
        embedding_jobs.run_embedding_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.attempt, job.error) == (Status.QUEUED, 1, "")


def test_a_finished_job_starts_the_campaigns_next_queued_job(
    campaign: Campaign, django_capture_on_commit_callbacks: Any
) -> None:
    _import(campaign, ["x"])
    first = _job(campaign)
    # Queued by an import made while the first job runs.
    following = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    with django_capture_on_commit_callbacks(execute=True):
        embedding_jobs.run_embedding_job(first.pk)
    following.refresh_from_db()
    assert following.sent_at is not None  # sent now, not after a polling delay


def test_nudge_resends_a_stuck_job_once_per_stale_period(campaign: Campaign, settings: Any) -> None:
    job = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert embedding_jobs.nudge(job)  # never sent (the broker was down at import time)
    job.refresh_from_db()
    assert not embedding_jobs.nudge(job)  # just sent: not again
    long_ago = timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS + 5)
    EmbeddingJob.objects.filter(pk=job.pk).update(sent_at=long_ago)
    job.refresh_from_db()
    assert embedding_jobs.nudge(job)
    EmbeddingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, heartbeat_at=timezone.now(), sent_at=long_ago
    )
    job.refresh_from_db()
    assert not embedding_jobs.nudge(job)  # a live worker has it


def test_a_broker_that_is_down_is_tried_once_per_stale_period_not_at_every_poll(
    campaign: Campaign, monkeypatch: Any
) -> None:
    """The campaign page polls every second; with Redis down each try blocks, so a stuck
    job is re-sent at most once per CARVE_JOB_STALE_SECONDS, and the page never sees the
    broker's error."""
    attempts: list[int] = []

    def down(job_id: int) -> None:
        attempts.append(job_id)
        raise BrokerError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(tasks.embed_campaign, "delay", down)
    job = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    for _ in range(3):
        job.refresh_from_db()
        assert not embedding_jobs.nudge(job)
    assert attempts == [job.pk]


def test_a_failure_is_written_on_the_row_and_raised(campaign: Campaign, monkeypatch: Any) -> None:
    _import(campaign, ["x"])
    job = _job(campaign)

    def broken() -> Any:
        raise OSError("model files missing")

    monkeypatch.setattr(embedding_jobs, "embedder_from_settings", broken)
    with pytest.raises(OSError, match="model files missing"):
        embedding_jobs.run_embedding_job(job.pk)
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error == "OSError: model files missing"
    assert job.finished_at is not None


def test_an_empty_campaign_finishes_with_nothing_to_do(campaign: Campaign) -> None:
    job = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.DONE
    job.refresh_from_db()
    assert (job.status, job.n_total, job.percent) == (Status.DONE, 0, 100)


def test_pending_jobs_lists_queued_and_running(campaign: Campaign) -> None:
    queued = EmbeddingJob.objects.create(campaign=campaign, model_name="m")
    running = EmbeddingJob.objects.create(campaign=campaign, model_name="m", status="running")
    EmbeddingJob.objects.create(campaign=campaign, model_name="m", status="done")
    EmbeddingJob.objects.create(campaign=campaign, model_name="m", status="failed")
    assert sorted(embedding_jobs.pending_jobs()) == sorted(
        [(queued.pk, "queued"), (running.pk, "running")]
    )


# --- the cache on its own ---------------------------------------------------------------------


def test_store_rejects_a_cache_of_other_texts_or_another_model(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    keys = ["a" * 64, "b" * 64]
    chunks = store.plan(keys, 0, chunk_rows=1)
    for chunk in chunks:
        store.write_chunk(chunk, FakeEmbedder().encode(["t"]))
    store.finish(keys, 0, chunks, "fake-32")
    assert store.valid_rows(keys, "fake-32") == 2
    assert store.valid_rows([*keys, "c" * 64], "fake-32") == 2  # a longer campaign: the prefix
    assert store.valid_rows(["b" * 64, "a" * 64], "fake-32") == 0  # other rows: nothing
    assert store.valid_rows(keys[:1], "fake-32") == 0  # fewer items than cached rows
    assert store.valid_rows(keys, "another-model") == 0


def test_store_reuses_only_complete_chunks(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    chunk = store.plan(["a" * 64, "b" * 64], 0, chunk_rows=2)[0]
    assert not store.has_chunk(chunk)
    store.parts.mkdir(parents=True)
    chunk.path.write_bytes(b"\x93NUMPY garbage")  # a torn write from outside _save_atomic
    assert not store.has_chunk(chunk)
    store.write_chunk(chunk, FakeEmbedder().encode(["only one row"]))
    assert not store.has_chunk(chunk)  # wrong number of rows
    store.write_chunk(chunk, FakeEmbedder().encode(["one", "two"]))
    assert store.has_chunk(chunk)


def test_store_lock_admits_one_holder_at_a_time(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    with store.exclusive() as first, EmbeddingStore(tmp_path).exclusive() as second:
        assert (first, second) == (True, False)
    with store.exclusive() as again:
        assert again


def test_store_paths_are_per_campaign_and_model(tmp_path: Path) -> None:
    a = EmbeddingStore.for_campaign(tmp_path, 3, "sentence-transformers/all-MiniLM-L6-v2")
    b = EmbeddingStore.for_campaign(tmp_path, 3, "sentence-transformers--all-MiniLM-L6-v2")
    c = EmbeddingStore.for_campaign(tmp_path, 3, "../../etc")
    assert a.root.parent == tmp_path / "campaigns" / "3" / "embeddings"
    assert a.root.name.startswith("sentence-transformers-all-MiniLM-L6-v2-")
    assert a.root != b.root  # names that slug alike still get their own directory
    assert c.root.parent == tmp_path / "campaigns" / "3" / "embeddings"


def test_fake_embedder_is_deterministic_and_unit_norm() -> None:
    a = FakeEmbedder().encode(["same", "other"])
    b = FakeEmbedder().encode(["same"])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert not np.allclose(a[0], a[1])
