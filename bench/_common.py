"""Shared helpers of the benchmarks."""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"


def pin_blas_threads() -> str:
    """One BLAS thread unless the caller chose otherwise (call before importing numpy).

    A Celery worker runs one learner job per process, so that is the deployment setting; on
    this 2-core machine OpenBLAS with 2 threads is also slower on these matrix sizes.
    """
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    return os.environ["OPENBLAS_NUM_THREADS"]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as a CSV file with a header: every key of any row, in order of appearance (a
    row without a key leaves its cell empty, e.g. older rows merged with newer ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Inverse of :func:`write_rows` (values come back as strings)."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(name: str, rows: list[dict[str, Any]]) -> Path:
    """Rows to ``bench/out/<name>``."""
    return write_rows(OUT_DIR / name, rows)
