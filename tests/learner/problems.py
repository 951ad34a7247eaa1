"""Small synthetic problems and slow reference code for the learner tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from learner.config import Task
from learner.version_space import VersionSpace, add_labels, empty_version_space


@dataclass
class Teacher:
    """A gated network theta* over the same gates: it satisfies every label it produces."""

    vs: VersionSpace
    theta: NDArray[np.float64]
    X: NDArray[np.float64]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> NDArray[np.float64]:
    """n points on the unit sphere of R^d with a bias 1 appended, shape (n, d + 1)."""
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return np.hstack([X, np.ones((n, 1))])


def teacher_problem(
    seed: int,
    n_labels: int,
    d: int = 6,
    n_gates: int = 8,
    task: Task = Task.BINARY,
    n_classes: int = 2,
    epsilon: float = 0.05,
    radius: float = 1.0,
) -> Teacher:
    """Labels from a gated teacher built on the stored gates, so the polytope has an interior.

    The teacher satisfies the pattern rows by construction (u_i, v_i along +-h_i plus a small
    perturbation that keeps every sign), so every label it produces is consistent.
    """
    rng = np.random.default_rng(seed)
    K = n_classes if task is Task.MULTICLASS else 1
    H = rng.standard_normal((n_gates, d + 1))
    # Keep points with at least one active gate: with none, f(x) = 0 for every network and the
    # label is unrepresentable (tested separately).
    X = unit_rows(rng, 4 * n_labels + 20, d)
    X = X[np.any(X @ H.T >= 0, axis=1)][:n_labels]
    pre = X @ H.T
    # u_ki = a_ki h_i + small perturbation; small enough that sign(x^T u) = sign(x^T h) on X.
    scale = rng.uniform(0.2, 1.0, size=(K, 2, n_gates))
    theta = scale[..., None] * H[None, None]
    pert = rng.standard_normal(theta.shape) * 0.05
    for _ in range(50):
        cand = theta + pert
        ok = np.all(np.sign(np.einsum("nd,kspd->nksp", X, cand)) == np.sign(pre)[:, None, None])
        if ok:
            theta = cand
            break
        pert *= 0.5
    theta *= 0.5 * radius / np.linalg.norm(theta)
    D = (pre >= 0).astype(float)
    f = np.einsum("np,nkp->nk", D, np.einsum("nd,kpd->nkp", X, theta[:, 0] - theta[:, 1]))
    if task is Task.BINARY:
        y = (f[:, 0] > 0).astype(float)
    elif task is Task.MULTICLASS:
        y = np.argmax(f, axis=1).astype(float)
    else:
        y = f[:, 0] + rng.uniform(-0.5, 0.5, n_labels) * epsilon
    vs = empty_version_space(
        H, task, n_classes if task is not Task.REGRESSION else 1, radius, epsilon
    )
    return Teacher(vs=add_labels(vs, X, y), theta=theta, X=X)


def min_normalised_slack(vs: VersionSpace, theta: NDArray[np.float64]) -> float:
    """Smallest slack of any row of ``vs`` at ``theta`` divided by its row norm (reference code,
    written with explicit rows and loops)."""
    rows, rhs = dense_rows(vs)
    s = rows @ theta.ravel() + rhs
    return float(np.min(s / np.linalg.norm(rows, axis=1)))


def dense_rows(vs: VersionSpace) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Every constraint as an explicit dense row (slack = row . theta + rhs): slow, obviously
    correct, tiny problems only. Per label: its 2 P K' pattern rows, then its cuts."""
    K, P, d = vs.n_outputs, vs.n_gates, vs.n_features
    rows: list[NDArray[np.float64]] = []
    rhs: list[float] = []

    def cut(
        x: NDArray[np.float64], D: NDArray[np.bool_], weights: list[float], offset: float
    ) -> None:
        a = np.zeros((K, 2, P, d))
        for k in range(K):
            for i in range(P):
                a[k, 0, i] = weights[k] * D[i] * x
                a[k, 1, i] = -weights[k] * D[i] * x
        rows.append(a.ravel())
        rhs.append(offset)

    for row in range(vs.n_labels):
        x = vs.X[row]
        D = vs.patterns[row]
        s = 2.0 * D - 1.0
        for k in range(K):
            for side in range(2):
                for i in range(P):
                    a = np.zeros((K, 2, P, d))
                    a[k, side, i] = s[i] * x
                    rows.append(a.ravel())
                    rhs.append(0.0)
        y = vs.y[row]
        if vs.task is Task.BINARY:
            cut(x, D, [1.0 if y == 1 else -1.0], 0.0)
        elif vs.task is Task.MULTICLASS:
            for k in range(vs.n_classes):
                if k != int(y):
                    w = [0.0] * vs.n_classes
                    w[int(y)], w[k] = 1.0, -1.0
                    cut(x, D, w, 0.0)
        else:
            cut(x, D, [1.0], vs.epsilon - y)
            cut(x, D, [-1.0], vs.epsilon + y)
    return np.array(rows), np.array(rhs)
