"""Choosing the softness delta of the label cuts from the labels themselves.

The soft version space (docs/learner.md, "Soft version space", eq. SV) gives every label cut an
offset delta R ||a||. How much softness helps depends on how noisy the labels are and on how
many there are, so a campaign can let the learner pick delta by K-fold cross-validation on its
own labels (:func:`choose_delta`): for each delta of a small grid, centre the version space of
K - 1 folds and score the held-out fold with the centre's gated model; the best mean held-out
accuracy wins (ties go to the smaller delta).

It is cheap because every solve is warm-started without phase I: a fold's version space at
delta contains its version space at any smaller delta (the offsets only grow), so the centre
found for the previous delta of the grid is strictly feasible for the next one, and the first
delta starts from the cold start, which every soft cut admits (f = 0 there).

Which labels are cross-validated is a pure function of the labels (:func:`checkpoint`), so an
incremental campaign and a rebuild choose the same delta.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from learner._options import CenterOptions
from learner.center import analytic_center
from learner.config import Task
from learner.version_space import VersionSpace

#: Deltas tried by :func:`choose_delta` (fractions of R, eq. SV), increasing.
DELTA_GRID: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016)

#: Labels over which the softness ramps up from 0 to its full level (:func:`ramp`).
RAMP_LABELS = 100


def ramp(n_labels: int) -> float:
    """The share of its level delta has with ``n_labels`` labels: min(1, n / RAMP_LABELS).

    Few labels carry little noise to give up and every one of them matters, while the
    hard centre's interpolation only costs once there are hundreds (docs/learner.md, "Soft
    version space"): on the tuning splits a full-strength delta cost up to 11 points at 20
    labels (AG News) and gained 1 to 3 points from 200 on.
    """
    return min(1.0, n_labels / RAMP_LABELS)


#: Fewest labels cross-validation is run on; below it the configured delta stays.
MIN_CV_LABELS = 20

#: Cross-validation reruns when the label count has grown by this factor (log-spaced).
CV_GROWTH = 1.5


class DeltaStatus(enum.Enum):
    """Outcome of :func:`choose_delta`."""

    #: delta is the grid value with the best held-out accuracy.
    CHOSEN = "chosen"
    #: Too few labels (or a single class): the fallback delta was kept.
    TOO_FEW_LABELS = "too_few_labels"
    #: Regression has no label cuts to soften: the fallback delta was kept.
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class DeltaResult:
    """Result of :func:`choose_delta`.

    Attributes
    ----------
    delta : float
        The chosen softness (the fallback unless ``status`` is CHOSEN).
    status : DeltaStatus
    grid : tuple of float
        The deltas tried (empty when none was).
    scores : ndarray of shape (len(grid),)
        Mean held-out accuracy of each delta.
    n_labels : int
        Labels cross-validated.
    n_folds : int
    """

    delta: float
    status: DeltaStatus
    grid: tuple[float, ...]
    scores: NDArray[np.float64]
    n_labels: int
    n_folds: int


def checkpoint(n_labels: int) -> int:
    """The number of leading labels delta is cross-validated on when there are ``n_labels``.

    0 below :data:`MIN_CV_LABELS`, then the largest of MIN_CV_LABELS * CV_GROWTH^j (rounded
    down) that is <= ``n_labels``: 20, 30, 45, 67, 101, ... So delta changes at log-spaced
    label counts only, and is the same however the labels arrived.
    """
    if n_labels < MIN_CV_LABELS:
        return 0
    j = 0
    while int(MIN_CV_LABELS * CV_GROWTH ** (j + 1)) <= n_labels:
        j += 1
    return int(MIN_CV_LABELS * CV_GROWTH**j)


def _folds(y: NDArray[np.float64], n_folds: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """Stratified fold index of every label, shape (n,)."""
    fold = np.empty(y.shape[0], dtype=np.intp)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        members = members[rng.permutation(members.size)]
        fold[members] = (np.arange(members.size) + int(rng.integers(n_folds))) % n_folds
    return fold


def choose_delta(
    vs: VersionSpace,
    rng: np.random.Generator,
    *,
    grid: tuple[float, ...] = DELTA_GRID,
    n_folds: int = 5,
    fallback: float | None = None,
    options: CenterOptions | None = None,
) -> DeltaResult:
    """Pick delta by stratified K-fold cross-validation on the labels of ``vs``.

    Parameters
    ----------
    vs : VersionSpace
        The labels to cross-validate (its own ``delta`` is ignored).
    rng : numpy.random.Generator
        Draws the folds.
    grid : tuple of float
        Candidate deltas, each in (0, 1).
    n_folds : int
        Folds (fewer when the rarest class has fewer labels; at least 2).
    fallback : float, optional
        Returned when cross-validation cannot run (default: ``vs.delta``).
    options : CenterOptions, optional
        Tolerances of the fold solves (default: ``tol=1e-6``; a fold's prediction does not
        need the last digits of its centre).

    Returns
    -------
    DeltaResult
    """
    keep = vs.delta if fallback is None else fallback
    if vs.task is Task.REGRESSION:
        return DeltaResult(keep, DeltaStatus.NOT_APPLICABLE, (), np.zeros(0), vs.n_labels, 0)
    if not grid or any(not 0 < g < 1 for g in grid):
        raise ValueError(f"grid must hold deltas in (0, 1), got {grid}")
    counts = np.unique(vs.y, return_counts=True)[1]
    folds = int(min(n_folds, counts.min())) if counts.size > 1 else 0
    if vs.n_labels < MIN_CV_LABELS or folds < 2:
        return DeltaResult(keep, DeltaStatus.TOO_FEW_LABELS, (), np.zeros(0), vs.n_labels, 0)
    opts = options or CenterOptions(tol=1e-6)
    ordered = tuple(sorted(grid))
    fold = _folds(vs.y, folds, rng)
    correct = np.zeros(len(ordered))
    for j in range(folds):
        train, test = np.flatnonzero(fold != j), np.flatnonzero(fold == j)
        held = vs.subset(test)
        start = None
        for i, delta in enumerate(ordered):
            sub = replace(vs.subset(train), delta=delta, _cuts={})
            result = analytic_center(sub, start=start, options=opts)
            start = result.x
            f = held.decision(result.x)
            if vs.task is Task.BINARY:
                pred = (f[:, 0] > 0).astype(np.float64)
            else:
                pred = np.argmax(f, axis=1).astype(np.float64)
            correct[i] += float(np.sum(pred == held.y))
    scores = correct / vs.n_labels
    best = int(np.flatnonzero(scores >= scores.max() - 1e-12)[0])  # ties: the smaller delta
    return DeltaResult(ordered[best], DeltaStatus.CHOSEN, ordered, scores, vs.n_labels, folds)
