"""The version space: every labeled point as structured constraints on theta.

theta = (theta_k) for k = 1..K' networks; theta_k = (u_ki, v_ki), i = 1..P, each in R^d.
We store the labeled features X_L, their gate patterns and their labels, never a dense
constraint matrix (docs/learner.md, "Model"). The constraints they stand for, per labeled x with
pattern D:

- pattern consistency (2 P K' rows): (2 D_i(x) - 1) x^T u_ki >= 0 and the same for v_ki;
- label cuts, with f_k(x) = sum_i D_i(x) x^T (u_ki - v_ki):
  * binary (1 cut):       y f(x) + delta R ||a|| >= 0, y in {-1, +1};
  * multi-class (K-1):    f_y(x) - f_k(x) + delta R ||a|| >= 0 for every k != y;
  * regression (2 cuts):  f(x) - y + eps >= 0 and y + eps - f(x) >= 0.

``||a||`` is the norm of the cut's row in theta-space, so a soft cut (docs/learner.md, "Soft
version space", eq. SV) admits every network within distance delta R of the label's half-space;
delta = 0 gives the hard cuts. Every label is a constraint, whether or not the current centre
already predicts it.

Deeper networks (:mod:`learner.lift`) use the same form with the P gates replaced by the G
lifted gates: the pattern rows use the first layer's bit of each gate (eq. D2), f_k has the
coefficients c_g(x) of eq. D1 instead of D_i(x), and each label brings the D3 rows of the upper
layers as extra cuts (``per_label`` grows by their number R times K').
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learner._validation import as_matrix
from learner.config import Task
from learner.lift import (
    first_layer_patterns,
    forward_bits,
    lifted_output,
    lifted_rows,
    n_lifted_gates,
    start_blocks,
)

#: Smallest delta that softens the cuts (10 times the default ``CenterOptions.margin_tol``).
MIN_SOFT_DELTA = 1e-4


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
    patterns : ndarray of bool, shape (n_labels, n_first)
        D(x) for each labeled item (the first hidden layer's bits at depth >= 3).
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
    upper_weights : tuple of ndarray, shapes (P_k, P_{k-1})
        Upper layers of the random network (depth >= 3; empty at depth 2).
    upper_patterns : tuple of bool ndarray, shapes (n_labels, P_k)
        Their pattern bits for each labeled item (stored, like ``patterns``).
    delta : float
        Softness of the classification cuts: the distance (as a fraction of ``radius``) by
        which a network may lie on the wrong side of a label's cut (eq. SV). 0 = hard cuts.
    """

    X: NDArray[np.float64]
    patterns: NDArray[np.bool_]
    y: NDArray[np.float64]
    gate_weights: NDArray[np.float64]
    task: Task
    n_classes: int
    radius: float
    epsilon: float = 0.1
    upper_weights: tuple[NDArray[np.float64], ...] = ()
    upper_patterns: tuple[NDArray[np.bool_], ...] = ()
    delta: float = 0.0
    _cuts: dict[str, LabelCuts] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_labels(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def depth(self) -> int:
        return 2 + len(self.upper_weights)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(P_1, ..., P_{L-1})."""
        return (int(self.gate_weights.shape[0]), *(int(W.shape[0]) for W in self.upper_weights))

    @property
    def n_gates(self) -> int:
        """Gates G with a (u, v) pair of blocks per output: P at depth 2, lifted deeper."""
        return n_lifted_gates(self.layer_sizes)

    @property
    def layer_bits(self) -> tuple[NDArray[np.bool_], ...]:
        """Pattern bits of every hidden layer, shapes (n_labels, P_1), ..., (n_labels, P_{L-1})."""
        return (self.patterns, *self.upper_patterns)

    @property
    def gate_patterns(self) -> NDArray[np.bool_]:
        """The bit of every pattern row (eq. D2), shape (n_labels, n_gates)."""
        if not self.upper_weights:
            return self.patterns
        return first_layer_patterns(self.layer_bits)

    @property
    def n_structural(self) -> int:
        """D3 rows per label and output (0 at depth 2)."""
        sizes, total = self.layer_sizes, 0
        for k in range(1, len(sizes)):
            rows = 1
            for P in sizes[k:]:
                rows *= 2 * P
            total += rows
        return total

    def start_blocks(self) -> NDArray[np.float64]:
        """A point inside every pattern and D3 row, shape (2, n_gates, n_features) (see
        :func:`learner.lift.start_blocks`; u_g = v_g = h_g at depth 2)."""
        return start_blocks(self.gate_weights, self.upper_weights)

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
        """Label cuts plus the D3 rows of every output."""
        label = {Task.BINARY: 1, Task.MULTICLASS: self.n_classes - 1, Task.REGRESSION: 2}
        return label[self.task] + self.n_structural * self.n_outputs

    @property
    def n_rows(self) -> int:
        """Number of half-spaces: label cuts (and D3 rows) plus pattern rows (ball not counted)."""
        return self.n_labels * (self.cuts_per_label + 2 * self.n_gates * self.n_outputs)

    @property
    def soft(self) -> bool:
        """Whether the classification cuts have an offset (a noise-tolerant version space).

        A delta below :data:`MIN_SOFT_DELTA` counts as 0: so close to the solver's
        ``margin_tol`` the offsets cannot keep contradicting labels apart, and the hard
        version space's safeguards (conflicts, phase I) are the right ones.
        """
        return self.delta >= MIN_SOFT_DELTA and self.task is not Task.REGRESSION

    def hard_label_cuts(self) -> LabelCuts:
        """The label cuts without their soft offsets or the D3 rows (cached)."""
        cached = self._cuts.get("hard")
        if cached is None:
            cached = build_label_cuts(
                self.output_coef(), self.y, self.task, self.n_classes, self.epsilon
            )
            self._cuts["hard"] = cached
        return cached

    def label_cuts(self) -> LabelCuts:
        """Coefficients of all label cuts (cached; the object is immutable)."""
        cached = self._cuts.get("all")
        if cached is None:
            cached = self.hard_label_cuts()
            if self.soft:
                cached = soften(cached, self.X, self.delta * self.radius)
            if self.upper_weights:
                structural = lifted_rows(self.layer_bits).structural
                cached = with_structural_rows(cached, structural, self.n_outputs)
            self._cuts["all"] = cached
        return cached

    def decision(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """The gated (lifted) model f_k(x) at every labeled point, shape (n_labels, K').

        Parameters
        ----------
        theta : ndarray of shape (K', 2, n_gates, n_features)
        """
        Z = np.einsum("nd,kgd->nkg", self.X, theta[:, 0] - theta[:, 1])
        return np.einsum("ng,nkg->nk", self.output_coef(), Z)

    def output_coef(self) -> NDArray[np.float64]:
        """The coefficient of x^T (u_g - v_g) in f at every labeled point, shape (n_labels, G):
        D(x) at depth 2, c(x) of eq. D1 deeper."""
        if not self.upper_weights:
            return self.patterns.astype(np.float64)
        return lifted_output(self.layer_bits)

    def margins(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Signed distance from ``theta`` to each label's hard cut, divided by R; shape
        (n_labels,). Binary: y f / ||a||; multi-class: the smallest (f_y - f_k) / ||a|| over
        k != y. Negative means the network gets the label wrong. Regression: the smaller
        slack of the two epsilon cuts over ||a||.
        """
        cuts = self.hard_label_cuts()
        L, C = self.n_labels, cuts.per_label
        Z = np.einsum("nd,kgd->nkg", self.X, theta[:, 0] - theta[:, 1])
        coef = cuts.coef.reshape(L, C, *cuts.coef.shape[1:])
        values = np.einsum("nckg,nkg->nc", coef, Z) + cuts.offset.reshape(L, C)
        norms = cut_norms(cuts, self.X).reshape(L, C)
        dist = values / np.maximum(norms, np.finfo(np.float64).tiny) / self.radius
        return dist.min(axis=1)

    def subset(self, index: NDArray[np.intp]) -> VersionSpace:
        """The version space of the labels ``index`` only."""
        return replace(
            self,
            X=self.X[index],
            patterns=self.patterns[index],
            upper_patterns=tuple(b[index] for b in self.upper_patterns),
            y=self.y[index],
            _cuts={},
        )


def build_label_cuts(
    patterns: NDArray[Any],
    y: NDArray[np.float64],
    task: Task,
    n_classes: int,
    epsilon: float,
) -> LabelCuts:
    """Label-cut coefficients (see module docstring), built by broadcasting.

    Parameters
    ----------
    patterns : ndarray of shape (n_labels, n_gates)
        The coefficient of x^T (u_g - v_g) in f: D(x) (bool) at depth 2, c(x) of eq. D1 deeper.
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


def soften(cuts: LabelCuts, X: NDArray[np.float64], margin: float) -> LabelCuts:
    """Give every classification cut the offset ``margin * ||a_q||`` (eq. SV).

    The row a_q of cut q acts on (u, v) as (+coef x, -coef x), so
    ``||a_q|| = ||x|| sqrt(2 sum_{k,g} coef[q, k, g]^2)``: the same norm the query rule and the
    solver's normalised slacks use. A network then satisfies the soft cut exactly when its
    signed distance to the hard cut's half-space is at least ``-margin``.

    Parameters
    ----------
    cuts : LabelCuts with coef of shape (n_labels * C, K', G)
        Label cuts only (before the D3 rows are appended).
    X : ndarray of shape (n_labels, n_features)
    margin : float
        delta R.
    """
    return replace(cuts, offset=cuts.offset + margin * cut_norms(cuts, X))


def cut_norms(cuts: LabelCuts, X: NDArray[np.float64]) -> NDArray[np.float64]:
    """``||a_q|| = ||x|| sqrt(2 sum_{k,g} coef[q, k, g]^2)`` for every cut, shape (n_cuts,).

    Parameters
    ----------
    cuts : LabelCuts with coef of shape (n_labels * C, K', G) (no D3 rows)
    X : ndarray of shape (n_labels, n_features)
    """
    x_norm = np.repeat(np.linalg.norm(X, axis=1), cuts.per_label)
    return x_norm * np.sqrt(2.0 * np.sum(cuts.coef**2, axis=(1, 2)))


def with_structural_rows(cuts: LabelCuts, structural: NDArray[np.float64], K: int) -> LabelCuts:
    """Append each label's D3 rows (eq. D3, offset 0) after its label cuts, once per output.

    Parameters
    ----------
    cuts : LabelCuts with coef of shape (L * C, K, G)
    structural : ndarray of shape (L, R, G)
    K : int
        Outputs K'; output k's copy of the rows acts on theta_k only.

    Returns
    -------
    LabelCuts with per_label C + K R
    """
    L, R, G = structural.shape
    C = cuts.per_label
    extra = np.zeros((L, K, R, K, G))
    for k in range(K):
        extra[:, k, :, k, :] = structural
    coef = np.concatenate(
        [cuts.coef.reshape(L, C, K, G), extra.reshape(L, K * R, K, G)], axis=1
    ).reshape(L * (C + K * R), K, G)
    offset = np.concatenate([cuts.offset.reshape(L, C), np.zeros((L, K * R))], axis=1).reshape(-1)
    return LabelCuts(coef=coef, offset=offset, per_label=C + K * R)


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
    upper_weights: tuple[NDArray[np.float64], ...] = (),
    delta: float = 0.0,
) -> VersionSpace:
    """A version space with no labels yet: the whole ball.

    ``upper_weights`` (shapes (P_k, P_{k-1})) make it a depth-(2 + len) version space;
    ``delta`` > 0 softens its classification cuts (eq. SV).
    """
    P, d = gate_weights.shape
    upper = tuple(np.asarray(W, dtype=np.float64) for W in upper_weights)
    return VersionSpace(
        X=np.zeros((0, d)),
        patterns=np.zeros((0, P), dtype=bool),
        y=np.zeros(0),
        gate_weights=np.asarray(gate_weights, dtype=np.float64),
        task=task,
        n_classes=n_classes,
        radius=radius,
        epsilon=epsilon,
        upper_weights=upper,
        upper_patterns=tuple(np.zeros((0, W.shape[0]), dtype=bool) for W in upper),
        delta=float(delta),
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
    bits = forward_bits(X_new, vs.gate_weights, vs.upper_weights)
    return replace(
        vs,
        X=np.concatenate([vs.X, X_new]),
        patterns=np.concatenate([vs.patterns, bits[0]]),
        upper_patterns=tuple(
            np.concatenate([old, new]) for old, new in zip(vs.upper_patterns, bits[1:], strict=True)
        ),
        y=np.concatenate([vs.y, y_arr]),
        _cuts={},
    )
