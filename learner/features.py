"""Feature map and gates: everything that turns a raw embedding into gate patterns.

An embedding e in R^D is mapped to x = [proj(e), 1] in R^d (DESIGN §2: "append a constant 1
for a bias"), where proj is the identity or a linear map fitted on the pool. The P gates
h_1..h_P in R^d are drawn once per campaign and stored; the gate pattern of x is
D_i(x) = 1[h_i^T x >= 0].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from learner._validation import as_pool
from learner.config import GateInit, LearnerConfig, Projection

#: Rows per chunk when a whole pool is streamed through the feature map.
POOL_CHUNK = 32768


@dataclass(frozen=True, eq=False)
class FeatureMap:
    """Affine projection plus optional bias column.

    Attributes
    ----------
    mean : ndarray of shape (n_raw,)
        Subtracted before projecting (zeros for a random projection or none).
    components : ndarray of shape (n_raw, n_proj) or None
        Projection matrix; None means identity.
    bias : bool
        Whether a constant 1 is appended.
    """

    mean: NDArray[np.float64]
    components: NDArray[np.float64] | None
    bias: bool

    @property
    def n_raw(self) -> int:
        """Dimension D of the raw embeddings."""
        return int(self.mean.shape[0])

    @property
    def n_features(self) -> int:
        """Dimension d of the mapped features (bias included)."""
        base = self.n_raw if self.components is None else int(self.components.shape[1])
        return base + int(self.bias)

    def transform(self, E: NDArray[Any], dtype: DTypeLike = np.float64) -> NDArray[Any]:
        """Map raw embeddings to features.

        Parameters
        ----------
        E : ndarray of shape (n_samples, n_raw)
        dtype : numpy dtype of the result (float32 for pool scoring, float64 for cuts).

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        Z: NDArray[Any] = np.asarray(E, dtype=dtype)
        if self.components is not None:
            Z = (Z - self.mean.astype(dtype)) @ self.components.astype(dtype)
        if self.bias:
            Z = np.concatenate([Z, np.ones((Z.shape[0], 1), dtype=dtype)], axis=1)
        return Z


def fit_feature_map(
    config: LearnerConfig, E_pool: NDArray[Any], rng: np.random.Generator
) -> FeatureMap:
    """Fit the configured projection on the pool.

    PCA accumulates the covariance in chunks, so a 1M x 384 float32 pool needs only
    O(D^2) extra memory.

    Parameters
    ----------
    config : LearnerConfig
    E_pool : ndarray of shape (n_pool, n_raw)
    rng : numpy.random.Generator
        Draws the random projection (unused otherwise).
    """
    E_pool = as_pool(E_pool, "E_pool")
    n, D = E_pool.shape
    if config.projection is Projection.NONE:
        return FeatureMap(mean=np.zeros(D), components=None, bias=config.bias)
    k = int(config.n_components or 0)
    if k > D:
        raise ValueError(f"n_components={k} exceeds the embedding dimension {D}")
    if config.projection is Projection.RANDOM:
        # Johnson-Lindenstrauss map: entries N(0, 1/k).
        comps = rng.standard_normal((D, k)) / np.sqrt(k)
        return FeatureMap(mean=np.zeros(D), components=comps, bias=config.bias)
    if n < 2:
        raise ValueError("PCA needs at least 2 pool items")
    total = np.zeros(D)
    gram = np.zeros((D, D))
    for start in range(0, n, POOL_CHUNK):
        block = np.asarray(E_pool[start : start + POOL_CHUNK], dtype=np.float64)
        total += block.sum(axis=0)
        gram += block.T @ block
    mean = total / n
    cov = (gram - n * np.outer(mean, mean)) / (n - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:k]
    comps = evecs[:, order]
    # Fix the sign of each component (largest entry positive) so fits are reproducible.
    signs = np.sign(comps[np.argmax(np.abs(comps), axis=0), np.arange(k)])
    comps = comps * np.where(signs == 0, 1.0, signs)
    return FeatureMap(mean=mean, components=comps, bias=config.bias)


@dataclass(frozen=True, eq=False)
class Gates:
    """The P stored gate vectors.

    Attributes
    ----------
    weights : ndarray of shape (n_gates, n_features)
        Row i is h_i; D_i(x) = 1[h_i^T x >= 0].
    """

    weights: NDArray[np.float64]

    @property
    def n_gates(self) -> int:
        return int(self.weights.shape[0])

    def patterns(self, X: NDArray[Any]) -> NDArray[np.bool_]:
        """Gate pattern bits D(x).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Mapped features (see :meth:`FeatureMap.transform`).

        Returns
        -------
        ndarray of bool, shape (n_samples, n_gates)
        """
        return pattern_bits(X, self.weights)


def pattern_bits(X: NDArray[Any], H: NDArray[np.float64]) -> NDArray[np.bool_]:
    """D = 1[X H^T >= 0], shape (n_samples, n_gates), computed row by row.

    A plain einsum (no BLAS) sums each dot product in the same order whatever the batch size,
    so a point gets the same pattern bits when labeled alone, in a batch, or when a state is
    rebuilt: the polytope never depends on how labels were grouped.
    """
    X64 = np.asarray(X, dtype=np.float64)
    return np.asarray(np.einsum("nd,pd->np", X64, H, optimize=False) >= 0)


def sample_gates(
    config: LearnerConfig,
    feature_map: FeatureMap,
    rng: np.random.Generator,
    E_pool: NDArray[Any] | None = None,
) -> Gates:
    """Draw the P gates from ``rng``.

    Parameters
    ----------
    config : LearnerConfig
    feature_map : FeatureMap
    rng : numpy.random.Generator
    E_pool : ndarray of shape (n_pool, n_raw), optional
        Needed for ``GateInit.DATA`` (each gate passes through a random pool point).

    Returns
    -------
    Gates with weights of shape (n_gates, n_features)
    """
    d = feature_map.n_features
    P = config.n_gates
    if config.gate_init is GateInit.GAUSSIAN:
        return Gates(weights=rng.standard_normal((P, d)))
    if not feature_map.bias:
        raise ValueError("gate_init='data' needs bias=True (a hyperplane through a point)")
    if E_pool is None or len(E_pool) == 0:
        raise ValueError("gate_init='data' needs the pool")
    idx = rng.integers(0, len(E_pool), size=P)
    anchors = feature_map.transform(np.asarray(E_pool)[idx])[:, :-1]
    normals = rng.standard_normal((P, d - 1))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    # h = [n, -n^T p + delta]: the hyperplane passes next to the anchor p, shifted by a tiny
    # random delta so that no pool item lies exactly on a gate (its pattern bit would then
    # depend on rounding).
    spread = float(np.mean(np.linalg.norm(anchors, axis=1))) or 1.0
    shift = rng.uniform(-1e-3, 1e-3, size=P) * spread
    offsets = -np.einsum("ij,ij->i", normals, anchors) + shift
    return Gates(weights=np.concatenate([normals, offsets[:, None]], axis=1))
