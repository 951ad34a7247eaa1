"""Final model: the convex reformulation of two-layer ReLU training (Pilanci & Ergen 2020).

With the campaign's stored gates D_i the problem

    minimise    (1/L) sum_l loss(f(x_l; theta), y_l) + beta sum_{k,i} (||u_ki|| + ||v_ki||)
    subject to  (2 D_i(x_l) - 1) x_l^T u_ki >= 0,  (2 D_i(x_l) - 1) x_l^T v_ki >= 0

is convex (group lasso with pattern constraints), always feasible (theta = 0), and its solution
maps to a ReLU network that equals the gated model on every labeled point
(:func:`learner.network.network_from_theta`). Unlike the analytic centre it tolerates
contradicting labels: they only cost loss.

Loss: ``hinge`` (binary: max(0, 1 - y f); multi-class: sum over k != y of
max(0, 1 - (f_y - f_k))) or ``squared`` (binary/multi-class against +-1 targets; regression
against y).
"""

from __future__ import annotations

import enum
import time
import warnings
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
from numpy.typing import NDArray

from learner.config import Task
from learner.lift import lifted_rows
from learner.version_space import VersionSpace

Array = NDArray[np.float64]


class Loss(enum.Enum):
    HINGE = "hinge"
    SQUARED = "squared"


def parse_loss(loss: Loss | str) -> Loss:
    """``loss`` as a :class:`Loss` (strings are case-insensitive), with a clear error."""
    if isinstance(loss, Loss):
        return loss
    try:
        return Loss(str(loss).lower())
    except ValueError:
        allowed = ", ".join(repr(item.value) for item in Loss)
        raise ValueError(f"loss must be one of {allowed}, got {loss!r}") from None


class SolverFallbackWarning(UserWarning):
    """A solver in the fallback chain failed and the next one is tried."""


class ConvexFitError(RuntimeError):
    """Every solver in the chain failed; the message lists what each one said."""


#: Solvers tried in order: Clarabel (interior point, accurate), then SCS (first order,
#: robust on large problems, less accurate). Both ship with cvxpy.
SOLVER_CHAIN: tuple[str, ...] = (cp.CLARABEL, cp.SCS)


@dataclass(frozen=True)
class ConvexFitResult:
    """Outcome of :func:`convex_fit`.

    Attributes
    ----------
    theta : ndarray of shape (n_outputs, 2, n_gates, n_features)
    status : str
        cvxpy status (``optimal`` or ``optimal_inaccurate``).
    solver : str
        The solver that succeeded.
    objective : float
    seconds : float
    n_labels : int
    beta : float
        The group-lasso weight of this fit.
    """

    theta: Array
    status: str
    solver: str
    objective: float
    seconds: float
    n_labels: int
    beta: float = float("nan")


def convex_fit(
    vs: VersionSpace,
    *,
    loss: Loss | str = Loss.HINGE,
    beta: float = 1e-3,
    solvers: tuple[str, ...] = SOLVER_CHAIN,
    mask: NDArray[np.bool_] | None = None,
) -> ConvexFitResult:
    """Fit the group-lasso convex program on the labels of ``vs``.

    Parameters
    ----------
    vs : VersionSpace
    loss : Loss or str
    beta : float
        Group-lasso weight (>= 0).
    solvers : tuple of str
        cvxpy solver names tried in order.
    mask : ndarray of bool, shape (n_labels,), optional
        Labels to use (default all).

    Raises
    ------
    ConvexFitError
        When every solver in the chain fails.
    """
    loss = parse_loss(loss)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if vs.task is Task.REGRESSION and loss is Loss.HINGE:
        raise ValueError("hinge loss needs class labels; use loss='squared' for regression")
    if mask is not None:
        vs = vs.subset(np.flatnonzero(mask))
    K, P, d, L = vs.n_outputs, vs.n_gates, vs.n_features, vs.n_labels
    if L == 0:
        raise ValueError("convex_fit needs at least one label")
    X = vs.X
    S = 2.0 * vs.gate_patterns.astype(np.float64) - 1.0  # pattern rows (eq. D2 deeper)
    if vs.upper_weights:
        rows = lifted_rows(vs.layer_bits)
        D, structural = rows.output, rows.structural  # eq. D1 coefficients, D3 rows
    else:
        D, structural = vs.patterns.astype(np.float64), np.zeros((L, 0, P))
    U = [cp.Variable((d, P)) for _ in range(K)]
    V = [cp.Variable((d, P)) for _ in range(K)]
    constraints = []
    for k in range(K):
        # One vectorised constraint per block family (cvxpy Performance Tips).
        constraints += [cp.multiply(S, X @ U[k]) >= 0, cp.multiply(S, X @ V[k]) >= 0]
        W = X @ (U[k] - V[k])
        for r in range(structural.shape[1]):  # the D3 rows of the upper layers
            constraints.append(cp.sum(cp.multiply(structural[:, r, :], W), axis=1) >= 0)
    f = [cp.sum(cp.multiply(D, X @ (U[k] - V[k])), axis=1) for k in range(K)]
    data_term = _loss_term(f, vs, loss)
    penalty = sum(
        cp.sum(cp.norm(U[k], 2, axis=0)) + cp.sum(cp.norm(V[k], 2, axis=0)) for k in range(K)
    )
    problem = cp.Problem(cp.Minimize(data_term / L + beta * penalty), constraints)
    failures: list[str] = []
    # Fallback chain, in order: each solver is tried once; only cvxpy's SolverError and
    # non-optimal statuses move on to the next one.
    for solver in solvers:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # cvxpy's "solution may be inaccurate"
                problem.solve(solver=solver)
        except cp.error.SolverError as exc:
            failures.append(f"{solver}: {exc}")
            warnings.warn(
                f"{solver} failed ({exc}); trying the next solver",
                SolverFallbackWarning,
                stacklevel=2,
            )
            continue
        if problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) and U[0].value is not None:
            theta = np.stack(
                [np.stack([np.asarray(U[k].value).T, np.asarray(V[k].value).T]) for k in range(K)]
            )
            return ConvexFitResult(
                theta=theta,
                status=str(problem.status),
                solver=solver,
                objective=float(problem.value),
                seconds=time.perf_counter() - start,
                n_labels=L,
                beta=float(beta),
            )
        failures.append(f"{solver}: status {problem.status}")
        warnings.warn(
            f"{solver} ended with status {problem.status}; trying the next solver",
            SolverFallbackWarning,
            stacklevel=2,
        )
    raise ConvexFitError("convex fit failed with every solver: " + "; ".join(failures))


def _loss_term(f: list[Any], vs: VersionSpace, loss: Loss) -> Any:
    y = vs.y
    if vs.task is Task.REGRESSION:
        return cp.sum_squares(f[0] - y)
    if vs.task is Task.BINARY:
        sign = 2.0 * y - 1.0
        if loss is Loss.HINGE:
            return cp.sum(cp.pos(1 - cp.multiply(sign, f[0])))
        return cp.sum_squares(f[0] - sign)
    K = vs.n_classes
    onehot = np.eye(K)[y.astype(np.intp)]
    F = cp.vstack(f).T  # (L, K)
    if loss is Loss.SQUARED:
        return cp.sum_squares(F - (2.0 * onehot - 1.0))
    f_true = cp.sum(cp.multiply(onehot, F), axis=1)  # (L,)
    margins = 1 - (cp.reshape(f_true, (vs.n_labels, 1), order="C") @ np.ones((1, K)) - F)
    return cp.sum(cp.multiply(1.0 - onehot, cp.pos(margins)))
