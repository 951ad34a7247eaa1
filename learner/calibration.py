"""Calibrated class probabilities for the centre network, from out-of-fold scores.

The centre's raw scores are tiny (about +-0.05 on sentence embeddings: the ball radius only
scales theta, docs/learner.md, "Model"), so a softmax of them says ~50% for everything. They
are turned into probabilities by temperature scaling (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017; for one binary score, Platt scaling without or with a bias,
Platt 1999), docs/learner.md, "Calibration", eq. CAL:

    binary:       p(y = 1 | x) = sigmoid(s(x) / T + b)
    multi-class:  p(y = k | x) = softmax_k(s(x) / T)

T > 0 (and b, when asked for) minimise the cross-entropy of *out-of-fold* scores: the labels
are split into K stratified folds, the centre of the other folds' labels scores each fold
(:func:`out_of_fold_scores`), so every score comes from a network that never saw its label.
The targets are Platt's smoothed ones (eq. CAL-T): a label of class k counts as
1 - 1/(n_k + 2) for its class, so a handful of perfectly separated labels does not give
T -> 0 (certainty). The same out-of-fold predictions give the cross-validated accuracy.

Without a bias the temperature never changes which class is predicted, only how sure.
"""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize, minimize_scalar

from learner._options import CenterOptions
from learner.center import CenterStatus, analytic_center
from learner.config import Task
from learner.delta import _folds
from learner.network import ReLUNetwork, network_from_theta
from learner.state import LearnerState

#: Fewest labels calibration is fitted on; below it :attr:`CalibrationStatus.TOO_FEW_LABELS`.
MIN_LABELS = 10

#: At most this many labels are held out (scored) across the folds; the rest always train.
MAX_HELD_OUT = 500

#: Bounds of 1/T relative to the scores' root mean square (eq. CAL): generous, never binding
#: on real scores, but keep a degenerate fit finite.
_SCALE_BOUNDS = (1e-3, 1e3)


class CalibrationStatus(enum.Enum):
    """Outcome of :func:`calibrate`."""

    #: T (and b) were fitted on out-of-fold scores.
    FITTED = "fitted"
    #: Fewer than ``min_labels`` labels, or a class with fewer than 2: T = 1, no estimate.
    TOO_FEW_LABELS = "too_few_labels"
    #: No usable centre (no recentre yet, or it found no interior).
    NO_CENTRE = "no_centre"
    #: Regression: there are no class probabilities.
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class Calibration:
    """Temperature (and bias) for a network's scores, and what cross-validation measured.

    Attributes
    ----------
    status : CalibrationStatus
    temperature : float
        T > 0 of eq. CAL, in the units of the raw scores (1.0 when not fitted).
    bias : float
        b of eq. CAL (binary only; 0 unless fitted with ``bias=True``).
    accuracy : float or None
        Out-of-fold accuracy: the cross-validated estimate from the labels so far.
    n_labels : int
        Labels scored out of fold.
    n_folds : int
    log_loss_raw : float or None
        Mean log loss of the out-of-fold scores with T = 1, b = 0.
    log_loss : float or None
        The same after calibration.
    seconds : float
        Wall time of :func:`calibrate`.
    """

    status: CalibrationStatus
    temperature: float = 1.0
    bias: float = 0.0
    accuracy: float | None = None
    n_labels: int = 0
    n_folds: int = 0
    log_loss_raw: float | None = None
    log_loss: float | None = None
    seconds: float = 0.0

    @property
    def fitted(self) -> bool:
        return self.status is CalibrationStatus.FITTED

    def probabilities(self, scores: Any, task: Task) -> NDArray[np.float64]:
        """Class probabilities of raw scores (eq. CAL).

        Parameters
        ----------
        scores : array-like of shape (n, 1) binary or (n, K) multi-class
            :meth:`learner.ReLUNetwork.scores`.
        task : Task

        Returns
        -------
        ndarray of shape (n, 2) binary or (n, K)
        """
        return probabilities(scores, task, self.temperature, self.bias)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (the status as its value)."""
        out = asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["status"] = CalibrationStatus(known.get("status", "too_few_labels"))
        return cls(**known)


def probabilities(
    scores: Any, task: Task, temperature: float = 1.0, bias: float = 0.0
) -> NDArray[np.float64]:
    """Eq. CAL: sigmoid(s / T + b) for one binary score, softmax(s / T) otherwise.

    Parameters
    ----------
    scores : array-like of shape (n, 1) binary or (n, K) multi-class
    task : Task
    temperature : float
        T > 0.
    bias : float
        b (binary only).

    Returns
    -------
    ndarray of shape (n, 2) binary (columns: class 0, class 1) or (n, K)
    """
    if task is Task.REGRESSION:
        raise ValueError("regression has no class probabilities")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    z = s / temperature
    if task is Task.BINARY:
        p1 = _sigmoid(z[:, 0] + bias)
        return np.column_stack([1.0 - p1, p1])
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.exp(-np.logaddexp(0.0, -z))
    return out


def _log_probabilities(
    s: NDArray[np.float64], task: Task, a: float, b: float
) -> NDArray[np.float64]:
    """log p of eq. CAL with a = 1/T, shape (n, 2) or (n, K), computed stably."""
    if task is Task.BINARY:
        z = a * s[:, 0] + b
        return np.column_stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)])
    z = a * s
    out: NDArray[np.float64] = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    return out


def smoothed_targets(y: NDArray[np.intp], n_classes: int) -> NDArray[np.float64]:
    """Platt's targets (eq. CAL-T), shape (n, n_classes): a label of class k puts
    1 - 1/(n_k + 2) on k and spreads 1/(n_k + 2) evenly over the other classes."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    eps = 1.0 / (counts[y] + 2.0)
    T = np.repeat((eps / (n_classes - 1))[:, None], n_classes, axis=1)
    T[np.arange(y.size), y] = 1.0 - eps
    return T


def log_loss(scores: Any, y: Any, task: Task, temperature: float = 1.0, bias: float = 0.0) -> float:
    """Mean negative log-likelihood of the labels ``y`` (class indices, shape (n,)) under
    eq. CAL applied to ``scores`` (shape (n, 1) or (n, K))."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    yi = np.asarray(y, dtype=np.intp)
    logp = _log_probabilities(s, task, 1.0 / temperature, bias)
    return float(-np.mean(logp[np.arange(yi.size), yi]))


def expected_calibration_error(
    probs: NDArray[np.float64], y: NDArray[np.intp], n_bins: int = 10
) -> float:
    """ECE of the top-class confidence (Guo et al. 2017): sum over equal-width confidence bins
    of (bin share) x |accuracy - mean confidence|.

    Parameters
    ----------
    probs : ndarray of shape (n, K)
    y : ndarray of int, shape (n,)
    n_bins : int
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.intp), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def fit_temperature(scores: Any, y: Any, task: Task, *, bias: bool = False) -> tuple[float, float]:
    """T (and b) of eq. CAL minimising the cross-entropy against the targets of eq. CAL-T.

    Parameters
    ----------
    scores : array-like of shape (n, 1) binary or (n, K) multi-class
        Out-of-fold scores.
    y : array-like of int, shape (n,)
        Class indices.
    task : Task
        BINARY or MULTICLASS.
    bias : bool
        Also fit b (binary only; it can move the decision threshold).

    Returns
    -------
    (temperature, bias) : tuple of float; temperature > 0.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    yi = np.asarray(y, dtype=np.intp)
    n_classes = 2 if task is Task.BINARY else s.shape[1]
    targets = smoothed_targets(yi, n_classes)
    centred = s if task is Task.BINARY else s - s.mean(axis=1, keepdims=True)
    rms = float(np.sqrt(np.mean(centred**2)))
    if not rms > 0:
        return 1.0, 0.0  # constant scores: nothing to scale
    lo, hi = np.log(_SCALE_BOUNDS[0] / rms), np.log(_SCALE_BOUNDS[1] / rms)

    def loss(log_a: float, b: float = 0.0) -> float:
        logp = _log_probabilities(s, task, float(np.exp(log_a)), b)
        return float(-np.mean(np.sum(targets * logp, axis=1)))

    # Cross-entropy is convex in a = 1/T (a log-sum-exp of linear functions of a), so the
    # bounded 1-D search finds its minimum.
    found = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
    log_a, b = float(found.x), 0.0
    if bias and task is Task.BINARY:
        # Platt: jointly convex in (a, b); started from the temperature-only fit.
        joint = minimize(
            lambda v: loss(float(v[0]), float(v[1])),
            np.array([log_a, 0.0]),
            method="L-BFGS-B",
            bounds=[(lo, hi), (None, None)],
        )
        log_a, b = float(joint.x[0]), float(joint.x[1])
    return float(np.exp(-log_a)), b


def network_scores(net: ReLUNetwork, X: NDArray[np.float64]) -> NDArray[np.float64]:
    """The network's scores on *mapped* features ``X`` (shape (n, n_features), bias column
    included), shape (n, n_outputs): :meth:`ReLUNetwork.scores` without the feature map."""
    h = np.maximum(X @ net.W1.T, 0.0)
    for H in net.hidden:
        h = np.maximum(h @ H.T, 0.0)
    out: NDArray[np.float64] = h @ net.W2
    return out


def out_of_fold_scores(
    state: LearnerState,
    rng: np.random.Generator,
    *,
    n_folds: int = 5,
    max_held_out: int = MAX_HELD_OUT,
    options: CenterOptions | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.intp], int]:
    """Scores of labels by centres that did not see them (stratified K-fold).

    At most ``max_held_out`` active labels (drawn by ``rng``) are split into folds; the
    centre of every other active label scores each fold with the served ReLU network
    (:func:`learner.center_network`'s map of eq. D4). Every fold solve is warm-started from
    the state's centre: dropping labels only removes rows, so it is strictly feasible, and no
    phase I is needed.

    Parameters
    ----------
    state : LearnerState
        With a usable centre (:func:`calibrate` checks).
    rng : numpy.random.Generator
        Draws the held-out labels and the folds.
    n_folds : int
        Folds (fewer when the rarest class has fewer held-out labels).
    max_held_out : int
    options : CenterOptions, optional
        Fold solves' tolerances (default ``tol=1e-6``, as :func:`learner.delta.choose_delta`).

    Returns
    -------
    scores : ndarray of shape (m, n_outputs)
    y : ndarray of int, shape (m,)
        Their labels.
    n_folds : int
        Folds used (0 when they could not be formed: fewer than two labels of some class).
    """
    vs = state.version_space
    active = state.active if state.active is not None else np.ones(vs.n_labels, dtype=bool)
    labels = np.flatnonzero(active)
    if labels.size > max_held_out:
        labels = np.sort(rng.choice(labels, size=max_held_out, replace=False))
    y_all = vs.y.astype(np.intp)
    y = y_all[labels]
    counts = np.bincount(y, minlength=max(state.config.n_classes, 2))
    folds = int(min(n_folds, counts[counts > 0].min())) if np.count_nonzero(counts) > 1 else 0
    if folds < 2:
        return np.zeros((0, vs.n_outputs)), y[:0], 0
    opts = options or CenterOptions(tol=1e-6)
    fold = _folds(y.astype(np.float64), folds, rng)
    cfg = state.config
    scores = np.empty((labels.size, vs.n_outputs))
    for j in range(folds):
        held = labels[fold == j]
        train = np.flatnonzero(active)
        train = train[~np.isin(train, held)]
        result = analytic_center(vs.subset(train), start=state.center, options=opts)
        net = network_from_theta(
            result.x, state.feature_map, cfg.task, cfg.n_classes, sizes=state.gates.sizes
        )
        scores[fold == j] = network_scores(net, vs.X[held])
    return scores, y, folds


def calibrate(
    state: LearnerState,
    rng: np.random.Generator,
    *,
    n_folds: int = 5,
    min_labels: int = MIN_LABELS,
    max_held_out: int = MAX_HELD_OUT,
    bias: bool = False,
    options: CenterOptions | None = None,
) -> Calibration:
    """Fit eq. CAL for the state's centre network on out-of-fold scores.

    Parameters
    ----------
    state : LearnerState
        Recentred on its current labels.
    rng : numpy.random.Generator
        Draws the folds; the same generator state gives the same result.
    n_folds : int
        K of the K-fold split (cost: K warm-started centre solves).
    min_labels : int
        Fewer active labels give :attr:`CalibrationStatus.TOO_FEW_LABELS`.
    max_held_out : int
        See :func:`out_of_fold_scores`.
    bias : bool
        Fit b as well (binary only).
    options : CenterOptions, optional

    Returns
    -------
    Calibration
    """
    started = time.perf_counter()
    cfg = state.config
    if cfg.task is Task.REGRESSION:
        return Calibration(CalibrationStatus.NOT_APPLICABLE)
    usable = (
        state.center is not None
        and state.active is not None
        and len(state.active) == state.n_labels
        and state.center_status
        in (
            CenterStatus.OPTIMAL.value,
            CenterStatus.CONFLICTS_EXCLUDED.value,
            CenterStatus.MAX_ITER.value,
        )
    )
    if not usable or state.active is None:
        return Calibration(CalibrationStatus.NO_CENTRE, n_labels=state.n_labels)
    n_active = int(np.count_nonzero(state.active))
    if n_active < min_labels:
        return Calibration(CalibrationStatus.TOO_FEW_LABELS, n_labels=n_active)
    scores, y, folds = out_of_fold_scores(
        state, rng, n_folds=n_folds, max_held_out=max_held_out, options=options
    )
    if folds < 2:
        return Calibration(CalibrationStatus.TOO_FEW_LABELS, n_labels=n_active)
    temperature, b = fit_temperature(scores, y, cfg.task, bias=bias)
    if cfg.task is Task.BINARY:
        predicted = (scores[:, 0] + temperature * b > 0).astype(np.intp)
    else:
        predicted = np.argmax(scores, axis=1)
    return Calibration(
        CalibrationStatus.FITTED,
        temperature=temperature,
        bias=b,
        accuracy=float(np.mean(predicted == y)),
        n_labels=int(y.size),
        n_folds=folds,
        log_loss_raw=log_loss(scores, y, cfg.task),
        log_loss=log_loss(scores, y, cfg.task, temperature, b),
        seconds=time.perf_counter() - started,
    )
