"""A campaign's pool matrix: the embedder the settings name, and the matrix itself.

The matrix is assembled from the campaign's chunks in the database
(:mod:`labeling.embeddings.chunks`) once every item is embedded, and kept in this machine's
:class:`~labeling.embeddings.store.MatrixCache` under a hash of what it holds: row ``i`` is
the item at position ``i``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from numpy.typing import NDArray

from labeling.embeddings import chunks
from labeling.embeddings.embedders import Embedder, make_embedder
from labeling.embeddings.store import MatrixCache
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


def cache_for(campaign_id: int, model_name: str) -> MatrixCache:
    """This machine's cache of ``campaign_id``'s matrices by ``model_name`` (CARVE_DATA_DIR)."""
    return MatrixCache.for_campaign(settings.CARVE_DATA_DIR, campaign_id, model_name)


def current_embedding_model(campaign: Campaign) -> str | None:
    """The model of the campaign's latest finished embedding job."""
    return (
        EmbeddingJob.objects.filter(campaign=campaign, status=EmbeddingJob.Status.DONE)
        .order_by("-pk")
        .values_list("model_name", flat=True)
        .first()
    )


@dataclass(frozen=True)
class Pool:
    """A campaign's embedded items.

    Attributes
    ----------
    matrix : ndarray of shape (n, dim), float32
        Row ``i`` embeds the item at position ``i``.
    items : ndarray of shape (n,), int64
        The item id of each row.
    key : str
        Names the content (model, rows and their chunks): part of the learner's fingerprint.
    """

    matrix: NDArray[np.float32]
    items: NDArray[np.int64]
    key: str
    _order: NDArray[np.intp] = field(init=False, repr=False, compare=False)
    _sorted: NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        order = np.argsort(self.items, kind="stable")
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_sorted", self.items[order])

    def locate(self, item_ids: Iterable[int]) -> NDArray[np.intp]:
        """The row of each of ``item_ids`` (shape (k,)), -1 for an id not in the pool."""
        ids = np.fromiter(item_ids, dtype=np.int64)
        rows = np.full(len(ids), -1, dtype=np.intp)
        if len(self.items) and len(ids):
            at = np.minimum(np.searchsorted(self._sorted, ids), len(self.items) - 1)
            found = self._sorted[at] == ids
            rows[found] = self._order[at[found]]
        return rows

    def rows_of(self, item_ids: Iterable[int]) -> NDArray[np.intp]:
        """The rows of ``item_ids`` (shape (k,)); KeyError if one is not in the pool."""
        ids = list(item_ids)
        rows = self.locate(ids)
        if (rows < 0).any():
            raise KeyError(ids[int(np.argmin(rows))])
        return rows


def embeddings(campaign: Campaign) -> Pool | None:
    """The campaign's pool once every item is embedded by its current model, else None."""
    model = current_embedding_model(campaign)
    if model is None:
        return None
    n = Item.objects.filter(campaign=campaign).count()
    if n == 0:
        return None
    tiles = chunks.tiling(chunks.refs(campaign.pk, model, n), n)
    if tiles is None:
        return None  # new items are still being embedded
    if len({tile.dim for tile in tiles}) != 1:
        raise RuntimeError(f"campaign {campaign.pk}: chunks of {model} differ in width")
    # The content: the model, the rows and the chunk rows that hold them, and the ids of the
    # first and last item (a database rebuilt under a kept data directory has other ids).
    ends = Item.objects.filter(campaign=campaign, position__in=[0, n - 1])
    h = hashlib.sha256(f"{model}\n{n}\n{sorted(ends.values_list('position', 'pk'))}\n".encode())
    for tile in tiles:
        h.update(f"{tile.pk}:{tile.start}-{tile.stop}-{tile.digest}\n".encode())
    key = h.hexdigest()[:32]
    kept = _kept.get((campaign.pk, model))
    if kept is not None and kept.key == key:
        _kept.move_to_end((campaign.pk, model))
        return kept
    cache = cache_for(campaign.pk, model)
    hit = cache.get(key, n)
    if hit is not None:
        return _keep(campaign.pk, model, Pool(hit[0], hit[1], key))
    matrix = chunks.read(tiles, n)
    items = np.fromiter(
        Item.objects.filter(campaign=campaign, position__lt=n)
        .order_by("position")
        .values_list("pk", flat=True)
        .iterator(chunk_size=10_000),
        dtype=np.int64,
        count=n,
    )
    cache.put(key, matrix, items)
    return _keep(campaign.pk, model, Pool(matrix, items, key))


#: The pools this process read last, newest last: a worker's next learner update of the
#: campaign skips reading the matrix again (seconds at a million items). Bounded by
#: CARVE_POOL_MEMORY_MB; the content key decides whether an entry is still the pool.
_kept: OrderedDict[tuple[int, str], Pool] = OrderedDict()


def _keep(campaign_id: int, model: str, pool: Pool) -> Pool:
    pool.matrix.setflags(write=False)  # shared by the callers that get it: read only
    budget = settings.CARVE_POOL_MEMORY_MB * 2**20
    _kept.pop((campaign_id, model), None)
    if pool.matrix.nbytes + pool.items.nbytes <= budget:
        _kept[(campaign_id, model)] = pool
    while sum(p.matrix.nbytes + p.items.nbytes for p in _kept.values()) > budget:
        _kept.popitem(last=False)
    return pool
