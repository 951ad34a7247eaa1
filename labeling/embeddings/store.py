"""A campaign's cached embedding matrix on disk. No Django here: paths come in as values.

:class:`EmbeddingStore` keeps one campaign's matrix as ``embeddings.npy`` (float32, row i is
the item at position i) plus ``manifest.json``, and the chunks of an unfinished run as
separate files, so a run that dies midway resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from labeling import filelock


def rows_digest(keys: Sequence[str]) -> str:
    """SHA-256 over the items' text keys in row order: identifies the rows a matrix holds."""
    h = hashlib.sha256()
    for key in keys:
        h.update(key.encode("ascii"))
    return h.hexdigest()


def _save_atomic(path: Path, array: NDArray[np.float32]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


@dataclass(frozen=True)
class Chunk:
    start: int
    stop: int
    path: Path


class EmbeddingStore:
    """The cached embedding matrix of one campaign for one model.

    Layout under ``root`` (``CARVE_DATA_DIR/campaigns/<id>/embeddings/<model>/``)::

        embeddings.npy   float32 (n, dim); row i embeds the item at position i
        manifest.json    {"model", "dim", "n", "rows_digest"}; rows_digest = rows_digest(keys[:n])
        parts/           chunks of a run in progress: <start>-<stop>-<digest>.npy

    Items are append-only (positions never change), so a cache whose digest matches the first
    n current keys is valid for those rows, and a run only embeds the rows after them.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.matrix_path = root / "embeddings.npy"
        self.manifest_path = root / "manifest.json"
        self.parts = root / "parts"

    @classmethod
    def for_campaign(cls, data_dir: Path, campaign_id: int, model: str) -> EmbeddingStore:
        # Readable and collision-free: "org/m" and "org--m" differ in the hash suffix.
        readable = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.")[:80] or "model"
        slug = f"{readable}-{hashlib.sha256(model.encode('utf-8')).hexdigest()[:8]}"
        return cls(Path(data_dir) / "campaigns" / str(campaign_id) / "embeddings" / slug)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Hold an exclusive lock on this store for the block; yields False if it is taken.

        An OS file lock: released by the kernel when its process dies, so a killed worker
        never leaves it behind, and a live one that was presumed dead keeps others out.
        """
        with filelock.exclusive(self.root / ".lock") as got:
            yield got

    def manifest(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def valid_rows(self, keys: Sequence[str], model: str) -> int:
        """How many leading rows of the cached matrix embed ``keys`` with ``model`` (0 if none)."""
        manifest = self.manifest()
        if manifest is None or manifest.get("model") != model or not self.matrix_path.exists():
            return 0
        n = manifest.get("n")
        if (
            not isinstance(n, int)
            or n > len(keys)
            or rows_digest(keys[:n]) != manifest.get("rows_digest")
        ):
            return 0
        rows = np.load(self.matrix_path, mmap_mode="r").shape[0]
        return n if rows >= n else 0

    def load(self, n: int | None = None) -> NDArray[np.float32]:
        """The cached matrix (its first ``n`` rows), float32 of shape (n, dim)."""
        manifest = self.manifest()
        if manifest is None:
            raise FileNotFoundError(f"no embeddings cached in {self.root}")
        rows = int(str(manifest["n"])) if n is None else n
        matrix = np.load(self.matrix_path, mmap_mode="r")
        if matrix.shape[0] < rows:
            raise RuntimeError(f"{self.matrix_path} has {matrix.shape[0]} rows, expected {rows}")
        return np.array(matrix[:rows], dtype=np.float32)

    def plan(self, keys: Sequence[str], start: int, chunk_rows: int) -> list[Chunk]:
        """The chunks covering rows ``start..len(keys)``; a chunk's file name pins its rows."""
        chunks = []
        for a in range(start, len(keys), chunk_rows):
            b = min(a + chunk_rows, len(keys))
            name = f"{a:09d}-{b:09d}-{rows_digest(keys[a:b])[:16]}.npy"
            chunks.append(Chunk(a, b, self.parts / name))
        return chunks

    def has_chunk(self, chunk: Chunk) -> bool:
        """Whether a complete chunk file exists (right number of rows, float32)."""
        try:
            array = np.load(chunk.path, mmap_mode="r")
        except (FileNotFoundError, ValueError, OSError):
            return False
        return bool(array.dtype == np.float32 and array.ndim == 2) and (
            array.shape[0] == chunk.stop - chunk.start
        )

    def write_chunk(self, chunk: Chunk, vectors: NDArray[np.float32]) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        _save_atomic(chunk.path, vectors)

    def finish(self, keys: Sequence[str], start: int, chunks: Sequence[Chunk], model: str) -> int:
        """Join the cached rows ``[:start]`` and every chunk into the new matrix; returns dim."""
        pieces = [self.load(start)] if start else []
        pieces += [np.load(c.path) for c in chunks]
        matrix = np.concatenate(pieces).astype(np.float32, copy=False)
        if matrix.shape[0] != len(keys):
            raise RuntimeError(f"embedding rows {matrix.shape[0]} != items {len(keys)}")
        self.root.mkdir(parents=True, exist_ok=True)
        _save_atomic(self.matrix_path, matrix)
        # The manifest goes last: until it is replaced, the old one still describes a valid
        # prefix of the new matrix.
        manifest = {
            "model": model,
            "dim": int(matrix.shape[1]),
            "n": len(keys),
            "rows_digest": rows_digest(keys),
        }
        tmp = self.manifest_path.with_name(f".manifest.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest), encoding="utf-8")
        tmp.replace(self.manifest_path)
        shutil.rmtree(self.parts, ignore_errors=True)
        return int(matrix.shape[1])
