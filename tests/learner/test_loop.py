"""The cutting-plane loop: every label counts, the stop reasons, batches, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from learner.config import LearnerConfig
from learner.loop import LoopOptions, run_loop
from learner.state import LearnerState, init_state

N_GATES = 8


class RecordingOracle:
    """Known labels for every pool item; remembers each batch it was asked for."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.calls: list[np.ndarray] = []

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        self.calls.append(np.array(idx))
        return self.labels[idx]


def _campaign(seed: int, n_pool: int = 200) -> tuple[LearnerState, np.ndarray, RecordingOracle]:
    """A pool labeled by a ReLU network on the campaign's own gates (realisable labels)."""
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((n_pool, 5))
    state = init_state(LearnerConfig(n_gates=N_GATES, seed=seed), E)
    X = state.feature_map.transform(E)
    a = rng.uniform(-1.0, 1.0, N_GATES)
    labels = (np.maximum(X @ state.gates.weights.T, 0.0) @ a > 0).astype(np.int64)
    return state, E, RecordingOracle(labels)


def test_loop_labels_exactly_max_labels_distinct_items_and_counts_every_label(seed):
    state, E, oracle = _campaign(seed)

    result, n_rounds = run_loop(state, E, oracle, LoopOptions(max_labels=15), seed)

    assert result.stopped == "max_labels"
    assert n_rounds == 15 and len(result.statuses) == 15
    assert len(result.labeled) == 15 and len(set(result.labeled.tolist())) == 15
    np.testing.assert_array_equal(np.concatenate(oracle.calls), result.labeled)
    # Every answer is a cut, whether or not the centre already predicted it.
    assert result.state.n_labels == 15
    np.testing.assert_array_equal(result.state.version_space.y, oracle.labels[result.labeled])
    np.testing.assert_array_equal(
        result.state.version_space.X, result.state.feature_map.transform(E[result.labeled])
    )
    assert result.state.round == 15


def test_loop_on_realisable_labels_reaches_the_analytic_centre_every_round(seed):
    state, E, oracle = _campaign(seed)

    result, _ = run_loop(state, E, oracle, LoopOptions(max_labels=15), seed)

    # The labels come from a network in the version space: no conflicts, and each warm-started
    # recentre must converge, not stop at the Newton iteration limit.
    assert result.statuses == ("optimal",) * 15
    assert result.state.conflicts == ()


def test_loop_stops_with_pool_exhausted_when_the_pool_is_smaller_than_the_budget(seed):
    state, E, oracle = _campaign(seed, n_pool=12)
    # Items with no active gate cut nothing (f = 0 for every network) and are never queried.
    selectable = int(state.gates.patterns(state.feature_map.transform(E)).any(axis=1).sum())

    result, n_rounds = run_loop(state, E, oracle, LoopOptions(max_labels=50), seed)

    assert result.stopped == "pool_exhausted"
    assert len(result.labeled) == selectable == n_rounds
    assert len(set(result.labeled.tolist())) == selectable


def test_loop_stops_as_converged_once_disagreement_is_below_the_threshold(seed):
    state, E, oracle = _campaign(seed)
    options = LoopOptions(max_labels=20, stop_disagreement=1.0)  # disagreement is always <= 1

    result, n_rounds = run_loop(state, E, oracle, options, seed)

    assert result.stopped == "converged"
    assert n_rounds == 1 and len(result.labeled) == 1


def test_loop_with_an_unreachable_threshold_runs_to_the_budget(seed):
    state, E, oracle = _campaign(seed)
    options = LoopOptions(max_labels=6, batch_size=2, stop_disagreement=-1.0)

    result, n_rounds = run_loop(state, E, oracle, options, seed)

    assert result.stopped == "max_labels"
    assert n_rounds == 3 and len(result.labeled) == 6


@pytest.mark.parametrize(("batch_size", "rounds"), [(4, 5), (3, 7)])
def test_batches_hold_distinct_items_and_the_last_batch_fills_the_budget(seed, batch_size, rounds):
    state, E, oracle = _campaign(seed)

    result, n_rounds = run_loop(
        state, E, oracle, LoopOptions(max_labels=20, batch_size=batch_size), seed
    )

    assert n_rounds == rounds
    sizes = [len(c) for c in oracle.calls]
    assert sizes == [batch_size] * (rounds - 1) + [20 - batch_size * (rounds - 1)]
    assert all(len(set(c.tolist())) == len(c) for c in oracle.calls)
    assert len(set(result.labeled.tolist())) == 20 == result.state.n_labels


def test_same_rng_seed_gives_the_same_labeled_indices(seed):
    state, E, oracle = _campaign(seed)
    options = LoopOptions(max_labels=12, batch_size=3)

    first, _ = run_loop(state, E, oracle, options, 123)
    second, _ = run_loop(state, E, oracle, options, np.random.default_rng(123))

    np.testing.assert_array_equal(first.labeled, second.labeled)
    np.testing.assert_array_equal(first.state.center, second.state.center)


@pytest.mark.parametrize(
    "kwargs", [{"max_labels": 0}, {"max_labels": 5, "batch_size": 0}], ids=["budget", "batch"]
)
def test_loop_options_reject_an_empty_budget_or_batch(kwargs):
    with pytest.raises(ValueError, match="max_labels and batch_size must be >= 1"):
        LoopOptions(**kwargs)
