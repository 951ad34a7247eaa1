"""Input checks done once, at the public boundary (sklearn's ``_validate_data`` idea)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def as_matrix(X: Any, name: str = "X", *, n_features: int | None = None) -> NDArray[np.float64]:
    """Return ``X`` as a finite float64 matrix of shape (n_samples, n_features).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, is empty in its second dimension, holds NaN/inf, or has the wrong
        number of columns.
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature column")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, expected {n_features}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_pool(X: Any, name: str = "X_pool", *, n_features: int | None = None) -> NDArray[Any]:
    """Return a pool matrix without copying it when it is already float32/float64.

    Pools can be large (1M x 384 float32), so unlike :func:`as_matrix` this keeps float32 and
    checks finiteness chunk by chunk instead of materialising a float64 copy.
    """
    arr = np.asarray(X)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, expected {n_features}")
    step = 65536
    for start in range(0, arr.shape[0], step):
        if not np.all(np.isfinite(arr[start : start + step])):
            raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_rng(rng: Any) -> np.random.Generator:
    """Accept a Generator or an int seed (public boundary only); never the global state."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}"
    )
