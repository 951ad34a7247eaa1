"""Analytic centre of the version space by a structured damped-Newton barrier method.

The analytic centre (Zhang, Zhang & Pilanci 2025, Definition "Analytic Center") is

    c = argmin  -sum_k log(slack_k(theta)) - log(R^2 - ||theta||^2)              (eq. AC)

over the half-spaces of every active label (see :mod:`learner.version_space`). This module
holds the public types and :func:`analytic_center`, which runs the steps below; each step lives
in a private module (imports go one way: ``_newton <- _phase1 <- _conflicts <- center``).

Algorithm
---------
1. Labels that no network can satisfy alone and contradicting duplicates are set aside as
   conflicts up front (:mod:`learner._conflicts`).
2. A warm start (Dikin recovery) or phase I finds a strictly feasible point
   (:mod:`learner._phase1`).
3. If phase I certifies that no interior exists, a small set of labels that cannot all hold is
   named and excluded, and phase I runs again on the rest (:mod:`learner._conflicts`).
4. Phase II: damped Newton on eq. AC from the phase-I point (:mod:`learner._newton`).

:class:`CenterOptions` is defined in :mod:`learner._options` and :func:`has_interior` in
:mod:`learner._conflicts`; both are re-exported here. See docs/learner.md,
"Analytic centre (`analytic_center`)" and "Noisy labels".
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from learner._barrier import Array, Barrier, HessianPath, span_basis
from learner._conflicts import (
    _duplicate_conflicts,
    _find_conflict,
    _unrepresentable,
    has_interior,
)
from learner._newton import _Lagged, _newton, _Objective
from learner._options import CenterOptions
from learner._phase1 import _cold_start, _Feasibility, _normalized, _phase1, _start_point
from learner.config import Task
from learner.version_space import VersionSpace

__all__ = ["CenterOptions", "CenterResult", "CenterStatus", "analytic_center", "has_interior"]

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
        kept factorization or block preconditioner.
    n_block : int
        Block preconditioners built (soft version spaces: the Hessian without its label
        cuts, docs/learner.md "Analytic centre", eq. BJ); each costs the pattern blocks and
        their inverses, far less than a factorization.
    suspects : tuple of int
        Active labels the centre gets wrong (negative margin, :meth:`VersionSpace.margins`),
        most wrong first: what a soft version space gave up (docs/learner.md, "Suspect
        labels"). Empty for a hard version space, whose centre agrees with every active label.
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
    n_block: int = 0
    suspects: tuple[int, ...] = ()

    @property
    def success(self) -> bool:
        """True when ``x`` is the analytic centre of the active labels."""
        return self.status in (CenterStatus.OPTIMAL, CenterStatus.CONFLICTS_EXCLUDED)


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
    if not vs.soft:
        # Soft cuts admit contradicting duplicates (|f| <= delta R ||a||): they become
        # suspects instead of conflicts.
        for group in _duplicate_conflicts(vs, run.active):
            run.exclude(group)
    theta_full = start
    while True:
        idx = np.flatnonzero(run.active)
        if idx.size == 0:
            return _ball_centre(vs, shape, run)
        sub = vs.subset(idx)
        bar = Barrier(sub, span_basis(sub.X))
        lag = run.lagged()
        ph1 = _phase1(bar, _start_point(bar, sub, theta_full), opts, lag)
        run.add(ph1.nit, lag, phase1=True)
        hard_classes = not sub.soft and sub.task is not Task.REGRESSION
        if ph1.status is _Feasibility.UNKNOWN and (theta_full is not None or hard_classes):
            # Phase I broke down (a near-singular Newton system). Retry from a start that is
            # well inside every pattern row: the cold start for soft cuts (strictly feasible),
            # the centre of the slightly softened problem for hard ones.
            lag = run.lagged()
            ph1 = _phase1(bar, _recovery_start(bar, sub, opts), opts, lag)
            run.add(ph1.nit, lag, phase1=True)
        if ph1.status is _Feasibility.FEASIBLE:
            break
        if ph1.status is _Feasibility.NO_INTERIOR and theta_full is not None:
            # Which labels get named must not depend on the warm start (the state is a pure
            # function of its labels, and a rebuild must send the same items to review): rank
            # them from a cold start instead.
            theta_full = None
            lag = run.lagged()
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
    return _finish(bar, out.theta, out.decrement, status, run, msg, opts.path, vs)


#: Softness of the auxiliary problem whose centre restarts a failed hard phase I.
_RESTART_DELTA = 1e-3


def _recovery_start(bar: Barrier, sub: VersionSpace, opts: CenterOptions) -> Array:
    """A restart point for phase I, in ``bar``'s coordinates.

    Soft cuts and regression: the cold start. Hard classification cuts: the analytic centre
    of the same labels with soft cuts of delta = 1e-3 (eq. SV; it is soft, so this does not
    recurse). That problem needs no phase I, and its
    centre keeps every pattern row well inside, so phase I only has to push the few label
    cuts it violates across (a cold start can begin a hair from a pattern row's boundary).
    """
    if sub.soft or sub.task is Task.REGRESSION:
        return _cold_start(bar, sub)
    soft = analytic_center(replace(sub, delta=_RESTART_DELTA, _cuts={}), options=opts)
    if not soft.success:
        return _cold_start(bar, sub)
    return bar.to_reduced(soft.x)


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
    n_block: int = 0

    def exclude(self, group: tuple[int, ...]) -> None:
        self.groups.append(group)
        self.active[list(group)] = False

    def lagged(self) -> _Lagged:
        """A fresh kept-factorization record that carries this run's work counts on."""
        return _Lagged(n_factor=self.n_factor, n_cg=self.n_cg, n_block=self.n_block)

    def add(self, nit: int, lag: _Lagged, *, phase1: bool = False) -> None:
        self.nit += nit
        if phase1:
            self.phase1_nit += nit
        self.n_factor, self.n_cg, self.n_block = lag.n_factor, lag.n_cg, lag.n_block


def _finish(
    bar: Barrier,
    theta: Array,
    decrement: float | None,
    status: CenterStatus,
    run: _Run,
    message: str,
    path: HessianPath = HessianPath.AUTO,
    vs: VersionSpace | None = None,
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
    x = np.ascontiguousarray(bar.to_full(theta))
    suspects: tuple[int, ...] = ()
    if vs is not None and vs.soft and status is not CenterStatus.NUMERICAL_ERROR:
        margins = vs.margins(x)
        wrong = np.flatnonzero(run.active & (margins < 0))
        suspects = tuple(int(i) for i in wrong[np.argsort(margins[wrong], kind="stable")])
    return CenterResult(
        x=x,
        status=status,
        message=message,
        nit=run.nit,
        phase1_nit=run.phase1_nit,
        decrement=float(decrement)
        if decrement is not None and math.isfinite(decrement)
        else math.inf,
        objective=Barrier.value(sl),
        solver=solver,
        conflicts=tuple(run.groups),
        active=run.active.copy(),
        max_violation=max(0.0, -lowest / bar.radius),
        n_factorizations=run.n_factor,
        n_cg=run.n_cg,
        n_block=run.n_block,
        suspects=suspects,
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
