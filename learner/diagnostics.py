"""Convergence diagnostics that are measured, not promised (docs/learner.md, "Diagnostics").

- ``n_cuts``: half-spaces of the active labels (label cuts plus pattern rows).
- ``log_volume``: -1/2 log det H at the centre, H the barrier Hessian in the full space R^n
  (n = 2 d P K'). The Dikin ellipsoid {theta : (theta - c)^T H (theta - c) <= 1} lies inside
  the version space and has volume proportional to det(H)^{-1/2}, so this is a log-volume
  proxy (up to an additive constant that is the same every round).
- ``disagreement``: share of (a random sample of) pool items on which networks sampled from the
  version space do not all predict the same label (regression: their predictions spread over
  more than 2 epsilon). A campaign can stop when it falls below a threshold.

Sampling. The unit Dikin ellipsoid at the analytic centre lies inside the polytope, but the
polytope reaches out to m times that radius (m = number of half-spaces), so samples from the
ellipsoid alone see almost no disagreement. The default sampler is therefore hit-and-run
(Smith 1984) with Dikin-shaped directions: each chain starts at the centre, draws a direction
from N(0, H^{-1}), and jumps to a uniform point of the chord the direction cuts through the
polytope (linear rows and the ball). ``method="dikin"`` samples the ellipsoid instead.
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

    def directions(self, rng: np.random.Generator, n: int) -> tuple[Array, Array]:
        """n directions from N(0, H^{-1}) in full space, and their squared H-norms."""
        shape = self.x.shape
        if self.factor is None or self.bar is None:
            steps = rng.standard_normal((n, *shape)) / math.sqrt(self.c)
            return steps, self.c * np.sum(steps.reshape(n, -1) ** 2, axis=1)
        xi = self.factor.sample(rng, n)
        hv = self.bar.hess_vec(self.theta, self.sl, xi)
        hn2 = np.sum((xi * hv).reshape(n, -1), axis=1)
        steps = self.bar.to_full(xi)
        if self.bar.basis is not None:
            z = rng.standard_normal((n, *shape)) / math.sqrt(self.c)
            z -= (z @ self.bar.basis) @ self.bar.basis.T
            steps = steps + z
            hn2 = hn2 + self.c * np.sum(z.reshape(n, -1) ** 2, axis=1)
        return steps, hn2

    def hit_and_run(self, rng: np.random.Generator, n: int, steps: int) -> Array:
        """n chains of hit-and-run from the centre, ``steps`` moves each (module docstring)."""
        points = np.broadcast_to(self.x, (n, *self.x.shape)).copy()
        R2 = self.vs.radius**2
        if self.bar is not None:
            p = np.broadcast_to(self.sl.p, (n, *self.sl.p.shape)).copy()
            t = np.broadcast_to(self.sl.t, (n, *self.sl.t.shape)).copy()
        for _ in range(steps):
            d, _ = self.directions(rng, n)
            lo = np.full(n, -np.inf)
            hi = np.full(n, np.inf)
            if self.bar is not None:
                d_red = self.bar.to_reduced(d)
                dz = np.stack([self.bar.z(v) for v in d_red])
                dp = self.bar.S[None, :, None, None, :] * dz
                dt = np.stack([self.bar.label_values(v) for v in dz])
                for s, ds in ((p, dp), (t, dt)):
                    ratio = -s.reshape(n, -1) / np.where(ds == 0, np.nan, ds).reshape(n, -1)
                    neg = ds.reshape(n, -1) < 0
                    pos = ds.reshape(n, -1) > 0
                    hi = np.minimum(hi, np.nanmin(np.where(neg, ratio, np.inf), axis=1))
                    lo = np.maximum(lo, np.nanmax(np.where(pos, ratio, -np.inf), axis=1))
            # Ball: ||x + a d||^2 < R^2, a quadratic in a.
            flat_x = points.reshape(n, -1)
            flat_d = d.reshape(n, -1)
            dd = np.sum(flat_d**2, axis=1)
            xd = np.sum(flat_x * flat_d, axis=1)
            xx = np.sum(flat_x**2, axis=1)
            root = np.sqrt(np.maximum(xd**2 - dd * (xx - R2), 0.0))
            hi = np.minimum(hi, (-xd + root) / dd)
            lo = np.maximum(lo, (-xd - root) / dd)
            # A uniform point of the open chord, kept off its ends by a relative 1e-9.
            a = lo + (hi - lo) * (1e-9 + (1 - 2e-9) * rng.random(n))
            a = np.where(hi > lo, a, 0.0)
            points = points + a.reshape(n, *([1] * self.x.ndim)) * d
            if self.bar is not None:
                p = p + a.reshape(n, 1, 1, 1, 1) * dp
                t = t + a.reshape(n, 1) * dt
        return points

    def sample(self, rng: np.random.Generator, n: int, radius: float) -> Array:
        """n points drawn uniformly from the Dikin ellipsoid of the given radius."""
        steps, hn2 = self.directions(rng, n)
        shape = self.x.shape
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
    method: str = "hit-and-run",
    steps: int = 50,
    radius: float = 1.0,
) -> Array:
    """Networks sampled from the version space around the centre ``x`` (module docstring).

    Parameters
    ----------
    method : {"hit-and-run", "dikin"}
        Hit-and-run chains of ``steps`` moves from ``x``, or uniform points of the Dikin
        ellipsoid of the given ``radius`` (inside the version space when ``radius <= 1``).

    Returns
    -------
    ndarray of shape (n, n_outputs, 2, n_gates, n_features); every sample is strictly inside.
    """
    mask = np.ones(vs.n_labels, dtype=bool) if active is None else active
    geo = _CentreGeometry(vs, x, mask)
    if method == "hit-and-run":
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return geo.hit_and_run(rng, n, steps)
    if method == "dikin":
        return geo.sample(rng, n, radius)
    raise ValueError(f"method must be 'hit-and-run' or 'dikin', got {method!r}")


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
    method: str = "hit-and-run",
    steps: int = 50,
) -> Diagnostics:
    """All diagnostics at the centre ``x`` (module docstring).

    Parameters
    ----------
    vs, x, active : version space, its centre and the active-label mask.
    E_pool : ndarray of shape (n_pool, n_raw)
        Pool embeddings; at most ``max_eval`` of them (drawn by ``rng``) are evaluated.
    rng : numpy.random.Generator
    n_samples : int
        Networks sampled from the version space (see :func:`sample_networks`).
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
    samples = (
        geo.hit_and_run(rng, n_samples, steps)
        if method == "hit-and-run"
        else geo.sample(rng, n_samples, 1.0)
    )
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
