"""cvxpy formulation of the analytic centre: the reference the structured solver is tested
and benchmarked against.

It builds exactly the problem of eq. AC (see :mod:`learner.center`) with one vectorised
``cp.log`` over all pattern rows and one over all label cuts (cvxpy Performance Tips: compile
time grows with the number of expressions, not their size).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from learner._barrier import Array, Barrier
from learner.version_space import VersionSpace


@dataclass(frozen=True)
class ReferenceResult:
    """Outcome of :func:`reference_center`.

    Attributes
    ----------
    x : ndarray of shape (n_outputs, 2, n_gates, n_features)
        The solver's centre (zeros when it failed).
    status : str
        cvxpy's status string.
    objective : float
        Our barrier value (eq. AC) at ``x``, for a like-for-like comparison; inf if infeasible
        or if ``x`` leaves a slack non-positive.
    solver : str
    seconds : float
        Wall time of ``problem.solve`` including cvxpy's compilation.
    """

    x: Array
    status: str
    objective: float
    solver: str
    seconds: float

    @property
    def success(self) -> bool:
        return self.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)


def reference_center(
    vs: VersionSpace, solver: str = cp.CLARABEL, **solver_options: object
) -> ReferenceResult:
    """Solve eq. AC with cvxpy and a named conic solver (CLARABEL or SCS).

    Parameters
    ----------
    vs : VersionSpace
    solver : str
        cvxpy solver name.
    **solver_options
        Passed to ``problem.solve`` (e.g. ``eps_abs``/``eps_rel`` for SCS).
    """
    K, P, d, L = vs.n_outputs, vs.n_gates, vs.n_features, vs.n_labels
    J = 2 * K * P
    cuts = vs.label_cuts()
    C = cuts.per_label
    S = 2.0 * vs.gate_patterns.astype(np.float64) - 1.0
    s_ext = np.broadcast_to(S[:, None, None, :], (L, K, 2, P)).reshape(L, J)
    coef_ext = np.stack([cuts.coef, -cuts.coef], axis=2).reshape(cuts.coef.shape[0], J)
    X_lab = np.repeat(vs.X, C, axis=0)
    theta = cp.Variable((d, J))
    Z = vs.X @ theta
    t = cp.sum(cp.multiply(coef_ext, X_lab @ theta), axis=1) + cuts.offset
    objective = (
        cp.sum(cp.log(cp.multiply(s_ext, Z)))
        + cp.sum(cp.log(t))
        + cp.log(vs.radius**2 - cp.sum(cp.square(theta)))
    )
    # cp.sum(cp.square(.)) rather than cp.sum_squares: cvxpy 1.9 mis-shapes log(c - sum_squares).
    problem = cp.Problem(cp.Maximize(objective))
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "solution may be inaccurate"
            # cvxpy evaluates log() at its own (possibly inaccurate) solution when reporting.
            warnings.simplefilter("ignore", RuntimeWarning)
            problem.solve(solver=solver, **solver_options)
        status = str(problem.status)
    except cp.error.SolverError as exc:
        status = f"solver_error: {exc}"
    seconds = time.perf_counter() - start
    if theta.value is None or status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return ReferenceResult(np.zeros((K, 2, P, d)), status, float("inf"), solver, seconds)
    x = np.asarray(theta.value).T.reshape(K, 2, P, d)
    sl = Barrier(vs, None).slacks(x)
    # A point outside the barrier's domain (an inaccurate solve): no finite objective.
    objective = Barrier.value(sl) if sl.positive() else float("inf")
    return ReferenceResult(x, status, objective, solver, seconds)
