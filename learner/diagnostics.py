"""Convergence diagnostics that are measured, not promised (DESIGN §2, last paragraphs).

- ``n_cuts``: half-spaces of the active labels (label cuts plus pattern rows).
- ``log_volume``: -1/2 log det H at the centre, H the barrier Hessian in the full space R^n
  (n = 2 d P K'). The Dikin ellipsoid {theta : (theta - c)^T H (theta - c) <= 1} lies inside
  the version space and has volume proportional to det(H)^{-1/2}, so this is a log-volume
  proxy (up to an additive constant that is the same every round).
- ``disagreement``: share of (a random sample of) pool items on which networks drawn uniformly
  from that Dikin ellipsoid do not all predict the same label (regression: their predictions
  spread over more than 2 epsilon). A campaign can stop when it falls below a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learner._barrier import Array, Barrier, HessianFactor, span_basis
from learner.config import Task
from learner.features import FeatureMap, Gates
from learner.network import gated_decision
from learner.version_space import VersionSpace


@dataclass(frozen=True)
class Diagnostics:
    """Measured state of one campaign's version space.

    Attributes
    ----------
    n_labels : int
    n_active : int
        Labels whose constraints are in force (the rest were excluded as conflicts).
    n_cuts : int
        Half-spaces of the active labels.
    log_volume : float
        -1/2 log det of the barrier Hessian at the centre (full space).
    disagreement : float
        Share in [0, 1] of evaluated pool items on which sampled networks disagree.
    n_samples : int
    n_eval : int
        Pool items evaluated.
    threshold : float
    stop : bool
        ``disagreement <= threshold``.
    """

    n_labels: int
    n_active: int
    n_cuts: int
    log_volume: float
    disagreement: float
    n_samples: int
    n_eval: int
    threshold: float
    stop: bool


class _CentreGeometry:
    """Barrier Hessian at a centre, in full space (span part factorized, complement = c I)."""

    def __init__(self, vs: VersionSpace, x: Array, active: NDArray[np.bool_]) -> None:
        self.vs = vs
        self.x = x
        self.n_dim = int(x.size)
        sub = vs.subset(np.flatnonzero(active))
        self.sub = sub
        if sub.n_labels == 0:
            self.bar: Barrier | None = None
            self.c = 2.0 / (vs.radius**2 - float(np.sum(x * x)))
            self.factor: HessianFactor | None = None
            return
        bar = Barrier(sub, span_basis(sub.X))
        theta = bar.to_reduced(x)
        sl = bar.slacks(theta)
        if not sl.positive():
            raise ValueError("x is not strictly inside the version space of the active labels")
        self.bar, self.theta, self.sl = bar, theta, sl
        self.factor = bar.factorize(theta, sl)
        self.c = 2.0 / sl.sb

    def logdet(self) -> float:
        if self.factor is None or self.bar is None:
            # Only the ball: H = c I + (4 / s_b^2) x x^T.
            sb = 2.0 / self.c
            return self.n_dim * math.log(self.c) + math.log1p(
                (4.0 / sb**2) * float(np.sum(self.x * self.x)) / self.c
            )
        n_complement = self.n_dim - self.theta.size
        return self.factor.logdet() + n_complement * math.log(self.c)

    def sample(self, rng: np.random.Generator, n: int, radius: float) -> Array:
        """n points drawn uniformly from the Dikin ellipsoid of the given radius."""
        shape = self.x.shape
        if self.factor is None or self.bar is None:
            steps = rng.standard_normal((n, *shape))
            hn2 = self.c * np.sum(steps.reshape(n, -1) ** 2, axis=1)
        else:
            xi = self.factor.sample(rng, n)
            hv = self.bar.hess_vec(self.theta, self.sl, xi)
            hn2 = np.sum((xi * hv).reshape(n, -1), axis=1)
            steps = self.bar.to_full(xi)
            if self.bar.basis is not None:
                z = rng.standard_normal((n, *shape))
                z -= (z @ self.bar.basis) @ self.bar.basis.T
                steps = steps + z
                hn2 = hn2 + self.c * np.sum(z.reshape(n, -1) ** 2, axis=1)
        # Uniform in the ellipsoid: direction from the Gaussian, radius ~ U^(1/n).
        r = radius * rng.random(n) ** (1.0 / self.n_dim)
        scale = r / np.sqrt(np.maximum(hn2, np.finfo(float).tiny))
        return self.x[None] + scale.reshape(n, *([1] * len(shape))) * steps


def log_volume(vs: VersionSpace, x: Array, active: NDArray[np.bool_] | None = None) -> float:
    """-1/2 log det H at ``x`` (full space).

    Parameters
    ----------
    vs : VersionSpace
    x : ndarray of shape (n_outputs, 2, n_gates, n_features)
        A strictly feasible point, normally the centre.
    active : ndarray of bool, shape (n_labels,), optional
    """
    mask = np.ones(vs.n_labels, dtype=bool) if active is None else active
    return -0.5 * _CentreGeometry(vs, x, mask).logdet()


def sample_networks(
    vs: VersionSpace,
    x: Array,
    rng: np.random.Generator,
    n: int,
    *,
    active: NDArray[np.bool_] | None = None,
    radius: float = 1.0,
) -> Array:
    """Networks drawn uniformly from the Dikin ellipsoid of the given radius around ``x``.

    With ``radius <= 1`` every sample lies in the version space.

    Returns
    -------
    ndarray of shape (n, n_outputs, 2, n_gates, n_features)
    """
    mask = np.ones(vs.n_labels, dtype=bool) if active is None else active
    return _CentreGeometry(vs, x, mask).sample(rng, n, radius)


def disagreement(
    samples: Array,
    E_eval: Any,
    feature_map: FeatureMap,
    gates: Gates,
    task: Task,
    epsilon: float,
) -> float:
    """Share of evaluated items on which the sampled networks disagree (module docstring)."""
    preds = np.stack([gated_decision(E_eval, feature_map, gates, s) for s in samples])
    if task is Task.REGRESSION:
        spread = preds[..., 0].max(axis=0) - preds[..., 0].min(axis=0)
        return float(np.mean(spread > 2.0 * epsilon))
    labels = preds[..., 0] > 0 if task is Task.BINARY else np.argmax(preds, axis=2)
    return float(np.mean(np.any(labels != labels[:1], axis=0)))


def diagnose(
    vs: VersionSpace,
    x: Array,
    active: NDArray[np.bool_],
    E_pool: Any,
    feature_map: FeatureMap,
    gates: Gates,
    rng: np.random.Generator,
    *,
    n_samples: int = 16,
    max_eval: int = 5000,
    threshold: float = 0.02,
    radius: float = 1.0,
) -> Diagnostics:
    """All diagnostics at the centre ``x`` (module docstring).

    Parameters
    ----------
    vs, x, active : version space, its centre and the active-label mask.
    E_pool : ndarray of shape (n_pool, n_raw)
        Pool embeddings; at most ``max_eval`` of them (drawn by ``rng``) are evaluated.
    rng : numpy.random.Generator
    n_samples : int
        Networks sampled from the Dikin ellipsoid.
    threshold : float
        Stop rule: ``stop`` is true when the disagreement is at most this.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    geo = _CentreGeometry(vs, x, active)
    n_pool = len(E_pool)
    idx = (
        rng.choice(n_pool, size=max_eval, replace=False) if n_pool > max_eval else np.arange(n_pool)
    )
    E_eval = np.asarray(E_pool)[np.sort(idx)]
    samples = geo.sample(rng, n_samples, radius)
    dis = disagreement(samples, E_eval, feature_map, gates, vs.task, vs.epsilon)
    sub = geo.sub
    return Diagnostics(
        n_labels=vs.n_labels,
        n_active=sub.n_labels,
        n_cuts=sub.n_rows,
        log_volume=-0.5 * geo.logdet(),
        disagreement=dis,
        n_samples=n_samples,
        n_eval=int(E_eval.shape[0]),
        threshold=threshold,
        stop=dis <= threshold,
    )
