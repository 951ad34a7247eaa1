"""Regressions found in review: degenerate inputs, path independence, exports at the edges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from learner import (
    CenterStatus,
    LearnerConfig,
    LearnerState,
    analytic_center,
    center_network,
    diagnostics,
    init_state,
    query,
    rebuild,
    recenter,
    with_labels,
)
from learner.config import Task
from learner.estimator import CuttingPlaneClassifier
from learner.features import FeatureMap, Gates
from learner.network import ReLUNetwork
from learner.query import score_pool, select_batch
from learner.version_space import add_labels, empty_version_space

from .problems import min_normalised_slack, teacher_problem


def test_a_thin_but_consistent_regression_polytope_is_not_declared_empty():
    # The teacher satisfies every label with a normalised margin of ~1e-6 > margin_tol.
    teacher = teacher_problem(0, 5, d=6, n_gates=8, task=Task.REGRESSION, epsilon=1e-4)
    assert min_normalised_slack(teacher.vs, teacher.theta) > 0

    result = analytic_center(teacher.vs)

    assert result.status is CenterStatus.OPTIMAL, result.message
    assert result.conflicts == ()


def test_near_duplicates_with_contradicting_labels_are_named_up_front():
    rng = np.random.default_rng(0)
    teacher = teacher_problem(0, 20, 4, 6)
    x = teacher.X[5]
    copies = x + 1e-11 * rng.standard_normal((6, x.size))
    vs = add_labels(teacher.vs, copies, [0, 1, 0, 1, 0, 1])

    result = analytic_center(vs)

    assert result.success, result.message
    named = {i for group in result.conflicts for i in group}
    assert set(range(20, 26)) <= named  # all six copies go to review
    assert 5 in named  # and the original shares their (contradicted) cut


def test_rebuild_names_the_same_conflicts_as_incremental_recentring(seed):
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((200, 4))
    y = (np.sin(3 * pool @ rng.standard_normal(4)) > 0).astype(int)
    y[rng.choice(200, 25, replace=False)] ^= 1
    config = LearnerConfig(n_gates=3, seed=seed)
    order = rng.permutation(200)[:45]
    state = init_state(config, pool)
    for i in range(0, 45, 5):
        state = with_labels(state, pool[order[i : i + 5]], y[order[i : i + 5]])
        state, incremental = recenter(state)

    _, rebuilt = rebuild(config, pool, pool[order], y[order])

    assert incremental.status is rebuilt.status
    np.testing.assert_array_equal(incremental.active, rebuilt.active)
    assert sorted(incremental.conflicts) == sorted(rebuilt.conflicts)


def test_data_gate_states_round_trip_with_the_same_polytope():
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((300, 16))
    state = init_state(LearnerConfig(n_gates=16, gate_init="data", seed=0), pool)
    for i in range(0, 20, 4):  # labels in small batches, as annotators send them
        state = with_labels(state, pool[i : i + 4], rng.integers(0, 2, 4))
    state, result = recenter(state)
    assert result.success

    loaded = LearnerState.from_bytes(state.to_bytes())

    np.testing.assert_array_equal(loaded.version_space.patterns, state.version_space.patterns)
    diagnostics(loaded, pool, rng=0, max_eval=100)  # the stored centre is inside


def test_regression_queries_work_before_any_recentre():
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((50, 5))
    state = init_state(LearnerConfig(task="regression", n_gates=6, seed=0), pool)
    state = with_labels(state, pool[:3], [0.1, -0.2, 0.05])

    picked = query(state, pool, 4, rng=0)

    assert len(set(picked.indices.tolist())) == 4


def test_a_network_without_hidden_units_round_trips_through_json():
    state = init_state(LearnerConfig(n_gates=3, seed=0), np.ones((4, 3)))
    net = center_network(state)  # the ball centre: no units
    assert net.n_hidden == 0

    loaded = ReLUNetwork.from_dict(json.loads(net.to_json()))

    np.testing.assert_array_equal(loaded.predict(np.ones((2, 3))), net.predict(np.ones((2, 3))))


def test_an_all_zero_item_scores_infinity_without_a_bias_column():
    fm = FeatureMap(mean=np.zeros(3), components=None, bias=False)
    gates = Gates(weights=np.random.default_rng(0).standard_normal((4, 3)))
    theta = np.random.default_rng(1).standard_normal((1, 2, 4, 3))
    pool = np.vstack([np.zeros(3), np.ones(3)])

    scores = score_pool(pool, fm, gates, theta, Task.BINARY)

    assert scores[0] == np.inf and np.isfinite(scores[1])


def test_select_batch_accepts_a_list_or_integer_mask():
    scores = np.array([0.3, 0.1, 0.2, 0.4])

    picked = select_batch(scores, 2, np.random.default_rng(0), exclude=[0, 1, 0, 0])

    assert 1 not in picked.indices.tolist() and len(picked.indices) == 2
    with pytest.raises(ValueError, match="integer"):
        select_batch(scores, 2.0, np.random.default_rng(0))  # type: ignore[arg-type]


def test_estimator_checks_its_loss_before_the_expensive_centre():
    X = np.random.default_rng(0).standard_normal((20, 3))
    y = (X[:, 0] > 0).astype(int)

    with pytest.raises(ValueError, match="loss"):
        CuttingPlaneClassifier(loss="hinged").fit(X, y)


def test_enum_settings_are_case_insensitive():
    config = LearnerConfig(task="BINARY", projection="PCA", n_components=2)

    assert config.task is Task.BINARY and config.projection.value == "pca"


def test_empty_version_space_rejects_nothing_and_centres_at_zero():
    vs = empty_version_space(np.ones((2, 3)), Task.BINARY, 2, 1.0, 0.1)

    result = analytic_center(vs)

    assert result.status is CenterStatus.OPTIMAL and not result.x.any()
