"""A campaign's embeddings in the database: :class:`~labeling.models.EmbeddingChunk` rows.

The database is the one place every web and worker process reads embeddings from
(docs/platform.md, "Embeddings"). A chunk holds the float32 rows ``start..stop`` of the
matrix by one model; its ``rows_digest`` pins the items it embeds. Items are append-only and
never change position, so a chunk written once stays valid, and a matrix is any set of chunks
that tiles ``0..n`` exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import IntegrityError, transaction
from numpy.typing import NDArray

from labeling.models import EmbeddingChunk


def rows_digest(keys: Iterable[str]) -> str:
    """SHA-256 over the items' text keys in row order: identifies the rows a chunk holds."""
    h = hashlib.sha256()
    for key in keys:
        h.update(key.encode("ascii"))
    return h.hexdigest()


@dataclass(frozen=True)
class ChunkRef:
    """A chunk row without its data."""

    pk: int
    start: int
    stop: int
    digest: str
    dim: int


def refs(campaign_id: int, model: str, n: int) -> list[ChunkRef]:
    """The chunks of ``campaign_id`` by ``model`` that lie within rows ``0..n``, by start."""
    rows = (
        EmbeddingChunk.objects.filter(campaign_id=campaign_id, model_name=model, stop__lte=n)
        .order_by("start", "-stop")
        .values_list("pk", "start", "stop", "rows_digest", "dim")
    )
    return [ChunkRef(*row) for row in rows]


def tiling(chunks: Sequence[ChunkRef], n: int) -> list[ChunkRef] | None:
    """Chunks that cover rows ``0..n`` exactly, end to end; None if no set of them does.

    Workers with different chunk sizes may write overlapping chunks, so this is a search:
    walking the starts from the last to the first, a start "reaches n" if one of its chunks
    (the longest such) ends at n or at a start that does.
    """
    by_start: dict[int, list[ChunkRef]] = {}
    for chunk in chunks:
        if chunk.stop <= n:
            by_start.setdefault(chunk.start, []).append(chunk)
    step: dict[int, ChunkRef] = {}  # start -> the chunk from it on a path to n
    for start in sorted(by_start, reverse=True):
        for chunk in sorted(by_start[start], key=lambda c: -c.stop):
            if chunk.stop == n or chunk.stop in step:
                step[start] = chunk
                break
    out, at = [], 0
    while at < n:
        if at not in step:
            return None
        out.append(step[at])
        at = step[at].stop
    return out


def holes(chunks: Sequence[ChunkRef], n: int) -> list[tuple[int, int]]:
    """The fewest rows to embed so that the stored ``chunks`` plus new ones tile ``0..n``:
    the row intervals ``[a, b)`` to embed, in order.

    A shortest path from row 0 to row n whose edges are the stored chunks (free) and "embed
    rows x..y" (cost y - x). Chunks that overlap (written by workers with other chunk sizes,
    or by a slow worker of an earlier attempt) can cover every row and still leave no tiling;
    the path then re-embeds the few rows that join two of them. Disjoint chunks give exactly
    the uncovered intervals.
    """
    usable = [c for c in chunks if c.stop <= n]
    points = sorted({0, n, *(c.start for c in usable), *(c.stop for c in usable)})
    ending: dict[int, list[ChunkRef]] = {}
    for chunk in usable:
        ending.setdefault(chunk.stop, []).append(chunk)
    cost: dict[int, int] = {}
    came: dict[int, tuple[int, bool]] = {}  # point -> (previous point, reached by embedding)
    best_from = (0, 0)  # (cost[q] - q, q) minimised over the points q seen so far
    for p in points:
        if p == 0:
            cost[0] = 0
        else:
            cost[p], came[p] = best_from[0] + p, (best_from[1], True)
            for chunk in ending.get(p, ()):
                if cost[chunk.start] <= cost[p]:
                    cost[p], came[p] = cost[chunk.start], (chunk.start, False)
        if cost[p] - p < best_from[0]:
            best_from = (cost[p] - p, p)
    out: list[tuple[int, int]] = []
    at = n
    while at > 0:
        prev, embed = came[at]
        if embed and at > prev:
            if out and out[-1][0] == at:
                out[-1] = (prev, out[-1][1])  # join adjacent intervals
            else:
                out.append((prev, at))
        at = prev
    return out[::-1]


def pieces(holes: Sequence[tuple[int, int]], chunk_rows: int) -> list[tuple[int, int]]:
    """Split each uncovered interval into chunks of at most ``chunk_rows`` rows."""
    return [
        (a, min(a + chunk_rows, hi)) for lo, hi in holes for a in range(lo, hi, max(1, chunk_rows))
    ]


def write(
    campaign_id: int,
    model: str,
    start: int,
    keys: Sequence[str],
    vectors: NDArray[np.float32],
    worker: str = "",
) -> bool:
    """Store ``vectors`` (float32, (len(keys), dim)) as rows ``start..start+len(keys)``.

    Returns False when the same rows were already stored (by another worker): written once.
    """
    matrix = np.ascontiguousarray(vectors, dtype="<f4")
    if matrix.ndim != 2 or matrix.shape[0] != len(keys):
        raise ValueError(f"expected ({len(keys)}, dim) vectors, got {matrix.shape}")
    try:
        with transaction.atomic():
            EmbeddingChunk.objects.create(
                campaign_id=campaign_id,
                model_name=model,
                start=start,
                stop=start + len(keys),
                rows_digest=rows_digest(keys),
                dim=int(matrix.shape[1]),
                data=matrix.tobytes(),
                worker=worker[:200],
            )
    except IntegrityError:
        return False
    return True


#: Chunks per query when a matrix is read (1024 rows x 384 floats: 1.5 MB each).
READ_BATCH = 16


def read(tiles: Sequence[ChunkRef], n: int) -> NDArray[np.float32]:
    """The matrix (float32, (n, dim)) the ``tiles`` (a :func:`tiling`) make, streamed from
    the database a few chunks at a time."""
    dim = tiles[0].dim if tiles else 0
    matrix = np.empty((n, dim), dtype=np.float32)
    where = {chunk.pk: chunk for chunk in tiles}
    pks, seen = list(where), 0
    # Plain queries of a few chunks each, not .iterator(): on PostgreSQL outside a
    # transaction that is a WITH HOLD cursor, which copies the whole result server-side.
    for at in range(0, len(pks), READ_BATCH):
        rows = EmbeddingChunk.objects.filter(pk__in=pks[at : at + READ_BATCH])
        for pk, data in rows.values_list("pk", "data"):
            chunk = where[pk]
            block = np.frombuffer(bytes(data), dtype="<f4")
            matrix[chunk.start : chunk.stop] = block.reshape(chunk.stop - chunk.start, dim)
            seen += 1
    if seen != len(tiles):
        raise RuntimeError(f"{len(tiles) - seen} embedding chunks vanished while being read")
    return matrix


def delete_stale(campaign_id: int, model: str, keys: Sequence[str]) -> int:
    """Delete the chunks whose digest no longer matches the items at their rows (items of a
    campaign are append-only, so only a repaired or restored database has any). Returns how
    many."""
    stale = [
        c.pk
        for c in refs(campaign_id, model, 1 << 62)
        if c.stop > len(keys) or rows_digest(keys[c.start : c.stop]) != c.digest
    ]
    if stale:
        EmbeddingChunk.objects.filter(pk__in=stale).delete()
    return len(stale)
