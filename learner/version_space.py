"""The version space: every labeled point as structured constraints on theta.

theta = (theta_k) for k = 1..K' networks; theta_k = (u_ki, v_ki), i = 1..P, each in R^d.
We store the labeled features X_L, their gate patterns and their labels, never a dense
constraint matrix (DESIGN §2). The constraints they stand for, per labeled x with pattern D:

- pattern consistency (2 P K' rows): (2 D_i(x) - 1) x^T u_ki >= 0 and the same for v_ki;
- label cuts, with f_k(x) = sum_i D_i(x) x^T (u_ki - v_ki):
  * binary (1 cut):       y f(x) >= 0, y in {-1, +1};
  * multi-class (K-1):    f_y(x) - f_k(x) >= 0 for every k != y;
  * regression (2 cuts):  f(x) - y + eps >= 0 and y + eps - f(x) >= 0.

Every label is a constraint, whether or not the current centre already predicts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learner._validation import as_matrix
from learner.config import Task
from learner.features import pattern_bits


@dataclass(frozen=True)
class LabelCuts:
    """Label cuts in coefficient form, label-major with ``per_label`` cuts per label.

    Cut q belongs to label ``q // per_label`` and has slack
    ``t_q = sum_{k,i} coef[q, k, i] * (x^T u_ki - x^T v_ki) + offset[q]``.

    Attributes
    ----------
    coef : ndarray of shape (n_cuts, n_outputs, n_gates)
    offset : ndarray of shape (n_cuts,)
    per_label : int
    """

    coef: NDArray[np.float64]
    offset: NDArray[np.float64]
    per_label: int


@dataclass(frozen=True, eq=False)
class VersionSpace:
    """Labeled points of one campaign, in feature space.

    Attributes
    ----------
    X : ndarray of shape (n_labels, n_features)
        Mapped features of the labeled items.
    patterns : ndarray of bool, shape (n_labels, n_gates)
        D(x) for each labeled item.
    y : ndarray of shape (n_labels,)
        Class index (0..K-1) for classification, target for regression.
    gate_weights : ndarray of shape (n_gates, n_features)
        The gates, needed for a cold start (u_i = v_i = h_i satisfies every pattern row).
    task : Task
    n_classes : int
    radius : float
        Ball ||theta|| <= radius.
    epsilon : float
        Regression tolerance.
    """

    X: NDArray[np.float64]
    patterns: NDArray[np.bool_]
    y: NDArray[np.float64]
    gate_weights: NDArray[np.float64]
    task: Task
    n_classes: int
    radius: float
    epsilon: float = 0.1
    _cuts: dict[str, LabelCuts] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_labels(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_gates(self) -> int:
        return int(self.gate_weights.shape[0])

    @property
    def n_outputs(self) -> int:
        """K' = number of networks sharing the gates."""
        return self.n_classes if self.task is Task.MULTICLASS else 1

    @property
    def n_variables(self) -> int:
        """Length of theta: 2 d P K'."""
        return 2 * self.n_features * self.n_gates * self.n_outputs

    @property
    def cuts_per_label(self) -> int:
        return {Task.BINARY: 1, Task.MULTICLASS: self.n_classes - 1, Task.REGRESSION: 2}[self.task]

    @property
    def n_rows(self) -> int:
        """Number of half-spaces: label cuts plus pattern rows (the ball not counted)."""
        return self.n_labels * (self.cuts_per_label + 2 * self.n_gates * self.n_outputs)

    def label_cuts(self) -> LabelCuts:
        """Coefficients of all label cuts (cached; the object is immutable)."""
        cached = self._cuts.get("all")
        if cached is None:
            cached = build_label_cuts(
                self.patterns, self.y, self.task, self.n_classes, self.epsilon
            )
            self._cuts["all"] = cached
        return cached

    def subset(self, index: NDArray[np.intp]) -> VersionSpace:
        """The version space of the labels ``index`` only."""
        return replace(
            self, X=self.X[index], patterns=self.patterns[index], y=self.y[index], _cuts={}
        )


def build_label_cuts(
    patterns: NDArray[np.bool_],
    y: NDArray[np.float64],
    task: Task,
    n_classes: int,
    epsilon: float,
) -> LabelCuts:
    """Label-cut coefficients (see module docstring), built by broadcasting.

    Parameters
    ----------
    patterns : ndarray of bool, shape (n_labels, n_gates)
    y : ndarray of shape (n_labels,)

    Returns
    -------
    LabelCuts with coef of shape (n_labels * per_label, n_outputs, n_gates)
    """
    D = patterns.astype(np.float64)
    L, P = D.shape
    if task is Task.BINARY:
        sign = 2.0 * y - 1.0  # class 1 -> +1, class 0 -> -1
        coef = (sign[:, None] * D)[:, None, :]
        return LabelCuts(coef=coef, offset=np.zeros(L), per_label=1)
    if task is Task.REGRESSION:
        coef = np.stack([D, -D], axis=1).reshape(2 * L, 1, P)
        offset = np.stack([epsilon - y, epsilon + y], axis=1).reshape(2 * L)
        return LabelCuts(coef=coef, offset=offset, per_label=2)
    K = n_classes
    yi = y.astype(np.intp)
    # For label l and every k != y_l: +D on class y_l, -D on class k.
    others = np.array([[k for k in range(K) if k != c] for c in range(K)], dtype=np.intp)
    other = others[yi]  # (L, K-1)
    onehot_y = np.eye(K)[yi]  # (L, K)
    onehot_k = np.eye(K)[other]  # (L, K-1, K)
    sel = onehot_y[:, None, :] - onehot_k  # (L, K-1, K)
    coef = (sel[..., None] * D[:, None, None, :]).reshape(L * (K - 1), K, P)
    return LabelCuts(coef=coef, offset=np.zeros(L * (K - 1)), per_label=K - 1)


def check_labels(y: Any, task: Task, n_classes: int, n: int) -> NDArray[np.float64]:
    """Validate labels at the public boundary and return them as float64, shape (n,)."""
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {arr.shape}")
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("y must be numeric (class indices or regression targets)") from None
    if not np.all(np.isfinite(out)):
        raise ValueError("y contains NaN or infinite values")
    if task is not Task.REGRESSION:
        bad = (out != np.round(out)) | (out < 0) | (out >= n_classes)
        if np.any(bad):
            first = arr[np.flatnonzero(bad)[0]]
            raise ValueError(f"class labels must be integers in [0, {n_classes}), got {first!r}")
    return out


def empty_version_space(
    gate_weights: NDArray[np.float64],
    task: Task,
    n_classes: int,
    radius: float,
    epsilon: float,
) -> VersionSpace:
    """A version space with no labels yet: the whole ball."""
    P, d = gate_weights.shape
    return VersionSpace(
        X=np.zeros((0, d)),
        patterns=np.zeros((0, P), dtype=bool),
        y=np.zeros(0),
        gate_weights=np.asarray(gate_weights, dtype=np.float64),
        task=task,
        n_classes=n_classes,
        radius=radius,
        epsilon=epsilon,
    )


def add_labels(vs: VersionSpace, X_new: Any, y_new: Any) -> VersionSpace:
    """Return a new version space with the labeled points appended.

    Parameters
    ----------
    vs : VersionSpace
    X_new : array-like of shape (n_new, n_features)
        Mapped features (after :meth:`FeatureMap.transform`).
    y_new : array-like of shape (n_new,)
    """
    X_new = as_matrix(X_new, "X_new", n_features=vs.n_features)
    if np.any(np.all(X_new == 0.0, axis=1)):
        raise ValueError("a labeled feature vector is all zeros; it defines no constraint")
    y_arr = check_labels(y_new, vs.task, vs.n_classes, X_new.shape[0])
    pat = pattern_bits(X_new, vs.gate_weights)
    return replace(
        vs,
        X=np.concatenate([vs.X, X_new]),
        patterns=np.concatenate([vs.patterns, pat]),
        y=np.concatenate([vs.y, y_arr]),
        _cuts={},
    )
