"""The cutting-plane active-learning loop (docs/learner.md: centre, queries, diagnostics), kept
apart from its pieces.

The oracle turns queried items into labels (an annotator, or known labels in a benchmark);
:mod:`learner.version_space` turns labels into cuts; :mod:`learner.center` recentres the
localization set; :mod:`learner.query` picks the next items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learner._validation import as_pool, as_rng
from learner.center import CenterOptions
from learner.query import PoolExhaustedError
from learner.state import LearnerState, diagnostics, query, recenter, with_labels

#: Maps pool indices (shape (k,)) to their labels (shape (k,)).
Oracle = Callable[[NDArray[np.intp]], Any]


@dataclass(frozen=True)
class LoopOptions:
    """Budget and stop rule of :func:`run_loop`.

    Parameters
    ----------
    max_labels : int
        Labels to collect at most (every label counts).
    batch_size : int
        Items queried per round (one per concurrent annotator).
    stop_disagreement : float or None
        Stop once the version-space disagreement is at most this (checked every round).
    diversity : float
        Batch diversity weight (see :func:`learner.query.select_batch`).
    center : CenterOptions
    """

    max_labels: int
    batch_size: int = 1
    stop_disagreement: float | None = None
    diversity: float = 1.0
    center: CenterOptions = field(default_factory=CenterOptions)

    def __post_init__(self) -> None:
        if self.max_labels < 1 or self.batch_size < 1:
            raise ValueError("max_labels and batch_size must be >= 1")


@dataclass(frozen=True)
class LoopResult:
    """Outcome of :func:`run_loop`.

    Attributes
    ----------
    state : LearnerState
    labeled : ndarray of intp
        Pool indices in the order they were labeled.
    statuses : tuple of str
        Centre status after each round.
    stopped : str
        "max_labels", "converged" or "pool_exhausted".
    """

    state: LearnerState
    labeled: NDArray[np.intp]
    statuses: tuple[str, ...]
    stopped: str


def run_loop(
    state: LearnerState, E_pool: Any, oracle: Oracle, options: LoopOptions, rng: Any
) -> tuple[LoopResult, int]:
    """Query, label, cut, recentre until the budget or the stop rule ends it.

    Returns
    -------
    (LoopResult, n_rounds)
    """
    gen = as_rng(rng)
    E_pool = as_pool(E_pool, "E_pool", n_features=state.feature_map.n_raw)
    taken = np.zeros(E_pool.shape[0], dtype=bool)
    order: list[int] = []
    statuses: list[str] = []
    stopped = "max_labels"
    n_iter = 0
    while len(order) < options.max_labels:
        k = min(options.batch_size, options.max_labels - len(order))
        try:
            picked = query(state, E_pool, k, gen, exclude=taken, diversity=options.diversity)
        except PoolExhaustedError:
            stopped = "pool_exhausted"
            break
        idx = picked.indices
        state = with_labels(state, E_pool[idx], oracle(idx))
        taken[idx] = True
        order.extend(int(i) for i in idx)
        state, result = recenter(state, options.center)
        statuses.append(result.status.value)
        n_iter += 1
        if options.stop_disagreement is not None and result.success:
            diag = diagnostics(state, E_pool, gen, threshold=options.stop_disagreement)
            if diag.stop:
                stopped = "converged"
                break
    result_obj = LoopResult(state, np.asarray(order, dtype=np.intp), tuple(statuses), stopped)
    return result_obj, n_iter
