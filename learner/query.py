"""Query selection: which pool items to label next (docs/learner.md, "Queries").

Labeling x adds the cut f(x; theta) = 0 (for either label: the two labels give the same
hyperplane with opposite signs). The paper's rule queries the item whose cut passes closest to
the centre c, so that either answer removes a large share of the version space.

Scores (lower = more informative):

- ``distance`` (default): the Euclidean distance from c to the cut hyperplane,

      |f(x; c)| / ||a(x)||,    ||a(x)|| = ||x|| sqrt(2 |D(x)|)

  where a(x) = (D_i(x) x, -D_i(x) x)_i is the cut's normal in theta-space and |D(x)| the
  number of active gates. Normalising makes items with many active gates (whose f is larger
  for the same angular distance) comparable with the rest.
- ``margin``: |f(x; c)| unnormalised.

Multi-class uses the cut between the two top-scoring classes, f_(1) - f_(2), whose normal has
norm ||x|| sqrt(4 |D(x)|). Items with no active gate get +inf: f(x) = 0 for every network, so
their label cuts nothing. Regression has no label-free cut; :func:`score_by_samples` scores
items by the spread of networks sampled around the centre instead.

The whole pool is scored with matrix products in chunks (memory O(chunk * d)), in float32.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learner._validation import as_pool
from learner.config import Task
from learner.features import POOL_CHUNK, FeatureMap, Gates
from learner.lift import network_layers


class QueryStrategy(enum.Enum):
    DISTANCE = "distance"
    MARGIN = "margin"


class PoolExhaustedError(LookupError):
    """No selectable item is left in the pool."""


@dataclass(frozen=True)
class QueryResult:
    """Selected items, most informative first.

    Attributes
    ----------
    indices : ndarray of intp, shape (k,)
        Distinct pool indices.
    scores : ndarray of float32, shape (k,)
        Their scores (lower = more informative).
    """

    indices: NDArray[np.intp]
    scores: NDArray[np.float32]


def score_pool(
    E_pool: Any,
    feature_map: FeatureMap,
    gates: Gates,
    theta: NDArray[np.float64],
    task: Task,
    *,
    strategy: QueryStrategy | str = QueryStrategy.DISTANCE,
    chunk: int = POOL_CHUNK,
) -> NDArray[np.float32]:
    """Score every pool item (see module docstring).

    Parameters
    ----------
    E_pool : ndarray of shape (n_pool, n_raw)
        Raw embeddings (float32 is kept as is; no copy of the pool is made).
    theta : ndarray of shape (n_outputs, 2, n_gates, n_features)
        The centre.
    chunk : int
        Rows per chunk. Peak extra memory is about chunk * (n_features + 3 n_gates n_outputs)
        floats plus the (n_pool,) result.

    Returns
    -------
    ndarray of float32, shape (n_pool,)
    """
    if task is Task.REGRESSION:
        raise ValueError("regression has no label-free cut; use score_by_samples")
    strategy = QueryStrategy(strategy)
    E_pool = as_pool(E_pool, "E_pool", n_features=feature_map.n_raw)
    K, _, P, d = theta.shape
    wd = (theta[:, 0] - theta[:, 1]).reshape(K * P, d).T.astype(np.float32)  # (d, K P)
    out = np.empty(E_pool.shape[0], dtype=np.float32)
    layers: list[NDArray[Any]] = []
    if gates.upper:
        # Deeper networks: the served network g (eq. D4) equals f only where an item's
        # pattern rows hold. Where g and f decide differently, the centre violates a row of
        # the item whatever its label, so labeling it cuts the centre off: distance 0.
        hidden, output = network_layers(theta, gates.sizes)
        layers = [W.astype(np.float32) for W in (*hidden, output)]
    for start in range(0, E_pool.shape[0], chunk):
        X = feature_map.transform(E_pool[start : start + chunk], dtype=np.float32)
        D = gates.output_coef(X, np.float32)  # (n, P): D(x), or c(x) of eq. D1 deeper
        f = np.einsum("nkp,np->nk", (X @ wd).reshape(X.shape[0], K, P), D)  # (n, K)
        if K == 1:
            margin = np.abs(f[:, 0])
            width = 2.0
        else:
            top2 = np.partition(f, K - 2, axis=1)[:, K - 2 :]
            margin = top2[:, 1] - top2[:, 0]
            width = 4.0
        n_active = (D * D).sum(axis=1)  # gates with c_g(x) != 0 (each is +-1)
        if strategy is QueryStrategy.DISTANCE:
            norm = np.linalg.norm(X, axis=1) * np.sqrt(width * n_active)
            with np.errstate(divide="ignore", invalid="ignore"):
                score = margin / norm
        else:
            score = margin
        if layers:
            h = X
            for W in layers[:-1]:
                h = np.maximum(h @ W.T, 0.0)
            g = h @ layers[-1]  # (n, K)
            if K == 1:
                split = (f[:, 0] > 0) != (g[:, 0] > 0)
            else:
                split = np.argmax(f, axis=1) != np.argmax(g, axis=1)
            score = np.where(split, 0.0, score)
        # No active gate, or an all-zero feature vector (possible without a bias column):
        # f(x) = 0 for every network, so its label cuts nothing.
        unlearnable = (n_active == 0) | ~np.isfinite(score)
        out[start : start + chunk] = np.where(unlearnable, np.inf, score)
    return out


def score_by_samples(predictions: NDArray[Any]) -> NDArray[np.float32]:
    """Regression score from sampled networks: minus the spread (max - min) of predictions.

    Parameters
    ----------
    predictions : ndarray of shape (n_samples, n_pool)

    Returns
    -------
    ndarray of float32, shape (n_pool,)  (lower = networks disagree more)
    """
    spread = predictions.max(axis=0) - predictions.min(axis=0)
    return (-spread).astype(np.float32)


def select_batch(
    scores: NDArray[Any],
    k: int,
    rng: np.random.Generator,
    *,
    exclude: NDArray[np.bool_] | None = None,
    features: Any = None,
    diversity: float = 1.0,
    pool_factor: int = 10,
    explore: float = 0.0,
) -> QueryResult:
    """Pick k distinct items with low scores that are unlike each other.

    Candidates are the ``max(pool_factor * k, 50)`` lowest-scoring selectable items (ties
    broken at random by ``rng``). The first pick is the best candidate; each next pick
    minimises

        rank(x) / n_candidates + diversity * max_{s picked} cos(x, s)^+

    so concurrent annotators get informative items that do not cut the same region twice.
    ``diversity = 0`` (or no ``features``) is plain top-k. With ``explore`` > 0, a share
    ``explore * k`` of the batch is instead drawn uniformly from the other selectable
    items (an exploration share: labels away from the decision boundary, which uncertainty
    sampling alone never asks for; their scores are reported as they are). A fractional
    share is rounded up with probability equal to its fraction.

    Parameters
    ----------
    scores : ndarray of shape (n_pool,)
    k : int
    rng : numpy.random.Generator
    exclude : ndarray of bool, shape (n_pool,), optional
        Items that may not be chosen (labeled, leased, skipped).
    features : callable or ndarray, optional
        Either an (n_pool, d) array or a function mapping an index array to feature rows.

    Raises
    ------
    PoolExhaustedError
        When no selectable item with a finite score is left.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not diversity >= 0:
        raise ValueError(f"diversity must be >= 0, got {diversity}")
    if not 0 <= explore <= 1:
        raise ValueError(f"explore must be in [0, 1], got {explore}")
    scores = np.asarray(scores)
    ok = np.isfinite(scores)
    if exclude is not None:
        mask = np.asarray(exclude)
        if mask.shape != scores.shape:
            raise ValueError(
                f"exclude must be a boolean mask of shape {scores.shape}, got {mask.shape}"
            )
        ok &= ~mask.astype(bool)
    available = np.flatnonzero(ok)
    if available.size == 0:
        raise PoolExhaustedError("no selectable pool item is left")
    k = min(k, available.size)
    # Stochastic rounding: k = 1 with explore = 0.2 explores on one query in five.
    whole = int(explore * k)
    n_random = whole + int(explore * k - whole > 0 and rng.random() < explore * k - whole)
    if n_random:
        informed = (
            select_batch(
                scores,
                k - n_random,
                rng,
                exclude=exclude,
                features=features,
                diversity=diversity,
                pool_factor=pool_factor,
            ).indices
            if k > n_random
            else np.zeros(0, dtype=np.intp)
        )
        rest = np.setdiff1d(available, informed)
        drawn = rng.choice(rest, n_random, replace=False)
        chosen = np.concatenate([informed, drawn]).astype(np.intp)
        return QueryResult(chosen, scores[chosen].astype(np.float32))
    n_cand = min(available.size, max(pool_factor * k, 50))
    # Random tie-breaking: shuffle first, then a stable partial sort.
    shuffled = available[rng.permutation(available.size)]
    cand = shuffled[_stable_smallest(scores[shuffled], n_cand)]
    if k == 1 or diversity == 0 or features is None:
        chosen = cand[:k]
        return QueryResult(chosen.astype(np.intp), scores[chosen].astype(np.float32))
    feats = features(cand) if callable(features) else np.asarray(features)[cand]
    feats = np.asarray(feats, dtype=np.float64)
    norms = np.linalg.norm(feats, axis=1)
    unit = feats / np.where(norms > 0, norms, 1.0)[:, None]
    rank = np.arange(n_cand) / n_cand
    max_sim = np.zeros(n_cand)
    taken = np.zeros(n_cand, dtype=bool)
    picks: list[int] = []
    for _ in range(k):
        utility = rank + diversity * max_sim
        utility[taken] = np.inf
        j = int(np.argmin(utility))
        picks.append(j)
        taken[j] = True
        max_sim = np.maximum(max_sim, np.clip(unit @ unit[j], 0.0, None))
    chosen = cand[np.array(picks)]
    return QueryResult(chosen.astype(np.intp), scores[chosen].astype(np.float32))


def _stable_smallest(values: NDArray[Any], n: int) -> NDArray[np.intp]:
    """``np.argsort(values, kind="stable")[:n]`` without sorting all of ``values``.

    The n smallest are found by a partition (linear time); only they are sorted, equal
    values in their original order, so the result is the same as the full stable sort's.

    Parameters
    ----------
    values : ndarray of shape (m,)
        No NaN.
    n : int
        How many, 1 <= n <= m.

    Returns
    -------
    ndarray of intp, shape (n,)
        Positions in ``values``, smallest value first.
    """
    if n >= values.size:
        return np.argsort(values, kind="stable")
    kth = np.partition(values, n - 1)[n - 1]
    below = np.flatnonzero(values < kth)
    ties = np.flatnonzero(values == kth)[: n - below.size]
    keep = np.sort(np.concatenate([below, ties]))  # original order, for stable ties
    return keep[np.argsort(values[keep], kind="stable")]
