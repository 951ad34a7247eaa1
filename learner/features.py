"""Feature map and gates: everything that turns a raw embedding into gate patterns.

An embedding e in R^D is mapped to x = [proj(e), 1] in R^d (docs/learner.md, "Model"; the
constant 1 is the bias), where proj is the identity or a linear map fitted on the pool. The P gates
h_1..h_P in R^d are drawn once per campaign and stored; the gate pattern of x is
D_i(x) = 1[h_i^T x >= 0]. Deeper networks also store the upper layers of the random network
whose patterns gate them (:mod:`learner.lift`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from learner._validation import as_pool
from learner.config import GateInit, LearnerConfig, Projection
from learner.lift import forward_bits, lifted_output, n_lifted_gates

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
    """The stored gates: the first layer's P_1 vectors and, at depth >= 3, the weights of the
    upper layers of the random network that gives their patterns (:mod:`learner.lift`).

    Attributes
    ----------
    weights : ndarray of shape (n_first, n_features)
        Row j is h_j; D^(1)_j(x) = 1[h_j^T x >= 0].
    upper : tuple of ndarray, shapes (P_k, P_{k-1}) for k = 2..L-1
        Empty at depth 2.
    """

    weights: NDArray[np.float64]
    upper: tuple[NDArray[np.float64], ...] = ()

    @property
    def depth(self) -> int:
        return 2 + len(self.upper)

    @property
    def sizes(self) -> tuple[int, ...]:
        """(P_1, ..., P_{L-1})."""
        return (int(self.weights.shape[0]), *(int(W.shape[0]) for W in self.upper))

    @property
    def n_gates(self) -> int:
        """Lifted gates G = P_1 prod_k 2 P_k (P at depth 2): blocks u_g, v_g per output."""
        return n_lifted_gates(self.sizes)

    def patterns(self, X: NDArray[Any]) -> NDArray[np.bool_]:
        """First-layer gate pattern bits D^(1)(x).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Mapped features (see :meth:`FeatureMap.transform`).

        Returns
        -------
        ndarray of bool, shape (n_samples, n_first)
        """
        return pattern_bits(X, self.weights)

    def layer_bits(self, X: NDArray[Any]) -> tuple[NDArray[np.bool_], ...]:
        """Pattern bits of every hidden layer (eq. D0), shapes (n, P_1), ..., (n, P_{L-1})."""
        return forward_bits(X, self.weights, self.upper)

    def output_coef(self, X: NDArray[Any], dtype: DTypeLike = np.float64) -> NDArray[Any]:
        """c_g(x) of eq. D1, shape (n_samples, n_gates): f(x) = sum_g c_g x^T (u_g - v_g).

        At depth 2 this is D(x) as 0/1 (computed with a BLAS product in ``dtype``, as pool
        scoring always did); deeper, the products of the layers' bits with their signs.
        """
        if not self.upper:
            H = self.weights.T.astype(dtype)
            return np.asarray((np.asarray(X, dtype=dtype) @ H) >= 0).astype(dtype)
        return lifted_output(self.layer_bits(X)).astype(dtype)


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
    Gates with weights of shape (P_1, n_features) and, at depth >= 3, Gaussian upper weights
    of shapes (P_k, P_{k-1}) (drawn after the first layer, so depth 2 draws what it always did).
    At depth >= 3 with a bias feature, unit 0 of every hidden layer is always on (see below).
    """
    first = _first_layer(config, feature_map, rng, E_pool)
    sizes = config.layer_gates
    upper = tuple(rng.standard_normal((sizes[k], sizes[k - 1])) for k in range(1, len(sizes)))
    if upper and feature_map.bias:
        # The bias path: unit 0 of every hidden layer is always on (the first layer's gate is
        # the constant feature, each upper unit 0 copies the one below), so every point has
        # an active path and f(x) is never 0 for every network; column 0 of each upper layer
        # is then a random bias of its units.
        first[0] = 0.0
        first[0, -1] = 1.0
        for W in upper:
            W[0] = 0.0
            W[0, 0] = 1.0
    return Gates(weights=first, upper=upper)


def _first_layer(
    config: LearnerConfig,
    feature_map: FeatureMap,
    rng: np.random.Generator,
    E_pool: NDArray[Any] | None,
) -> NDArray[np.float64]:
    d = feature_map.n_features
    P = config.layer_gates[0]
    if config.gate_init is GateInit.GAUSSIAN:
        return rng.standard_normal((P, d))
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
    return np.concatenate([normals, offsets[:, None]], axis=1)
