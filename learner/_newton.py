"""The damped Newton method of the analytic-centre solver.

Phase II is damped Newton on eq. AC (see :mod:`learner.center`) from the phase-I point; every
phase-I centring (:mod:`learner._phase1`) runs the same method on the phase-I objective. Each
step backtracks (Armijo) from the longest step that keeps every row 1% inside, every trial
point retracted onto its best radius (:func:`_retract`); it stops when
lambda^2 / 2 <= tol * max(1, |phi|). Directions come from a fresh factorization or from
conjugate gradients preconditioned by a kept one (an inexact Newton method, see
:func:`_direction`); in phase II of a soft version space, from conjugate gradients
preconditioned by the Hessian without its label cuts (docs/learner.md, eq. BJ), with no
factorization at all.

Every factored Newton system is solved by :class:`learner._barrier.HessianFactor` (Woodbury
with batched per-block Cholesky), in the span of the labeled points when it is smaller than
R^d. Phase I's offset tau is eliminated by a Schur complement on the scalar
(:func:`_direction`).

See docs/learner.md, "Analytic centre (`analytic_center`)": radial retraction, inexact Newton,
accuracy and stopping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from learner._barrier import (
    Array,
    Barrier,
    BlockPreconditioner,
    HessianFactor,
    HessianPath,
    Offsets,
    Slacks,
)


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
    #: Block preconditioners built (eq. BJ).
    n_block: int = 0
    #: Refactor at the next step (set when a CG step made poor progress).
    stale: bool = False
    #: Whether the last direction came from a factorization at that very iterate.
    exact: bool = False
    #: Whether Newton steps may try CG preconditioned by the Hessian without its label cuts
    #: (:class:`learner._barrier.BlockPreconditioner`); cleared when such CG fails once.
    block: bool = True
    #: That preconditioner, kept across steps while CG converges with it.
    block_pre: BlockPreconditioner | None = None
    #: Whether the last direction came from that preconditioner built at that very iterate.
    fresh: bool = False


#: Conjugate-gradient iterations allowed before the Hessian is refactored at the iterate.
_MAX_CG = 25
#: CG iterations allowed with a kept block preconditioner before it is rebuilt at the iterate.
_MAX_CG_KEPT = 15
#: A kept block preconditioner that needed more CG iterations than this is rebuilt next step.
_REBUILD_AFTER = 5
#: Below this many unknowns a factorization costs less than CG's Python overhead: always exact.
_SMALL = 1500
#: CG tolerance used to confirm convergence when the last direction was inexact.
_ETA_CONFIRM = 1e-4
#: CG tolerance that counts as an exact Newton direction (float32 factor at the iterate).
_ETA_EXACT = 1e-9


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

    def precond_solver(fac: HessianFactor | BlockPreconditioner, approximate: bool = False) -> Any:
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
        lag.factor = bar.factorize(theta, sl, path, single=True)
        lag.n_factor += 1
        lag.stale = False
        lag.exact = True
        if lag.factor.inexact:
            # A float32 (or gate-space block) factor at this very iterate: CG with it as
            # preconditioner reaches a tight residual in a few steps, unless roundoff spoiled
            # it (H very ill-conditioned); then factor again in float64 (in row space).
            tight = _pcg(matvec, precond_solver(lag.factor, True), -g, -g_tau, _ETA_EXACT, _MAX_CG)
            if tight is not None:
                lag.n_cg += tight[1]
                return tight[0]
            lag.factor = bar.factorize(theta, sl, path)
            lag.n_factor += 1
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

    lag.exact = lag.fresh = False
    if (
        lag.block
        and not bordered
        and bar.block_preconditioning
        and path is HessianPath.AUTO
        and bar.J * bar.r > _SMALL
    ):
        # Soft cuts, phase II: the Hessian without its label cuts preconditions CG well enough
        # that no capacitance or gate-space matrix is needed (eq. BJ). Not in phase I: its
        # bordered systems on rows with tiny slacks made inexact steps creep (from random
        # starts, 400 phase-I steps instead of 25). It is kept across steps like a
        # factorization and rebuilt at the iterate after a CG solve of more than
        # _REBUILD_AFTER iterations, when CG fails within _MAX_CG_KEPT, or after a step of
        # poor progress. If even a fresh one fails (cuts with tiny slacks after all), every
        # later step factors as below.
        result = None
        if lag.block_pre is not None and not lag.stale:
            result = _pcg(matvec, precond_solver(lag.block_pre), -g, -g_tau, eta, _MAX_CG_KEPT)
            if result is None:
                lag.n_cg += _MAX_CG_KEPT
            elif result[1] > _REBUILD_AFTER:
                lag.stale = True  # the next step rebuilds it rather than fail with it
        if result is None:
            lag.block_pre = bar.block_preconditioner(theta, sl)
            lag.n_block += 1
            lag.stale = False
            result = _pcg(matvec, precond_solver(lag.block_pre), -g, -g_tau, eta, _MAX_CG)
            lag.fresh = result is not None
            lag.exact = lag.fresh and eta <= _ETA_EXACT
        if result is not None:
            (d_theta, d_tau), iters = result
            lag.n_cg += iters
            return d_theta, d_tau, -(float(np.sum(g * d_theta)) + g_tau * d_tau)
        lag.n_cg += _MAX_CG
        lag.block = False
        lag.block_pre = None
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
            if lag.fresh or not lag.exact:
                lag.block = lag.block and not lag.fresh
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
        if not (lag.exact or lag.fresh) and lam < 1.0 and lam > 0.7 * lam_prev:
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
        if not (lag.exact or lag.fresh) and val - new_val < 0.25 * predicted:
            lag.stale = True
        val = new_val
        if stop_tau_below is not None and tau < stop_tau_below:
            return _NewtonOutcome(theta, tau, it + 1, lam, False, stopped_early=True)
    return _NewtonOutcome(theta, tau, max_iter, math.sqrt(lam2), False)
