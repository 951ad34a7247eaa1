"""A process's local cache of pool matrices. No Django here: paths come in as values.

The database holds every embedding (:mod:`labeling.embeddings.chunks`); reading a large
campaign's chunks again at every learner update would cost seconds, so each machine keeps
the matrix it last assembled, named by a hash of its content (docs/platform.md,
"Embeddings"). A file either is the matrix its name promises or is not used: deleting the
cache at any time loses nothing, the next read rebuilds it from the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


class MatrixCache:
    """Content-addressed pool matrices of one campaign and model under ``root``.

    Layout: ``root/<key>.npz`` with arrays ``matrix`` (float32, (n, dim)) and ``items``
    (int64, (n,): the item id of each row). Only the newest key is kept.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_campaign(cls, data_dir: Path, campaign_id: int, model: str) -> MatrixCache:
        # Readable and collision-free: "org/m" and "org--m" differ in the hash suffix.
        readable = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.")[:80] or "model"
        slug = f"{readable}-{hashlib.sha256(model.encode('utf-8')).hexdigest()[:8]}"
        return cls(Path(data_dir) / "cache" / "embeddings" / str(campaign_id) / slug)

    def path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{16,64}", key):
            raise ValueError(f"not a content key: {key!r}")
        return self.root / f"{key}.npz"

    def get(self, key: str, n: int) -> tuple[NDArray[np.float32], NDArray[np.int64]] | None:
        """The cached (matrix, item ids) for ``key`` if present and whole, else None."""
        try:
            with np.load(self.path(key)) as data:
                matrix, items = data["matrix"], data["items"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # missing, or half-written by a process that died: rebuild
        if matrix.dtype != np.float32 or matrix.ndim != 2 or matrix.shape[0] != n:
            return None
        if items.shape != (n,):
            return None
        return matrix, items.astype(np.int64, copy=False)

    def put(self, key: str, matrix: NDArray[np.float32], items: NDArray[np.int64]) -> None:
        """Write the entry for ``key`` atomically and drop the older ones; a cache that cannot
        be written (full disk, read-only) is skipped: the database still has everything."""
        target = self.path(key)
        tmp = target.with_name(f".{key}.{os.getpid()}.tmp")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                np.savez(fh, matrix=matrix, items=items)
            tmp.replace(target)
            for old in self.root.glob("*.npz"):
                if old != target:
                    old.unlink(missing_ok=True)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
