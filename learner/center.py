"""Analytic centre of the version space by a structured damped-Newton barrier method.

The analytic centre (DESIGN §2, step 1; Zhang, Zhang & Pilanci 2025, Definition "Analytic
Center") is

    c = argmin  -sum_k log(slack_k(theta)) - log(R^2 - ||theta||^2)              (eq. AC)

over the half-spaces of every active label (see :mod:`learner.version_space`).

Algorithm
---------
1. Labels that no network of this class can satisfy alone (all gates off, so f(x) = 0) and
   exact duplicates with contradicting labels are set aside as conflicts up front.
2. Warm start: a Dikin-recovery step tries to repair the rows the previous centre violates
   (usually the new labels') inside the ellipsoid of the other rows. Otherwise phase I
   (Boyd & Vandenberghe §11.4.1) gives the violated rows a shared offset tau and the barrier
   method minimises tau; tau < -margin_tol R proves an interior point. A cold start begins at
   u = v = h (every pattern row holds strictly, f = 0).
3. If phase I certifies that no point keeps a normalised margin above ``margin_tol``, its dual
   weights rank the labels, and a growing-prefix search plus a deletion filter returns a small
   set of labels that cannot all hold. Those are excluded (and reported), and phase I runs
   again on the rest.
4. Phase II: damped Newton on eq. AC from the phase-I point. Each step backtracks (Armijo)
   from the longest step that keeps every row 1% inside, every trial point retracted onto its
   best radius (:func:`_retract`); it stops when lambda^2 / 2 <= tol * max(1, |phi|).
   Directions come from a fresh factorization or from conjugate gradients preconditioned by
   a kept one (an inexact Newton method, see :func:`_direction`).

Every Newton system is solved by :class:`learner._barrier.HessianFactor` (Woodbury with batched
per-block Cholesky), in the span of the labeled points when it is smaller than R^d.
"""

from __future__ import annotations

import enum
import logging
import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learner._barrier import (
    Array,
    Barrier,
    HessianFactor,
    HessianPath,
    Offsets,
    Slacks,
    span_basis,
)
from learner.config import Task
from learner.version_space import VersionSpace

logger = logging.getLogger(__name__)


class CenterStatus(enum.Enum):
    """Outcome of :func:`analytic_center`. Callers branch on it."""

    #: Centre of the polytope of all labels.
    OPTIMAL = "optimal"
    #: Centre of the labels left after excluding the conflict groups named in the result.
    CONFLICTS_EXCLUDED = "conflicts_excluded"
    #: Newton iteration limit reached; ``x`` is the last strictly feasible iterate.
    MAX_ITER = "max_iter"
    #: No interior and no small conflict set could be named; ``x`` is the best point found.
    NO_INTERIOR = "no_interior"
    #: The linear algebra broke down; ``x`` is the last finite iterate.
    NUMERICAL_ERROR = "numerical_error"


@dataclass(frozen=True)
class CenterOptions:
    """Tolerances of the centre solver.

    Parameters
    ----------
    tol : float
        Phase II stops when half the squared Newton decrement, lambda^2 / 2 (an estimate of
        the barrier-objective gap), is at most ``tol * max(1, |phi|)``: a relative gap.
    max_iter : int
        Newton steps allowed in phase II.
    phase1_max_iter : int
        Newton steps allowed in each phase-I run (all barrier rounds together).
    mu : float
        Factor by which phase I increases its barrier parameter between centrings.
    margin_tol : float
        A polytope whose largest normalised margin (distance from theta to the nearest
        half-space divided by R) is below this has "no interior" for our purposes.
    max_conflicts : int
        At most this many conflict groups are named by the search in one call (labels no
        network can express and contradicting duplicates are set aside first, outside this
        budget).
    max_conflict_size : int
        Largest conflict group the search tries to name.
    path : HessianPath
        Label-space or gate-space Woodbury; AUTO picks the cheaper one.
    """

    tol: float = 1e-10
    max_iter: int = 200
    phase1_max_iter: int = 400
    mu: float = 100.0
    margin_tol: float = 1e-5
    max_conflicts: int = 32
    max_conflict_size: int = 64
    path: HessianPath = HessianPath.AUTO

    def __post_init__(self) -> None:
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {self.tol}")
        if self.max_iter < 1 or self.phase1_max_iter < 1:
            raise ValueError("max_iter and phase1_max_iter must be >= 1")
        if not self.mu > 1:
            raise ValueError(f"mu must be > 1, got {self.mu}")
        if not 0 < self.margin_tol < 1:
            raise ValueError(f"margin_tol must be in (0, 1), got {self.margin_tol}")
        if self.max_conflicts < 0 or self.max_conflict_size < 1:
            raise ValueError("max_conflicts must be >= 0 and max_conflict_size >= 1")


@dataclass(frozen=True)
class CenterResult:
    """Result of :func:`analytic_center` (in the style of scipy's ``OptimizeResult``).

    Attributes
    ----------
    x : ndarray of shape (n_outputs, 2, n_gates, n_features)
        The centre theta (u blocks at index 0, v blocks at index 1). Always finite.
    status : CenterStatus
    message : str
        Human-readable outcome, suitable for a UI.
    nit : int
        Newton steps taken in total (phase I included).
    phase1_nit : int
        Newton steps spent in phase I.
    decrement : float
        Newton decrement lambda at the returned point.
    objective : float
        Barrier value (eq. AC) over the active labels at ``x``; inf when no interior exists.
    solver : str
        Which linear-algebra path ran, e.g. ``"newton/label-space/span(r=12)"``.
    conflicts : tuple of tuple of int
        Groups of label indices (into the version space) that cannot all be right; excluded.
    active : ndarray of bool, shape (n_labels,)
        Labels whose constraints the centre satisfies.
    max_violation : float
        Largest normalised violation of an active row at ``x`` (0 when strictly inside).
    n_factorizations : int
        Hessian factorizations computed (the dominant cost).
    n_cg : int
        Conjugate-gradient iterations, each one Hessian-vector product and one solve with a
        kept factorization.
    """

    x: Array
    status: CenterStatus
    message: str
    nit: int
    phase1_nit: int
    decrement: float
    objective: float
    solver: str
    conflicts: tuple[tuple[int, ...], ...]
    active: NDArray[np.bool_]
    max_violation: float
    n_factorizations: int = 0
    n_cg: int = 0

    @property
    def success(self) -> bool:
        """True when ``x`` is the analytic centre of the active labels."""
        return self.status in (CenterStatus.OPTIMAL, CenterStatus.CONFLICTS_EXCLUDED)


# ---------------------------------------------------------------------------- Newton core


@dataclass
class _Objective:
    """phi (eq. AC), or in phase I: t * tau + phi(with offsets) - log(tau_hi - tau)."""

    bar: Barrier
    offsets: Offsets | None = None
    t_coef: float = 0.0
    tau_hi: float = math.inf

    def slacks(self, theta: Array, tau: float) -> Slacks:
        return self.bar.slacks(theta, tau, self.offsets)

    def value(self, tau: float, sl: Slacks) -> float:
        v = Barrier.value(sl)
        if self.offsets is not None:
            gap = self.tau_hi - tau
            v = v + self.t_coef * tau - math.log(gap) if gap > 0 else math.inf
        return v


@dataclass
class _NewtonOutcome:
    theta: Array
    tau: float
    nit: int
    decrement: float
    converged: bool
    failed: str = ""
    stopped_early: bool = False


def _max_step(sl: Slacks, dsl: Slacks, obj: _Objective, tau: float, d_tau: float) -> float:
    """Largest alpha keeping every linear slack positive (the ball is handled by retraction)."""
    alpha = math.inf
    for s, ds in ((sl.p, dsl.p), (sl.t, dsl.t)):
        neg = ds < 0
        if np.any(neg):
            alpha = min(alpha, float(np.min(-s[neg] / ds[neg])))
    if obj.offsets is not None and d_tau > 0:
        alpha = min(alpha, (obj.tau_hi - tau) / d_tau)
    return alpha


def _retract(
    obj: _Objective, theta: Array, tau: float, p_lin: Array, t_lin: Array
) -> tuple[Array, Slacks] | None:
    """Best point on the ray s -> s * theta (s > 0), by exact 1-D minimisation.

    Every slack is affine in s: slack(s) = s a_k + b_k, where b_k is the part that does not
    scale with theta (regression offsets, phase-I offsets omega tau). For homogeneous rows the
    barrier splits into -m log s - log(R^2 - s^2 ||theta||^2) plus a function of the direction
    alone, so damped Newton would creep along the ray by a factor 1 + O(1/sqrt(m)) per step and
    the ball would cut every tangential step short; retracting each trial point onto its best
    radius removes both. ``theta`` may lie outside the ball.

    Returns None when no s keeps every slack positive inside the ball.
    """
    bar = obj.bar
    n2 = float(np.sum(theta * theta))
    R2 = bar.radius**2
    if n2 == 0.0:
        return None
    const_t = bar.offset + (obj.offsets.label * tau if obj.offsets is not None else 0.0)
    const_p = obj.offsets.pattern * tau if obj.offsets is not None else None
    a_p = p_lin if const_p is None else p_lin - const_p
    a_t = t_lin - const_t
    if (const_p is None or not np.any(const_p)) and not np.any(const_t):
        if np.any(a_p <= 0) or np.any(a_t <= 0):
            return None
        m = a_p.size + a_t.size
        # d/ds [-m log s - log(R^2 - s^2 n2)] = -m / s + 2 s n2 / (R^2 - s^2 n2) = 0.
        s_best = math.sqrt(R2 * m / ((m + 2) * n2))
    else:
        # Rows without a constant part contribute -m_h log s in closed form; only the rows
        # with one (phase-I offsets, regression cuts) enter the 1-D solve as arrays.
        ak_all = np.concatenate([a_p.ravel(), a_t])
        bk_all = np.concatenate(
            [
                np.zeros(a_p.size) if const_p is None else const_p.ravel(),
                np.broadcast_to(const_t, a_t.shape),
            ]
        )
        inhom = bk_all != 0
        if np.any(ak_all[~inhom] <= 0):
            return None
        found = _line_minimum(ak_all[inhom], bk_all[inhom], int(np.sum(~inhom)), n2, R2)
        if found is None:
            return None
        s_best = found
    new_theta = theta * s_best
    sl = Slacks(
        p=s_best * a_p + (const_p if const_p is not None else 0.0),
        t=s_best * a_t + const_t,
        sb=R2 - s_best * s_best * n2,
    )
    return (new_theta, sl) if sl.positive() else None


def _line_minimum(ak: Array, bk: Array, m_h: int, n2: float, R2: float) -> float | None:
    """argmin over s of -m_h log s - sum log(s a_k + b_k) - log(R^2 - s^2 n2).

    ``m_h`` counts homogeneous rows (b = 0, a > 0). Safeguarded Newton on the derivative,
    keeping a bracket [lo, hi] of the domain.
    """
    lo, hi = 0.0, math.sqrt(R2 / n2)
    pos, neg = ak > 0, ak < 0
    if np.any(pos):
        lo = max(lo, float(np.max(-bk[pos] / ak[pos])))
    if np.any(neg):
        hi = min(hi, float(np.min(-bk[neg] / ak[neg])))
    zero = ~(pos | neg)
    if np.any(bk[zero] <= 0) or not lo < hi:
        return None
    s = 1.0 if lo < 1.0 < hi else 0.5 * (lo + hi)
    for _ in range(100):
        ratio = ak / (s * ak + bk)
        gap = R2 - s * s * n2
        d1 = -m_h / s - float(np.sum(ratio)) + 2.0 * s * n2 / gap
        d2 = m_h / s**2 + float(ratio @ ratio) + (2.0 * n2 * gap + 4.0 * s * s * n2 * n2) / gap**2
        if d1 > 0:
            hi = s
        else:
            lo = s
        new = s - d1 / d2
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - s) <= 1e-13 * s:
            return new
        s = new
    return s


@dataclass
class _Lagged:
    """A Hessian factorization kept across Newton steps as a CG preconditioner."""

    factor: HessianFactor | None = None
    n_factor: int = 0
    n_cg: int = 0
    #: Refactor at the next step (set when a CG step made poor progress).
    stale: bool = False
    #: Whether the last direction came from a factorization at that very iterate.
    exact: bool = False


#: Conjugate-gradient iterations allowed before the Hessian is refactored at the iterate.
_MAX_CG = 25
#: Below this many unknowns a factorization costs less than CG's Python overhead: always exact.
_SMALL = 1500
#: CG tolerance used to confirm convergence when the last direction was inexact.
_ETA_CONFIRM = 1e-4


def _direction(
    obj: _Objective,
    theta: Array,
    tau: float,
    sl: Slacks,
    g: Array,
    lag: _Lagged,
    path: HessianPath,
    eta: float,
) -> tuple[Array, float, float]:
    """Newton direction (d_theta, d_tau) and squared decrement lambda^2.

    The exact Newton system is solved with a fresh factorization when none is kept; otherwise
    preconditioned CG on the current Hessian (``hess_vec``) with the kept factorization as
    preconditioner solves it to relative residual ``eta`` (an inexact Newton step), and only
    when CG needs more than ``_MAX_CG`` iterations is the Hessian refactored here.
    """
    bar = obj.bar
    bordered = obj.offsets is not None
    h = np.zeros_like(theta)
    g_tau = h_tt = 0.0
    if obj.offsets is not None:
        h, g_tau = bar.offset_gradient(theta, sl, obj.offsets)
        g_tau += obj.t_coef + 1.0 / (obj.tau_hi - tau)
        h_tt = bar.offset_curvature(sl, obj.offsets) + 1.0 / (obj.tau_hi - tau) ** 2

    def precond_solver(fac: HessianFactor, approximate: bool = False) -> Any:
        if not bordered:
            return lambda r_th, r_tau: (fac.solve(r_th, approximate), 0.0)
        y_h = fac.solve(h, approximate)
        schur = h_tt - float(np.sum(h * y_h))
        if not schur > 0:
            schur = h_tt

        def solve(r_th: Array, r_tau: float) -> tuple[Array, float]:
            # Bordered system [H h; h^T h_tt] by Schur complement on the scalar tau.
            y = fac.solve(r_th, approximate)
            z_tau = (r_tau - float(np.sum(h * y))) / schur
            return y - y_h * z_tau, z_tau

        return solve

    hess = bar.hess_operator(theta, sl)

    def matvec(v_th: Array, v_tau: float) -> tuple[Array, float]:
        hv = hess(v_th[None])[0]
        if not bordered:
            return hv, 0.0
        return hv + h * v_tau, float(np.sum(h * v_th)) + h_tt * v_tau

    def exact() -> tuple[Array, float]:
        lag.factor = bar.factorize(theta, sl, path)
        lag.n_factor += 1
        lag.stale = False
        lag.exact = True
        solve = precond_solver(lag.factor)
        x = solve(-g, -g_tau)
        # Iterative refinement against the exact Hessian-vector product: when a few rows have
        # tiny slacks, the Woodbury correction nearly cancels the block-diagonal solve and
        # loses digits; two refinement steps recover them.
        res = _residual(matvec, -g, -g_tau, x)
        for _ in range(2):
            dx = solve(*res)
            cand = (x[0] + dx[0], x[1] + dx[1])
            cand_res = _residual(matvec, -g, -g_tau, cand)
            if _norm2(cand_res) >= _norm2(res):
                break
            x, res = cand, cand_res
        return x

    lag.exact = False
    if lag.factor is None or lag.stale or bar.J * bar.r <= _SMALL:
        d_theta, d_tau = exact()
    else:
        # The preconditioner may solve in float32 (see HessianFactor.solve): CG corrects it.
        solve = precond_solver(lag.factor, approximate=True)

        result = _pcg(
            matvec, solve, -g, -g_tau, eta, _MAX_CG if eta > _ETA_CONFIRM else 3 * _MAX_CG
        )
        if result is None:
            d_theta, d_tau = exact()
        else:
            (d_theta, d_tau), iters = result
            lag.n_cg += iters
    lam2 = -(float(np.sum(g * d_theta)) + g_tau * d_tau)
    return d_theta, d_tau, lam2


def _residual(
    matvec: Any, b_th: Array, b_tau: float, x: tuple[Array, float]
) -> tuple[Array, float]:
    k_th, k_tau = matvec(*x)
    return b_th - k_th, b_tau - k_tau


def _norm2(v: tuple[Array, float]) -> float:
    return float(np.sum(v[0] * v[0])) + v[1] * v[1]


def _fallback_direction(
    obj: _Objective, theta: Array, tau: float, sl: Slacks, g: Array, fac: HessianFactor
) -> tuple[Array, float, float]:
    """A descent direction when the Newton system has lost its accuracy: the gradient scaled
    by the block-diagonal part of the Hessian (and by d^2/dtau^2 for tau). Both scalings are
    positive definite, so -g^T d > 0 always. Returns (d_theta, d_tau, -g^T d)."""
    d_theta = -fac._bmul(g[None])[0]
    d_tau = 0.0
    g_tau = 0.0
    if obj.offsets is not None:
        _, g_tau = obj.bar.offset_gradient(theta, sl, obj.offsets)
        g_tau += obj.t_coef + 1.0 / (obj.tau_hi - tau)
        h_tt = obj.bar.offset_curvature(sl, obj.offsets) + 1.0 / (obj.tau_hi - tau) ** 2
        d_tau = -g_tau / h_tt
    return d_theta, d_tau, -(float(np.sum(g * d_theta)) + g_tau * d_tau)


def _pcg(
    matvec: Any, precond: Any, b_th: Array, b_tau: float, eta: float, max_iter: int
) -> tuple[tuple[Array, float], int] | None:
    """Preconditioned conjugate gradients on pairs (theta-shaped array, scalar).

    Returns the solution and the iteration count, or None when ``max_iter`` is reached before
    the preconditioned residual drops by ``eta``.
    """
    x_th, x_tau = np.zeros_like(b_th), 0.0
    r_th, r_tau = b_th.copy(), b_tau
    z_th, z_tau = precond(r_th, r_tau)
    rz = float(np.sum(r_th * z_th)) + r_tau * z_tau
    if rz <= 0:
        return None
    target = (eta**2) * rz
    p_th, p_tau = z_th.copy(), z_tau
    for it in range(1, max_iter + 1):
        q_th, q_tau = matvec(p_th, p_tau)
        pq = float(np.sum(p_th * q_th)) + p_tau * q_tau
        if pq <= 0:
            return None
        alpha = rz / pq
        x_th += alpha * p_th
        x_tau += alpha * p_tau
        r_th -= alpha * q_th
        r_tau -= alpha * q_tau
        z_th, z_tau = precond(r_th, r_tau)
        rz_new = float(np.sum(r_th * z_th)) + r_tau * z_tau
        if rz_new <= target:
            return (x_th, x_tau), it
        beta = rz_new / rz
        rz = rz_new
        p_th = z_th + beta * p_th
        p_tau = z_tau + beta * p_tau
    return None


def _newton(
    obj: _Objective,
    theta: Array,
    tau: float,
    *,
    tol: float,
    max_iter: int,
    path: HessianPath,
    lag: _Lagged | None = None,
    stop_tau_below: float | None = None,
    relative: bool = False,
) -> _NewtonOutcome:
    """Damped (inexact) Newton on ``obj`` from a strictly feasible (theta, tau).

    Stops when lambda^2 / 2 <= tol, times max(1, |objective|) when ``relative``.
    """
    bar = obj.bar
    lag = lag if lag is not None else _Lagged()
    sl = obj.slacks(theta, tau)
    lam2 = math.inf
    lam_prev = math.inf
    eta = 0.1
    start = _retract(obj, theta, tau, sl.p, sl.t)
    if start is not None and obj.value(tau, start[1]) < obj.value(tau, sl):
        theta, sl = start
    val = obj.value(tau, sl)
    for it in range(max_iter):
        try:
            g = bar.gradient(theta, sl)
            d_theta, d_tau, lam2 = _direction(obj, theta, tau, sl, g, lag, path, eta)
        except np.linalg.LinAlgError as exc:
            return _NewtonOutcome(theta, tau, it, math.sqrt(max(lam2, 0.0)), False, str(exc))
        if not (math.isfinite(lam2) and np.all(np.isfinite(d_theta))):
            return _NewtonOutcome(theta, tau, it, math.inf, False, "non-finite Newton direction")
        if lam2 <= 0.0:
            # Not a descent direction: the Newton system lost its accuracy (slacks near zero
            # make H very ill-conditioned). Refactor if the direction came from CG; otherwise
            # fall back to the block-diagonally preconditioned gradient, which always descends.
            if not lag.exact:
                lag.stale = True
                continue
            if lag.factor is None:
                return _NewtonOutcome(theta, tau, it, math.inf, False, "Newton system failed")
            d_theta, d_tau, lam2 = _fallback_direction(obj, theta, tau, sl, g, lag.factor)
            degraded = True
        else:
            degraded = False
        if lam2 / 2.0 <= tol * (max(1.0, abs(val)) if relative else 1.0) and not degraded:
            if lag.exact:
                return _NewtonOutcome(theta, tau, it, math.sqrt(lam2), True)
            if eta > _ETA_CONFIRM:
                # A loose CG solve can underestimate the decrement when the kept factorization
                # is a poor preconditioner: confirm with a tight solve at this iterate (which
                # refactors if CG cannot reach it).
                eta = _ETA_CONFIRM
                continue
            return _NewtonOutcome(theta, tau, it, math.sqrt(lam2), True)
        lam = math.sqrt(lam2)
        # Inexact steps that stop shrinking the decrement (exact Newton shrinks it at least
        # geometrically once it is below 1) mean CG is following a poor preconditioner.
        if not lag.exact and lam < 1.0 and lam > 0.7 * lam_prev:
            lag.stale = True
        lam_prev = lam
        # Forcing term of the inexact Newton method: superlinear as lambda -> 0.
        eta = min(0.1, max(1e-6, lam))
        # Backtracking from the longest step that keeps every row 1% inside, each trial point
        # retracted onto its best radius. Far from the centre this accepts far longer steps
        # than the classical damped step 1 / (1 + lambda), a lower bound on what
        # self-concordance allows.
        dsl = bar.direction_change(d_theta, d_tau, obj.offsets)
        alpha = min(1.0, 0.99 * _max_step(sl, dsl, obj, tau, d_tau))
        slack_tol = 1e-12 * max(1.0, abs(val))
        accepted = None
        for _ in range(60):
            new_tau = tau + alpha * d_tau
            cand = _retract(
                obj, theta + alpha * d_theta, new_tau, sl.p + alpha * dsl.p, sl.t + alpha * dsl.t
            )
            if cand is not None:
                new_val = obj.value(new_tau, cand[1])
                if new_val <= val - 0.01 * alpha * lam2 + slack_tol:
                    accepted = cand
                    break
            alpha *= 0.5
        if accepted is None:
            if lam2 / 2.0 <= 1e3 * tol * (max(1.0, abs(val)) if relative else 1.0):
                # Roundoff stalls the last digits; the point is centred to working accuracy.
                return _NewtonOutcome(theta, tau, it, lam, True)
            return _NewtonOutcome(theta, tau, it, lam, False, "line search failed")
        theta, tau = accepted[0], new_tau
        # Recompute the slacks exactly (the line search used the linear update).
        sl = obj.slacks(theta, tau)
        # The quadratic model predicts a decrease of lam2 (alpha - alpha^2 / 2) (CG iterates
        # satisfy d^T H d = -g^T d = lam2). A short step or a much smaller actual decrease means
        # the CG direction was poor: refactor at the next step.
        predicted = lam2 * alpha * (1.0 - alpha / 2.0)
        new_val = obj.value(tau, sl)
        if not lag.exact and val - new_val < 0.25 * predicted:
            lag.stale = True
        val = new_val
        if stop_tau_below is not None and tau < stop_tau_below:
            return _NewtonOutcome(theta, tau, it + 1, lam, False, stopped_early=True)
    return _NewtonOutcome(theta, tau, max_iter, math.sqrt(lam2), False)


# ---------------------------------------------------------------------------- phase I


class _Feasibility(enum.Enum):
    FEASIBLE = "feasible"
    NO_INTERIOR = "no_interior"
    UNKNOWN = "unknown"


@dataclass
class _Phase1:
    theta: Array
    status: _Feasibility
    nit: int
    scores: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    message: str = ""


def _normalized(bar: Barrier, sl: Slacks) -> tuple[Array, Array]:
    """Slacks divided by their row norms: signed distances of theta to each hyperplane."""
    tiny = np.finfo(np.float64).tiny
    return sl.p / np.maximum(bar.norm_pattern, tiny), sl.t / np.maximum(bar.norm_label, tiny)


def _phase1(
    bar: Barrier,
    theta0: Array,
    opts: CenterOptions,
    lag: _Lagged | None = None,
    round_cap: int | None = None,
) -> _Phase1:
    """Find theta with every slack > 0 by minimising a shared offset tau (see module doc)."""
    R = bar.radius
    sl = bar.slacks(theta0)
    rp, rt = _normalized(bar, sl)
    thr = 1e-9 * R
    vp, vt = rp <= thr, rt <= thr
    n_v = int(vp.sum() + vt.sum())
    if n_v == 0:
        return _Phase1(theta0, _Feasibility.FEASIBLE, 0)
    if lag is not None and n_v <= _MAX_RECOVERY_ROWS and (n_v < bar.Q or bar.L == 0):
        theta1 = _dikin_recovery(bar, theta0, sl, vp, vt, opts.path, lag)
        if theta1 is not None:
            return _Phase1(theta1, _Feasibility.FEASIBLE, 1)
    others = np.concatenate([rp[~vp], rt[~vt]])
    typical = float(np.median(others)) if others.size else R / math.sqrt(bar.J * bar.r)
    typical = min(max(typical, 1e-6 * R), R)
    offsets = Offsets(
        pattern=np.where(vp, bar.norm_pattern, 0.0), label=np.where(vt, bar.norm_label, 0.0)
    )
    worst = max(
        float(-rp[vp].min()) if vp.any() else -math.inf,
        float(-rt[vt].min()) if vt.any() else -math.inf,
    )
    tau = worst + typical
    m_terms = bar.n_rows + 2
    # Start where the duality gap m / t of the barrier method is about one typical slack:
    # tau is pushed below zero within one or two centrings instead of ~log10(m) of them.
    obj = _Objective(bar, offsets, t_coef=m_terms / typical, tau_hi=tau + max(R, tau))
    # At t >= t_cert a central point decides: tau < -margin_tol R, or tau - m/t above it.
    t_cert = 4.0 * m_terms / (opts.margin_tol * R)
    theta, nit = theta0, 0
    while nit < opts.phase1_max_iter:
        out = _newton(
            obj,
            theta,
            tau,
            tol=1e-3,
            max_iter=min(opts.phase1_max_iter - nit, round_cap or opts.phase1_max_iter),
            path=opts.path,
            lag=lag,
            # Leave phase I once the new rows have a little room (not at the first point past
            # zero): phase II from a point a hair off the boundary is badly conditioned.
            stop_tau_below=-max(opts.margin_tol * R, 1e-3 * typical),
        )
        theta, tau, nit = out.theta, out.tau, nit + out.nit
        # Interior means a normalised margin above margin_tol (the same rule certifies "no
        # interior" below), so subsets and the full set are judged alike.
        if tau < -opts.margin_tol * R:
            return _Phase1(theta, _Feasibility.FEASIBLE, nit)
        sl = obj.slacks(theta, tau)
        certified = _dual_bound(obj, theta, sl) > -opts.margin_tol * R
        lam = out.decrement
        if not certified and out.converged and lam <= 0.5:
            # Barrier-method bound at an approximately central point (self-concordant barrier
            # of parameter m, Newton decrement lam): tau* >= tau - (m + lam sqrt(m)/(1-lam))/t.
            gap = (m_terms + lam * math.sqrt(m_terms) / (1.0 - lam)) / obj.t_coef
            certified = tau - gap > -opts.margin_tol * R
        if certified:
            return _Phase1(theta, _Feasibility.NO_INTERIOR, nit, _label_scores(bar, obj, sl))
        if out.failed:
            return _Phase1(theta, _Feasibility.UNKNOWN, nit, message=out.failed)
        if not out.converged:
            break
        # Grow t, but do not overshoot the t that certification needs: larger t only makes
        # the Newton systems worse conditioned.
        t_next = opts.mu * obj.t_coef
        if obj.t_coef < t_cert:
            t_next = min(t_next, t_cert)
        obj.t_coef = t_next
    return _Phase1(theta, _Feasibility.UNKNOWN, nit, message="phase I iteration limit")


#: Largest number of violated rows that the Dikin recovery step tries to repair.
_MAX_RECOVERY_ROWS = 512


def _dikin_recovery(
    bar: Barrier,
    theta0: Array,
    sl: Slacks,
    vp: NDArray[np.bool_],
    vt: NDArray[np.bool_],
    path: HessianPath,
    lag: _Lagged,
) -> Array | None:
    """Repair the rows V that a warm start violates with one step inside a Dikin ellipsoid.

    Let H be the barrier Hessian at theta0 of every row outside V (plus the ball). Any point
    theta0 + delta with delta^T H delta < 1 keeps those rows strictly feasible (the Dikin
    ellipsoid lies in the domain). With Y = H^{-1} A_V^T and M = A_V Y, the step
    delta = Y mu with M mu = e - v moves every row of V from its value v to e > 0, and
    ||delta||_H^2 = mu^T M mu. When the new cuts are shallow enough for that to be < 0.8^2
    (the usual case after one label: the query rule picks cuts through the centre), phase I
    is skipped entirely. Returns None when the step would leave the ellipsoid.
    """
    masked = Slacks(p=np.where(vp, np.inf, sl.p), t=np.where(vt, np.inf, sl.t), sb=sl.sb)
    fac = bar.factorize(theta0, masked, path)
    lag.factor = fac
    lag.n_factor += 1
    rows = _row_vectors(bar, vp, vt)
    values = np.concatenate([sl.p[vp], sl.t[vt]])
    Y = fac.solve(rows)
    flat_rows = rows.reshape(rows.shape[0], -1)
    M = flat_rows @ Y.reshape(Y.shape[0], -1).T
    width = np.sqrt(np.maximum(np.diag(M), 0.0))
    for frac in (0.2, 0.05):
        target = frac * width - values
        mu = np.linalg.lstsq(M, target, rcond=None)[0]
        # Inside the unit ellipsoid feasibility is guaranteed; beyond it (deep cuts, common
        # for the 2P pattern rows of a new point) it often still holds, so check directly.
        theta1 = theta0 + np.tensordot(mu, Y, axes=1)
        if bar.slacks(theta1).positive():
            return theta1
    return None


def _row_vectors(bar: Barrier, vp: NDArray[np.bool_], vt: NDArray[np.bool_]) -> Array:
    """The rows of V as theta-shaped vectors a_k, shape (n_rows, K', 2, P, r)."""
    pat = np.argwhere(vp)
    lab = np.flatnonzero(vt)
    out = np.zeros((len(pat) + len(lab), bar.K, 2, bar.P, bar.r))
    n = len(pat)
    if n:
        lab_idx, k, side, i = pat.T
        out[np.arange(n), k, side, i] = bar.S[lab_idx, i][:, None] * bar.F[lab_idx]
    for j, q in enumerate(lab):
        row = bar.coef[q][:, :, None] * bar.F_lab[q][None, None, :]  # (K', P, r)
        out[n + j, :, 0] = row
        out[n + j, :, 1] = -row
    return out


def _dual_bound(obj: _Objective, theta: Array, sl: Slacks) -> float:
    """A rigorous lower bound on the phase-I optimum tau*, valid at any point.

    Phase I is  min tau  s.t.  a_k^T theta + b_k + omega_k tau >= 0, ||theta|| <= R.  For any
    lambda >= 0 with sum_k lambda_k omega_k = 1, minimising its Lagrangian over tau and over
    the ball gives the dual bound

        tau* >= -sum_k lambda_k b_k - R || sum_k lambda_k a_k ||.

    With lambda_k proportional to 1/s_k (the barrier's dual estimate) this equals the usual
    tau - m/t at an exactly central point, but it needs no centrality: an inaccurately centred
    iterate can only weaken it, never make a false "no interior" certificate.
    """
    bar = obj.bar
    assert obj.offsets is not None
    z = float(np.sum(obj.offsets.pattern / sl.p) + np.sum(obj.offsets.label / sl.t))
    if not z > 0:
        return -math.inf
    # sum_k a_k / s_k over every row = -(gradient of the row barrier); remove the ball term.
    a_sum = -(bar.gradient(theta, sl) - (2.0 / sl.sb) * theta)
    b_sum = float(np.sum(bar.offset / sl.t))  # pattern rows have no constant part
    return -(b_sum + bar.radius * float(np.linalg.norm(a_sum))) / z


def _label_scores(bar: Barrier, obj: _Objective, sl: Slacks) -> NDArray[np.float64]:
    """Dual weight of each label at the end of phase I.

    At a central point the multipliers lambda_k = 1 / (t s_k) nearly satisfy
    sum_k lambda_k a_k = 0 (a Farkas certificate of no interior); a label's score sums
    lambda_k ||a_k|| over its rows, so the labels in the certificate come first.
    """
    lam_p = bar.norm_pattern / (obj.t_coef * sl.p)
    lam_t = bar.norm_label / (obj.t_coef * sl.t)
    # Rank by the label cuts' weights: they are what a wrong label contributes, while the
    # 2 P K' pattern rows of every label carry similar weight whatever its label is. The
    # pattern part only breaks ties.
    pattern = lam_p.reshape(bar.L, -1).sum(1)
    return lam_t.reshape(bar.L, bar.C).sum(1) + 1e-6 * pattern / max(float(pattern.max()), 1e-300)


def _cold_start(bar: Barrier, vs: VersionSpace) -> Array:
    """u_ki = v_ki = h_i: every pattern row holds (S x^T h_i = |x^T h_i|) and f = 0. Deeper,
    the lifted random network (:func:`learner.lift.start_blocks`): every D2 and D3 row holds."""
    blocks = vs.start_blocks()  # (2, G, d)
    gw = blocks if bar.basis is None else blocks @ bar.basis
    theta = np.broadcast_to(gw[None], (bar.K, 2, bar.P, bar.r)).copy()
    norm = float(np.linalg.norm(theta))
    if norm == 0.0:
        theta = np.ones_like(theta)
        norm = float(np.linalg.norm(theta))
    return theta * (0.5 * bar.radius / norm)


def _start_point(bar: Barrier, vs: VersionSpace, start: Array | None) -> Array:
    if start is None:
        return _cold_start(bar, vs)
    theta = bar.to_reduced(start)
    norm = float(np.linalg.norm(theta))
    if norm == 0.0:
        return _cold_start(bar, vs)
    if norm >= bar.radius * (1 - 1e-9):
        theta = theta * (0.999 * bar.radius / norm)
    return theta


def has_interior(vs: VersionSpace, options: CenterOptions | None = None) -> bool | None:
    """Whether the labels of ``vs`` leave a polytope with an interior.

    "Interior" means a point whose normalised margin exceeds ``options.margin_tol``. Phase I
    decides; when its Newton steps fail (near-degenerate polytopes) and the problem is small,
    the margin is computed exactly as a second-order cone program instead (cvxpy, Clarabel).
    Returns None only when neither decides.
    """
    opts = options or CenterOptions()
    ph = _subset_phase1(vs, opts)
    if ph.status is not _Feasibility.UNKNOWN:
        return ph.status is _Feasibility.FEASIBLE
    margin = _socp_margin(vs)
    if margin is None:
        return None
    return margin > opts.margin_tol * vs.radius


#: Newton steps one phase-I centring of a small subset may take before the exact fallback.
_SUBSET_ROUND_CAP = 15
#: Largest problem (constraint rows) the exact margin fallback is tried on.
_SOCP_MAX_ROWS = 20_000


def _socp_margin(vs: VersionSpace) -> float | None:
    """max_theta min_k (a_k^T theta + b_k) / ||a_k|| over ||theta|| <= R, by cvxpy (Clarabel).

    The exact version of the quantity phase I certifies, for small problems where the barrier
    method's Newton systems are too ill-conditioned. None if too large or the solver fails.
    """
    if vs.n_labels == 0:
        return math.inf
    if vs.n_rows > _SOCP_MAX_ROWS:
        return None
    import cvxpy as cp  # local: only this fallback needs it in this module

    bar = Barrier(vs, span_basis(vs.X))
    if not np.all(bar.norm_label > 0):
        return -math.inf  # a label with no active gate
    theta = cp.Variable((bar.J, bar.r))
    margin = cp.Variable()
    Z = bar.F @ theta.T  # (L, J)
    S = np.broadcast_to(bar.S[:, None, None, :], (bar.L, bar.K, 2, bar.P)).reshape(bar.L, bar.J)
    norms_p = bar.norm_pattern.reshape(bar.L, bar.J)
    coef = np.stack([bar.coef, -bar.coef], axis=2).reshape(bar.Q, bar.J)
    t = cp.sum(cp.multiply(coef, bar.F_lab @ theta.T), axis=1) + bar.offset
    constraints = [
        cp.multiply(S / norms_p, Z) >= margin,
        cp.multiply(1.0 / bar.norm_label, t) >= margin,
        cp.norm(cp.vec(theta, order="C")) <= bar.radius,
    ]
    problem = cp.Problem(cp.Maximize(margin), constraints)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "solution may be inaccurate"
            problem.solve(solver=cp.CLARABEL)
    except cp.error.SolverError:
        return None
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or margin.value is None:
        return None
    return float(margin.value)


def _subset_phase1(vs: VersionSpace, opts: CenterOptions) -> _Phase1:
    """Phase I from a cold start on the labels of ``vs`` (scores set when infeasible)."""
    if vs.n_labels == 0:
        return _Phase1(np.zeros(0), _Feasibility.FEASIBLE, 0)
    if _unrepresentable(vs).size:
        return _Phase1(np.zeros(0), _Feasibility.NO_INTERIOR, 0, np.ones(vs.n_labels))
    bar = Barrier(vs, span_basis(vs.X))
    # Small subsets have an exact fallback (_socp_margin): give up on a centring that stalls
    # (near-degenerate subsets make Newton crawl) instead of spending the whole budget.
    if bar.n_rows <= _SOCP_MAX_ROWS:
        opts = replace(opts, phase1_max_iter=min(opts.phase1_max_iter, 4 * _SUBSET_ROUND_CAP))
        return _phase1(bar, _cold_start(bar, vs), opts, round_cap=_SUBSET_ROUND_CAP)
    return _phase1(bar, _cold_start(bar, vs), opts)


def _find_conflict(
    vs: VersionSpace, order: NDArray[np.intp], scores: NDArray[np.float64], opts: CenterOptions
) -> list[int] | None:
    """A small set of labels (indices into ``vs``) whose constraints have no interior.

    Grow a prefix of the candidates ``order`` (ranked by dual weight) until it is infeasible;
    keep only the labels that carry weight in that subset's own infeasibility certificate
    (if they are still infeasible on their own); then drop every label whose removal keeps the
    set infeasible (a deletion filter). The result is an irreducible infeasible subset.
    """
    limit = min(opts.max_conflict_size, len(order))
    if limit == 0:
        return None
    k = min(2, limit)
    while True:
        found = [int(i) for i in order[:k]]
        ph = _subset_phase1(vs.subset(np.array(found)), opts)
        if ph.status is _Feasibility.NO_INTERIOR:
            break
        if (
            ph.status is _Feasibility.UNKNOWN
            and has_interior(vs.subset(np.array(found)), opts) is False
        ):
            break
        if k >= limit:
            return None
        k = min(2 * k, limit)
    local = ph.scores
    if ph.status is _Feasibility.NO_INTERIOR and local.size == len(found) and len(found) > 2:
        keep = [found[i] for i in np.flatnonzero(local >= 1e-3 * local.max())]
        if len(keep) < len(found) and has_interior(vs.subset(np.array(keep)), opts) is False:
            found = keep
    for idx in sorted(found, key=lambda i: scores[i]):
        trial = [j for j in found if j != idx]
        if trial and has_interior(vs.subset(np.array(trial)), opts) is False:
            found = trial
    return sorted(found)


def _unrepresentable(vs: VersionSpace) -> NDArray[np.intp]:
    """Labels with a cut that no theta can satisfy: f(x) = 0 for every theta (all gates off)
    while the cut needs f(x) > offset."""
    cuts = vs.label_cuts()
    zero = np.all(cuts.coef == 0, axis=(1, 2)) & (cuts.offset <= 0)
    return np.unique(np.flatnonzero(zero) // cuts.per_label)


def _duplicate_conflicts(vs: VersionSpace, active: NDArray[np.bool_]) -> list[tuple[int, ...]]:
    """Groups of (near-)identical feature vectors whose labels contradict each other.

    Vectors that agree to 1e-8 of the largest feature magnitude count as the same item (the
    same text embedded twice, or a copy with invisible differences): their cuts are the same
    hyperplane, so contradicting labels can never both hold.
    """
    idx = np.flatnonzero(active)
    if idx.size < 2:
        return []
    X = vs.X[idx]
    scale = float(np.abs(X).max()) or 1.0
    keys = np.round(X / (1e-8 * scale))
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    groups: list[tuple[int, ...]] = []
    for g in np.flatnonzero(counts > 1):
        members = idx[np.flatnonzero(inverse.ravel() == g)]
        ys = vs.y[members]
        if vs.task is Task.REGRESSION:
            clash = float(ys.max() - ys.min()) >= 2 * vs.epsilon
        else:
            clash = np.unique(ys).size > 1
        if clash:
            groups.append(tuple(int(m) for m in members))
    return groups


# ---------------------------------------------------------------------------- public API


def analytic_center(
    vs: VersionSpace,
    *,
    start: Array | None = None,
    options: CenterOptions | None = None,
) -> CenterResult:
    """Analytic centre of the version space (eq. AC), warm-started when ``start`` is given.

    Parameters
    ----------
    vs : VersionSpace
        Labeled points; every label contributes its cuts and pattern rows.
    start : ndarray of shape (n_outputs, 2, n_gates, n_features), optional
        A previous centre. Rows it violates (typically the new labels') are handled by
        phase I, so any finite point inside the ball is a valid start.
    options : CenterOptions, optional

    Returns
    -------
    CenterResult
        Never raises for infeasible or noisy labels: the status says what happened.
    """
    opts = options or CenterOptions()
    K, P, d, L = vs.n_outputs, vs.n_gates, vs.n_features, vs.n_labels
    shape = (K, 2, P, d)
    if start is not None:
        start = np.asarray(start, dtype=np.float64)
        if start.shape != shape:
            raise ValueError(f"start must have shape {shape}, got {start.shape}")
        if not np.all(np.isfinite(start)):
            raise ValueError("start contains NaN or infinite values")
    run = _Run(active=np.ones(L, dtype=bool))
    for label in _unrepresentable(vs):
        run.exclude((int(label),))
    for group in _duplicate_conflicts(vs, run.active):
        run.exclude(group)
    theta_full = start
    while True:
        idx = np.flatnonzero(run.active)
        if idx.size == 0:
            return _ball_centre(vs, shape, run)
        sub = vs.subset(idx)
        bar = Barrier(sub, span_basis(sub.X))
        lag = _Lagged(n_factor=run.n_factor, n_cg=run.n_cg)
        ph1 = _phase1(bar, _start_point(bar, sub, theta_full), opts, lag)
        run.add(ph1.nit, lag, phase1=True)
        if ph1.status is _Feasibility.FEASIBLE:
            break
        if ph1.status is _Feasibility.NO_INTERIOR and theta_full is not None:
            # Which labels get named must not depend on the warm start (the state is a pure
            # function of its labels, and a rebuild must send the same items to review): rank
            # them from a cold start instead.
            theta_full = None
            lag = _Lagged(n_factor=run.n_factor, n_cg=run.n_cg)
            ph1 = _phase1(bar, _cold_start(bar, sub), opts, lag)
            run.add(ph1.nit, lag, phase1=True)
            if ph1.status is _Feasibility.FEASIBLE:
                break
        if ph1.status is _Feasibility.UNKNOWN:
            msg = f"phase I did not finish ({ph1.message}); no interior point found"
            return _finish(bar, ph1.theta, None, CenterStatus.NO_INTERIOR, run, msg, opts.path)
        # Name as many disjoint conflicts as the dual ranking of this phase-I run reveals
        # before paying for another full phase I.
        order = np.argsort(-ph1.scores, kind="stable")
        found = 0
        while run.searched < opts.max_conflicts:
            conflict = _find_conflict(sub, order, ph1.scores, opts)
            if conflict is None:
                break
            group = tuple(int(idx[i]) for i in conflict)
            logger.info("excluding conflicting labels %s", group)
            run.exclude(group)
            run.searched += 1
            order = order[~np.isin(order, conflict)]
            found += 1
        if found == 0:
            msg = (
                "the labels leave no interior and no conflict of at most "
                f"{opts.max_conflict_size} labels was found (model too small for the data?)"
            )
            return _finish(bar, ph1.theta, None, CenterStatus.NO_INTERIOR, run, msg, opts.path)
        theta_full = bar.to_full(ph1.theta)
    out = _newton(
        _Objective(bar),
        ph1.theta,
        0.0,
        tol=opts.tol,
        max_iter=opts.max_iter,
        path=opts.path,
        lag=lag,
        relative=True,
    )
    run.add(out.nit, lag)
    if out.failed:
        status, msg = CenterStatus.NUMERICAL_ERROR, f"Newton failed: {out.failed}"
    elif not out.converged:
        status, msg = CenterStatus.MAX_ITER, f"no convergence in {opts.max_iter} Newton steps"
    elif run.groups:
        status = CenterStatus.CONFLICTS_EXCLUDED
        msg = f"centred after excluding {len(run.groups)} conflicting label group(s)"
    else:
        status, msg = CenterStatus.OPTIMAL, "centred"
    return _finish(bar, out.theta, out.decrement, status, run, msg, opts.path)


@dataclass
class _Run:
    """Bookkeeping of one :func:`analytic_center` call."""

    active: NDArray[np.bool_]
    groups: list[tuple[int, ...]] = field(default_factory=list)
    searched: int = 0
    nit: int = 0
    phase1_nit: int = 0
    n_factor: int = 0
    n_cg: int = 0

    def exclude(self, group: tuple[int, ...]) -> None:
        self.groups.append(group)
        self.active[list(group)] = False

    def add(self, nit: int, lag: _Lagged, *, phase1: bool = False) -> None:
        self.nit += nit
        if phase1:
            self.phase1_nit += nit
        self.n_factor, self.n_cg = lag.n_factor, lag.n_cg


def _finish(
    bar: Barrier,
    theta: Array,
    decrement: float | None,
    status: CenterStatus,
    run: _Run,
    message: str,
    path: HessianPath = HessianPath.AUTO,
) -> CenterResult:
    if not np.all(np.isfinite(theta)):
        theta = np.zeros_like(theta)
        status = CenterStatus.NUMERICAL_ERROR
        message = "non-finite iterate"
    sl = bar.slacks(theta)
    rp, rt = _normalized(bar, sl)
    lowest = min(float(rp.min()) if rp.size else math.inf, float(rt.min()) if rt.size else math.inf)
    solver = f"newton/{bar.choose_path(path).value}"  # the path the options asked for
    if bar.basis is not None:
        solver += f"/span(r={bar.r})"
    logger.debug("centre: %s, %d factorizations, %d CG", status.value, run.n_factor, run.n_cg)
    finite_decrement = decrement is not None and math.isfinite(decrement)
    return CenterResult(
        x=np.ascontiguousarray(bar.to_full(theta)),
        status=status,
        message=message,
        nit=run.nit,
        phase1_nit=run.phase1_nit,
        decrement=float(decrement) if finite_decrement else math.inf,  # type: ignore[arg-type]
        objective=Barrier.value(sl),
        solver=solver,
        conflicts=tuple(run.groups),
        active=run.active.copy(),
        max_violation=max(0.0, -lowest / bar.radius),
        n_factorizations=run.n_factor,
        n_cg=run.n_cg,
    )


def _ball_centre(vs: VersionSpace, shape: tuple[int, ...], run: _Run) -> CenterResult:
    status = CenterStatus.CONFLICTS_EXCLUDED if run.groups else CenterStatus.OPTIMAL
    return CenterResult(
        x=np.zeros(shape),
        status=status,
        message="no active labels: the centre of the ball",
        nit=0,
        phase1_nit=0,
        decrement=0.0,
        objective=-2.0 * math.log(vs.radius),
        solver="closed-form",
        conflicts=tuple(run.groups),
        active=run.active.copy(),
        max_violation=0.0,
    )
