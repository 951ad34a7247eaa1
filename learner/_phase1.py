"""Phase I and warm starts of the analytic-centre solver: a strictly feasible first point.

Warm start: the pattern rows the previous centre violates (about half of each new point's)
are repaired block by block (:func:`_pattern_repair`); if a label cut is still violated, a
Dikin-recovery step tries to repair every violated row at once inside the ellipsoid of the
other rows. Otherwise phase I
(Boyd & Vandenberghe §11.4.1) gives the violated rows a shared offset tau and the barrier method
minimises tau; tau < -margin_tol R proves an interior point. A cold start begins at u = v = h
(every pattern row holds strictly, f = 0).

If phase I certifies that no point keeps a normalised margin above ``margin_tol``, its dual
weights rank the labels (:func:`_label_scores`) for the conflict search of
:mod:`learner._conflicts`. Each centring is a run of the damped Newton method of
:mod:`learner._newton`.

See docs/learner.md, "Analytic centre (`analytic_center`)" (warm start and phase I) and
"Noisy labels".
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from learner._barrier import Array, Barrier, HessianPath, Offsets, Slacks
from learner._newton import _Lagged, _newton, _Objective
from learner._options import CenterOptions
from learner.version_space import VersionSpace


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
    if vp.any() and lag is not None:
        # New points violate many pattern rows; repaired block by block, soft cuts are then
        # usually all satisfied. When a label cut is still violated (hard cuts: a queried
        # label is wrong at the old centre half the time), the repair is dropped: the Dikin
        # step and phase I from the unrepaired start cost fewer factorizations.
        repaired = _pattern_repair(bar, theta0, sl, vp)
        if repaired is not None:
            rp1, rt1 = _normalized(bar, bar.slacks(repaired))
            if np.all(rp1 > thr) and np.all(rt1 > thr):
                return _Phase1(repaired, _Feasibility.FEASIBLE, 0)
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


def _pattern_repair(bar: Barrier, theta0: Array, sl: Slacks, vp: NDArray[np.bool_]) -> Array | None:
    """Repair the violated pattern rows block by block, each inside its block's Dikin
    ellipsoid (docs/learner.md, "Warm start and phase I", eq. WR).

    A pattern row touches one block theta_j (output, u or v, gate). Let B_j be the block of
    the barrier Hessian from block j's other pattern rows and the ball's isotropic part. As in
    :func:`_dikin_recovery`, but per block: delta_j = B_j^{-1} A_j^T mu_j with
    (A_j B_j^{-1} A_j^T) mu_j = e_j - v_j moves the rows of V_j (block j's violated rows)
    from v_j to e_j = 0.2 width while block j's other pattern rows stay inside. A warm start
    after new labels violates about half of every new point's 2 P K' pattern rows (too many
    for one Dikin step); this needs only J small systems of at most (new points) rows. The
    label cuts are checked by the caller.

    Parameters
    ----------
    bar : Barrier
    theta0 : ndarray of shape (K', 2, P, r)
        The warm start.
    sl : Slacks
        Its slacks.
    vp : ndarray of bool, shape (L, K', 2, P)
        The pattern rows it violates.

    Returns
    -------
    ndarray of shape (K', 2, P, r) or None
        The repaired point, or None when a block has too many violated rows, a system is
        singular, or a pattern row is still violated.
    """
    L, J, r = bar.L, bar.J, bar.r
    p = sl.p.reshape(L, J)
    viol = vp.reshape(L, J)
    counts = viol.sum(axis=0)
    m = int(counts.max())
    if m > min(_MAX_REPAIR_ROWS, r - 1):
        return None  # not a few new points: phase I's job
    B = bar.pattern_blocks(np.where(viol, 0.0, 1.0 / np.where(viol, 1.0, p) ** 2), 2.0 / sl.sb)
    # Violated rows of every block, padded to m (padding: a zero row with target 0).
    order = np.argsort(~viol, axis=0, kind="stable")[:m].T  # (J, m) row indices, violated first
    live = np.arange(m)[None, :] < counts[:, None]  # (J, m)
    sign = bar.S[:, np.arange(J) % bar.P]  # (L, J): S_{l, gate of block j}
    A = np.where(
        live[:, :, None], (sign[order, np.arange(J)[:, None]])[:, :, None] * bar.F[order], 0.0
    )
    try:
        Y = np.linalg.solve(B, A.transpose(0, 2, 1))  # (J, r, m)
        M = np.matmul(A, Y)  # (J, m, m)
        M[~live] = 0.0
        M[:, np.arange(m), np.arange(m)] += ~live
        width = np.sqrt(np.maximum(np.diagonal(M, axis1=1, axis2=2), 0.0))
        values = p[order, np.arange(J)[:, None]]
        rhs = np.where(live, 0.2 * width - values, 0.0)
        mu = np.linalg.solve(M, rhs[:, :, None])  # (J, m, 1)
    except np.linalg.LinAlgError:
        return None  # e.g. the same new point twice: phase I handles it
    delta = np.matmul(Y, mu)[:, :, 0]  # (J, r)
    theta1 = theta0 + delta.reshape(theta0.shape)
    if not np.all(np.isfinite(theta1)) or float(np.sum(theta1 * theta1)) >= bar.radius**2:
        return None
    return theta1 if np.all(bar.slacks(theta1).p > 0) else None


#: Most violated pattern rows per block that :func:`_pattern_repair` takes on (new points).
_MAX_REPAIR_ROWS = 32


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
    # float32 is enough (large systems): the step is checked directly, and the factor then
    # only preconditions the Newton steps that follow.
    fac = bar.factorize(theta0, masked, path, single=True)
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
