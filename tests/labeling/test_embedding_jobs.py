"""Embedding jobs called directly (the worker path is in test_worker_integration.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from labeling import queue, tasks
from labeling.embeddings import chunks, pool
from labeling.embeddings import jobs as embedding_jobs
from labeling.embeddings.embedders import FakeEmbedder
from labeling.embeddings.store import MatrixCache
from labeling.imports.write import import_file
from labeling.jobrows import Outcome
from labeling.models import Campaign, EmbeddingChunk, EmbeddingJob, Item

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


def _stored(campaign: Campaign, model: str = "fake-32") -> np.ndarray:
    """The matrix the database's chunks make (AssertionError if they do not tile it)."""
    n = Item.objects.filter(campaign=campaign).count()
    tiles = chunks.tiling(chunks.refs(campaign.pk, model, n), n)
    assert tiles is not None, "the stored chunks do not cover every item"
    return chunks.read(tiles, n)


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
    settings.CARVE_EMBEDDING_CHUNK_ROWS = 16
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
    matrix = _stored(campaign)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, _expected(campaign))
    spans = list(EmbeddingChunk.objects.filter(campaign=campaign).values_list("start", "stop"))
    assert spans == [(0, 16), (16, 32), (32, 48), (48, 50)]
    assert set(EmbeddingChunk.objects.values_list("worker", flat=True)) == {"w1"}


def test_a_second_upload_embeds_only_the_new_items(campaign: Campaign, settings: Any) -> None:
    _import(campaign, ["one", "two", "three"])
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    _import(campaign, ["three", "four"], "more.csv")
    embedding_jobs.run_embedding_job(_job(campaign).pk)

    job = _job(campaign)
    assert (job.n_total, job.n_cached, job.n_done) == (4, 3, 4)
    np.testing.assert_array_equal(_stored(campaign), _expected(campaign))


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
    settings.CARVE_EMBEDDING_CHUNK_ROWS = 8
    _import(campaign, [f"text {i}" for i in range(20)])
    job = _job(campaign)
    # A first attempt wrote the chunk of rows 8..16, then its worker died.
    keys = list(Item.objects.filter(campaign=campaign).values_list("text_sha256", flat=True))
    chunks.write(campaign.pk, job.model_name, 8, keys[8:16], _expected(campaign)[8:16])
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
    assert encoded == [8, 4]  # rows 0..8 and 16..20; the dead worker's chunk was reused
    assert (job.n_cached, job.plan) == (8, [[0, 8], [16, 20]])
    np.testing.assert_array_equal(_stored(campaign), _expected(campaign))


def test_a_worker_that_lost_its_claim_stops_without_writing(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    settings.CARVE_EMBEDDING_CHUNK_ROWS = 8
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
    # Its chunk is stored (the same rows embed the same way), but counted by nobody: the run
    # that took over plans only what is still missing.
    assert list(EmbeddingChunk.objects.values_list("start", "stop")) == [(0, 8)]


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


def test_a_lost_database_connection_hands_the_job_back(
    campaign: Campaign, monkeypatch: Any
) -> None:
    from django.db import OperationalError

    _import(campaign, ["x"])
    job = _job(campaign)

    def disconnected(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(embedding_jobs, "_plan", disconnected)
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


def test_workers_that_join_a_job_share_its_chunks_and_the_last_one_finishes_it(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    settings.CARVE_EMBEDDING_CHUNK_ROWS = 8
    settings.CARVE_EMBEDDING_HELPERS = 5
    _import(campaign, [f"text {i}" for i in range(20)])
    job = _job(campaign)
    sent: list[tuple[str, tuple[object, ...]]] = []

    def record(task: str, *args: object) -> bool:
        sent.append((task, args))
        return True

    monkeypatch.setattr(queue, "try_send", record)
    # The claiming run asks two more workers (3 chunks: at most 2 helpers); with no time to
    # spare it embeds one chunk and hands the rest on as one more message.
    monkeypatch.setattr(embedding_jobs, "CLAIMING_RUN_SECONDS", 0)
    assert embedding_jobs.run_embedding_job(job.pk, worker="w1") is Outcome.HELPED
    assert sent == [(queue.EMBED_CHUNK, (job.pk,))] * 3
    assert embedding_jobs.help_embedding_job(job.pk, worker="w2") is Outcome.HELPED
    assert len(sent) == 4  # the helper sends itself again: a chunk is left
    assert embedding_jobs.help_embedding_job(job.pk, worker="w3") is Outcome.DONE
    assert embedding_jobs.help_embedding_job(job.pk, worker="w2") is Outcome.NOTHING
    assert len(sent) == 4
    job.refresh_from_db()
    assert (job.status, job.n_done, job.dim) == (Status.DONE, 20, 32)
    by = dict(EmbeddingChunk.objects.values_list("start", "worker"))
    assert by == {0: "w1", 8: "w2", 16: "w3"}
    np.testing.assert_array_equal(_stored(campaign), _expected(campaign))


def test_a_worker_with_another_embedder_does_not_join(campaign: Campaign, settings: Any) -> None:
    _import(campaign, [f"text {i}" for i in range(3)])
    job = _job(campaign)
    EmbeddingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, attempt=1, model_name="other-model", plan=[[0, 3]]
    )
    assert embedding_jobs.help_embedding_job(job.pk) is Outcome.NOTHING
    assert not EmbeddingChunk.objects.exists()


def test_the_pool_is_read_from_the_database_and_cached_on_this_machine(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    settings.CARVE_EMBEDDING_CHUNK_ROWS = 4
    _import(campaign, [f"text {i}" for i in range(10)])
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    first = pool.embeddings(campaign)
    assert first is not None
    np.testing.assert_array_equal(first.matrix, _expected(campaign))
    items = list(Item.objects.filter(campaign=campaign).order_by("position"))
    assert first.items.tolist() == [item.pk for item in items]
    assert first.rows_of([items[7].pk, items[2].pk]).tolist() == [7, 2]
    assert first.locate([items[3].pk, 10**9]).tolist() == [3, -1]
    cache = pool.cache_for(campaign.pk, "fake-32")
    assert [p.stem for p in cache.root.glob("*.npz")] == [first.key]

    def no_database(*args: Any) -> Any:
        raise AssertionError("a cached pool must not read the chunks again")

    monkeypatch.setattr(chunks, "read", no_database)
    again = pool.embeddings(campaign)
    assert again is first  # kept in this process's memory
    assert not again.matrix.flags.writeable  # shared: read only
    pool._kept.clear()  # another process on this machine: the file
    from_file = pool.embeddings(campaign)
    assert from_file is not None and from_file.key == first.key
    np.testing.assert_array_equal(from_file.matrix, first.matrix)
    monkeypatch.undo()
    pool._kept.clear()
    # Delete this machine's cache: nothing is lost, the next read rebuilds it.
    for path in cache.root.glob("*.npz"):
        path.unlink()
    rebuilt = pool.embeddings(campaign)
    assert rebuilt is not None and rebuilt.key == first.key
    np.testing.assert_array_equal(rebuilt.matrix, first.matrix)


def test_the_cache_is_not_reused_for_other_items_with_the_same_texts(campaign: Campaign) -> None:
    """A database rebuilt under a kept data directory: same campaign id and texts, other
    item ids. The cached pool must not hand back the old ids."""
    _import(campaign, ["a", "b", "c"])
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    first = pool.embeddings(campaign)
    assert first is not None
    Item.objects.filter(campaign=campaign).delete()
    _import(campaign, ["a", "b", "c"], "again.csv")
    EmbeddingJob.objects.filter(campaign=campaign).update(status=Status.DONE)
    again = pool.embeddings(campaign)
    assert again is not None and again.key != first.key
    ids = list(Item.objects.filter(campaign=campaign).order_by("position").values_list("pk"))
    assert again.items.tolist() == [pk for (pk,) in ids]


def test_a_torn_cache_file_is_ignored_and_replaced(campaign: Campaign) -> None:
    _import(campaign, ["a", "b", "c"])
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    first = pool.embeddings(campaign)
    assert first is not None
    path = pool.cache_for(campaign.pk, "fake-32").path(first.key)
    path.write_bytes(path.read_bytes()[:100])  # a process died while writing it
    pool._kept.clear()  # read by another process
    again = pool.embeddings(campaign)
    assert again is not None
    np.testing.assert_array_equal(again.matrix, first.matrix)
    assert path.stat().st_size > 100


def test_a_process_keeps_pools_within_its_memory_budget(
    campaign: Campaign, manager: Any, settings: Any
) -> None:
    other = Campaign.objects.create(name="Other", created_by=manager)
    for c in (campaign, other):
        _import(c, [f"{c.pk} text {i}" for i in range(10)])
        embedding_jobs.run_embedding_job(_job(c).pk)
    one = 10 * 32 * 4 + 10 * 8  # bytes of a pool of 10 items
    settings.CARVE_POOL_MEMORY_MB = one * 1.5 / 2**20  # room for one pool, not two
    first = pool.embeddings(campaign)
    assert list(pool._kept) == [(campaign.pk, "fake-32")]
    pool.embeddings(other)
    assert list(pool._kept) == [(other.pk, "fake-32")]  # the older one made room
    assert pool.embeddings(campaign) is not first  # read again
    settings.CARVE_POOL_MEMORY_MB = 0
    pool.embeddings(other)
    assert not pool._kept


def test_the_pool_waits_until_new_items_are_embedded(campaign: Campaign) -> None:
    _import(campaign, ["a", "b"])
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    assert pool.embeddings(campaign) is not None
    _import(campaign, ["c"], "more.csv")
    assert pool.embeddings(campaign) is None  # row 2 has no embedding yet
    embedding_jobs.run_embedding_job(_job(campaign).pk)
    grown = pool.embeddings(campaign)
    assert grown is not None and grown.matrix.shape == (3, 32)


def test_stale_chunks_are_deleted_and_embedded_again(campaign: Campaign, settings: Any) -> None:
    _import(campaign, ["a", "b", "c"])
    job = _job(campaign)
    # A restored database: a chunk of rows 0..2 whose digest is not that of the items there.
    chunks.write(campaign.pk, "fake-32", 0, ["f" * 64, "e" * 64], np.ones((2, 32), np.float32))
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.DONE
    np.testing.assert_array_equal(_stored(campaign), _expected(campaign))
    assert EmbeddingChunk.objects.count() == 1


# --- chunks and the cache on their own -------------------------------------------------------


def _ref(start: int, stop: int, pk: int = 0) -> chunks.ChunkRef:
    return chunks.ChunkRef(pk=pk or start + 1, start=start, stop=stop, digest="d", dim=4)


def test_tiling_finds_a_cover_through_overlapping_chunks() -> None:
    # Workers with chunk sizes 4 and 3 both wrote some chunks.
    refs = [_ref(0, 4), _ref(0, 3, pk=99), _ref(3, 6), _ref(4, 8), _ref(6, 9)]
    tiles = chunks.tiling(refs, 9)
    assert tiles is not None
    assert [(t.start, t.stop) for t in tiles] == [(0, 3), (3, 6), (6, 9)]
    assert chunks.tiling(refs, 8) == [refs[0], refs[3]]
    assert chunks.tiling(refs, 10) is None
    assert chunks.tiling([], 0) == []


def test_holes_are_the_rows_no_chunk_covers_when_chunks_are_disjoint() -> None:
    refs = [_ref(0, 4), _ref(8, 12)]
    assert chunks.holes(refs, 20) == [(4, 8), (12, 20)]
    assert chunks.pieces(chunks.holes(refs, 20), 3) == [
        (4, 7),
        (7, 8),
        (12, 15),
        (15, 18),
        (18, 20),
    ]
    assert chunks.holes([], 0) == []
    assert chunks.holes([], 5) == [(0, 5)]
    assert chunks.holes([_ref(0, 5)], 5) == []


def test_holes_join_overlapping_chunks_that_cover_every_row_but_tile_nothing() -> None:
    # A slow worker of an earlier attempt stored [10, 20) after a later attempt (7-row
    # chunks) had stored [17, 24)...: every row is covered, yet nothing ends at 17.
    refs = [_ref(0, 10), _ref(10, 20), _ref(17, 24), _ref(24, 31), _ref(31, 38), _ref(38, 39)]
    assert chunks.tiling(refs, 39) is None
    plan = chunks.holes(refs, 39)
    assert plan == [(20, 24)]  # the fewest rows: 10..20 and 24..31 are joined
    new = [_ref(a, b, pk=1000 + a) for a, b in chunks.pieces(plan, 4)]
    assert chunks.tiling([*refs, *new], 39) is not None


@pytest.mark.parametrize("seed", range(40))
def test_holes_always_complete_a_tiling(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    refs = []
    for k in range(int(rng.integers(0, 12))):
        a = int(rng.integers(0, n))
        refs.append(_ref(a, int(rng.integers(a + 1, n + 1)), pk=k + 1))
    plan = chunks.holes(refs, n)
    new = [_ref(a, b, pk=1000 + a) for a, b in chunks.pieces(plan, int(rng.integers(1, 9)))]
    assert chunks.tiling([*refs, *new], n) is not None
    if chunks.tiling(refs, n) is not None:
        assert plan == []


def test_a_job_waiting_in_a_busy_queue_is_sent_a_helper_not_taken_over(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    """Its heartbeat is stale because its messages wait behind other work, not because a
    worker died: no new attempt (three of those would fail the job)."""
    _import(campaign, [f"text {i}" for i in range(20)])
    job = _job(campaign)
    long_ago = timezone.now() - timedelta(seconds=settings.CARVE_JOB_STALE_SECONDS + 5)
    EmbeddingJob.objects.filter(pk=job.pk).update(
        status=Status.RUNNING,
        attempt=1,
        heartbeat_at=long_ago,
        sent_at=long_ago,
        plan=[[0, 8], [8, 16], [16, 20]],
        next_piece=1,
    )
    sent: list[str] = []

    def record(task: str, *args: object) -> bool:
        sent.append(task)
        return True

    monkeypatch.setattr(queue, "try_send", record)
    job.refresh_from_db()
    assert embedding_jobs.nudge(job)
    assert sent == [queue.EMBED_CHUNK]
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.BUSY
    job.refresh_from_db()
    assert (job.status, job.attempt, job.next_piece) == (Status.RUNNING, 1, 1)
    assert sent == [queue.EMBED_CHUNK, queue.EMBED_CHUNK]
    # Every chunk handed out and still no heartbeat: one was lost with a worker. Take over.
    EmbeddingJob.objects.filter(pk=job.pk).update(next_piece=3)
    assert embedding_jobs.run_embedding_job(job.pk) is Outcome.DONE
    job.refresh_from_db()
    assert (job.status, job.attempt) == (Status.DONE, 2)


def test_a_chunk_is_stored_once(campaign: Campaign) -> None:
    keys = ["a" * 64, "b" * 64]
    vectors = FakeEmbedder().encode(["one", "two"])
    assert chunks.write(campaign.pk, "m", 0, keys, vectors, "w1")
    assert not chunks.write(campaign.pk, "m", 0, keys, vectors, "w2")
    assert EmbeddingChunk.objects.get().worker == "w1"
    with pytest.raises(ValueError, match="expected"):
        chunks.write(campaign.pk, "m", 2, keys, vectors[:1])


def test_cache_paths_are_per_campaign_and_model(tmp_path: Path) -> None:
    a = MatrixCache.for_campaign(tmp_path, 3, "sentence-transformers/all-MiniLM-L6-v2")
    b = MatrixCache.for_campaign(tmp_path, 3, "sentence-transformers--all-MiniLM-L6-v2")
    c = MatrixCache.for_campaign(tmp_path, 3, "../../etc")
    assert a.root.parent == tmp_path / "cache" / "embeddings" / "3"
    assert a.root.name.startswith("sentence-transformers-all-MiniLM-L6-v2-")
    assert a.root != b.root  # names that slug alike still get their own directory
    assert c.root.parent == tmp_path / "cache" / "embeddings" / "3"
    with pytest.raises(ValueError):
        a.path("../../x")


def test_cache_keeps_only_the_newest_matrix(tmp_path: Path) -> None:
    cache = MatrixCache(tmp_path)
    m = np.ones((2, 3), np.float32)
    cache.put("a" * 32, m, np.array([5, 6]))
    cache.put("b" * 32, m * 2, np.array([5, 6]))
    assert cache.get("a" * 32, 2) is None
    hit = cache.get("b" * 32, 2)
    assert hit is not None and hit[0][0, 0] == 2 and hit[1].tolist() == [5, 6]
    assert cache.get("b" * 32, 3) is None  # not the rows asked for


def test_fake_embedder_is_deterministic_and_unit_norm() -> None:
    a = FakeEmbedder().encode(["same", "other"])
    b = FakeEmbedder().encode(["same"])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert not np.allclose(a[0], a[1])
