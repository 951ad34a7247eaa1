"""Conflict search and :func:`has_interior`: labels that cannot all hold.

Labels that no network of this class can satisfy alone (all gates off, so f(x) = 0) and exact
duplicates with contradicting labels are set aside as conflicts up front
(:func:`_unrepresentable`, :func:`_duplicate_conflicts`).

If phase I (:mod:`learner._phase1`) certifies that no point keeps a normalised margin above
``margin_tol``, its dual weights rank the labels, and a growing-prefix search plus a deletion
filter returns a small set of labels that cannot all hold (:func:`_find_conflict`). Those are
excluded (and reported), and phase I runs again on the rest.

:func:`has_interior` decides by phase I; when its Newton steps fail on a small problem, the
margin is computed exactly as a second-order cone program (cvxpy, Clarabel).

See docs/learner.md, "Noisy labels".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from learner._barrier import Barrier, span_basis
from learner._options import CenterOptions
from learner._phase1 import _cold_start, _Feasibility, _Phase1, _phase1
from learner.config import Task
from learner.version_space import VersionSpace


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
