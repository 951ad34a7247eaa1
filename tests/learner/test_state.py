"""Learner state: plain-array persistence, reproducibility from labels + seed, final networks."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from learner.center import CenterStatus
from learner.config import GateInit, LearnerConfig, Projection, Task
from learner.state import (
    STATE_VERSION,
    LearnerState,
    center_network,
    fit_network,
    init_state,
    rebuild,
    recenter,
    with_labels,
)

N_GATES = 8


def _pool(seed: int, n: int = 150, dim: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


def _gate_teacher_labels(state: LearnerState, E: np.ndarray, seed: int) -> np.ndarray:
    """Labels of a ReLU network whose hidden units are the state's own gates.

    sum_i a_ki relu(h_i^T x) is the gated model with u_ki = a_ki^+ h_i and v_ki = a_ki^- h_i,
    which satisfies every pattern row, so the labels are realisable (the polytope has an
    interior).
    """
    K = state.config.n_outputs
    a = np.random.default_rng(seed + 1000).uniform(-1.0, 1.0, (state.gates.n_gates, K))
    X = state.feature_map.transform(E)
    scores = np.maximum(X @ state.gates.weights.T, 0.0) @ a
    if state.config.task is Task.BINARY:
        return (scores[:, 0] > 0).astype(np.int64)
    return np.argmax(scores, axis=1)


def _labeled_state(seed: int, config: LearnerConfig, n_labels: int = 30):
    E = _pool(seed)
    state = init_state(config, E)
    y = _gate_teacher_labels(state, E, seed)
    idx = np.random.default_rng(seed).permutation(E.shape[0])[:n_labels]
    return state, E, idx, y


def _npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _assert_same_state(a: LearnerState, b: LearnerState) -> None:
    assert a.config == b.config
    assert a.round == b.round and a.center_status == b.center_status
    assert a.conflicts == b.conflicts
    np.testing.assert_array_equal(a.gates.weights, b.gates.weights)
    np.testing.assert_array_equal(a.feature_map.mean, b.feature_map.mean)
    assert a.feature_map.bias == b.feature_map.bias
    if a.feature_map.components is None:
        assert b.feature_map.components is None
    else:
        np.testing.assert_array_equal(a.feature_map.components, b.feature_map.components)
    va, vb = a.version_space, b.version_space
    np.testing.assert_array_equal(va.X, vb.X)
    np.testing.assert_array_equal(va.y, vb.y)
    np.testing.assert_array_equal(va.patterns, vb.patterns)
    assert (va.task, va.n_classes, va.radius, va.epsilon) == (
        vb.task,
        vb.n_classes,
        vb.radius,
        vb.epsilon,
    )
    for x, y in ((a.center, b.center), (a.active, b.active)):
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype


def test_bytes_round_trip_keeps_every_array_and_field_including_conflicts(seed):
    # Hard cuts (delta = 0), so that the contradiction below is a conflict.
    config = LearnerConfig(n_gates=N_GATES, seed=seed, delta=0.0)
    state, E, idx, y = _labeled_state(seed, config)
    state = with_labels(state, E[idx], y[idx])
    # The same item with the other label: a conflict the centre must name and exclude.
    state = with_labels(state, E[idx[:1]], 1 - y[idx[:1]])
    state, result = recenter(state)
    assert result.status is CenterStatus.CONFLICTS_EXCLUDED
    assert state.conflicts and not state.active.all()

    loaded = LearnerState.from_bytes(state.to_bytes())

    _assert_same_state(state, loaded)


def test_bytes_round_trip_of_a_state_without_labels_or_centre():
    state = init_state(LearnerConfig(n_gates=N_GATES), _pool(0))

    loaded = LearnerState.from_bytes(state.to_bytes())

    _assert_same_state(state, loaded)
    assert loaded.center is None and loaded.n_labels == 0 and loaded.round == 0


def test_state_bytes_load_with_numpy_without_pickle(seed):
    state, E, idx, y = _labeled_state(seed, LearnerConfig(n_gates=N_GATES, seed=seed))
    state, _ = recenter(with_labels(state, E[idx], y[idx]))

    arrays = _npz_arrays(state.to_bytes())

    assert {"header", "gates", "X", "y", "center", "active"} <= set(arrays)
    assert all(a.dtype.kind != "O" for a in arrays.values())
    assert json.loads(str(arrays["header"]))["format"] == "carve-learner-state"
    np.testing.assert_array_equal(arrays["center"], state.center)


@pytest.mark.parametrize("projection", [Projection.PCA, Projection.RANDOM])
def test_projected_state_round_trips_with_n_components_plus_bias_features(seed, projection):
    config = LearnerConfig(n_gates=N_GATES, projection=projection, n_components=3, seed=seed)
    state, E, idx, y = _labeled_state(seed, config)
    state, _ = recenter(with_labels(state, E[idx], y[idx]))

    loaded = LearnerState.from_bytes(state.to_bytes())

    _assert_same_state(state, loaded)
    assert loaded.feature_map.n_features == 3 + 1
    assert loaded.gates.weights.shape == (N_GATES, 4)
    assert loaded.version_space.X.shape == (30, 4)
    assert loaded.center.shape == (1, 2, N_GATES, 4)
    np.testing.assert_array_equal(loaded.feature_map.transform(E), state.feature_map.transform(E))


@pytest.mark.parametrize(("task", "n_classes"), [(Task.BINARY, 2), (Task.MULTICLASS, 3)])
def test_incremental_state_equals_a_rebuild_from_labels_and_seed(seed, task, n_classes):
    config = LearnerConfig(task=task, n_classes=n_classes, n_gates=N_GATES, seed=seed)
    state, E, idx, y = _labeled_state(seed, config, n_labels=40)
    for batch in np.array_split(idx, 4):
        state = with_labels(state, E[batch], y[batch])
        state, incremental = recenter(state)
        assert incremental.status is CenterStatus.OPTIMAL

    rebuilt, cold = rebuild(config, E, E[idx], y[idx])

    assert cold.status is CenterStatus.OPTIMAL
    np.testing.assert_array_equal(rebuilt.gates.weights, state.gates.weights)
    np.testing.assert_array_equal(rebuilt.version_space.X, state.version_space.X)
    # The analytic centre is unique: warm-started and cold-started solves find the same point.
    assert abs(cold.objective - incremental.objective) <= 1e-8 * abs(incremental.objective)
    np.testing.assert_allclose(rebuilt.center, state.center, atol=1e-4 * np.abs(state.center).max())


def test_rebuild_without_labels_gives_the_centre_of_the_ball():
    config = LearnerConfig(n_gates=N_GATES)

    state, result = rebuild(config, _pool(0), np.zeros((0, 5)), [])

    assert result.status is CenterStatus.OPTIMAL
    assert state.n_labels == 0 and np.all(state.center == 0)


@pytest.mark.parametrize("gate_init", list(GateInit))
@pytest.mark.parametrize("projection", [Projection.NONE, Projection.RANDOM])
def test_same_config_seed_gives_the_same_gates_and_another_seed_different_ones(
    seed, gate_init, projection
):
    E = _pool(seed)
    n_components = None if projection is Projection.NONE else 3
    config = LearnerConfig(
        n_gates=N_GATES,
        gate_init=gate_init,
        projection=projection,
        n_components=n_components,
        seed=seed,
    )

    a = init_state(config, E)
    b = init_state(config, E)
    c = init_state(LearnerConfig(**{**config.to_dict(), "seed": seed + 10}), E)

    np.testing.assert_array_equal(a.gates.weights, b.gates.weights)
    assert not np.allclose(a.gates.weights, c.gates.weights)
    if projection is Projection.RANDOM:
        np.testing.assert_array_equal(a.feature_map.components, b.feature_map.components)
        assert not np.allclose(a.feature_map.components, c.feature_map.components)


@pytest.mark.parametrize(("task", "n_classes"), [(Task.BINARY, 2), (Task.MULTICLASS, 3)])
def test_centre_and_convex_networks_predict_every_separable_training_label(seed, task, n_classes):
    # Hard cuts: the centre then agrees with every label (soft cuts may give some up).
    config = LearnerConfig(task=task, n_classes=n_classes, n_gates=N_GATES, seed=seed, delta=0.0)
    state, E, idx, y = _labeled_state(seed, config, n_labels=40)
    state, result = recenter(with_labels(state, E[idx], y[idx]))
    assert result.status is CenterStatus.OPTIMAL

    centre_net = center_network(state)
    fitted_net, fit = fit_network(state)

    assert fit.n_labels == 40
    np.testing.assert_array_equal(centre_net.predict(E[idx]), y[idx])
    np.testing.assert_array_equal(fitted_net.predict(E[idx]), y[idx])
    assert centre_net.n_hidden <= 2 * N_GATES * config.n_outputs


def test_center_network_before_any_recentre_is_the_empty_network():
    state = init_state(LearnerConfig(n_gates=N_GATES), _pool(0))

    net = center_network(state)

    assert net.n_hidden == 0
    np.testing.assert_array_equal(net.decision_function(_pool(1, 4)), np.zeros(4))


def test_fit_network_uses_squared_loss_for_regression(seed):
    E = _pool(seed)
    config = LearnerConfig(task=Task.REGRESSION, n_gates=N_GATES, seed=seed)
    state = init_state(config, E)
    X = state.feature_map.transform(E)
    a = np.random.default_rng(seed).uniform(-1.0, 1.0, N_GATES)
    target = np.maximum(X @ state.gates.weights.T, 0.0) @ a * 0.1
    state = with_labels(state, E[:40], target[:40])

    net, fit = fit_network(state, beta=1e-6)

    assert fit.n_labels == 40
    residual = net.predict(E[:40]) - target[:40]
    assert np.sqrt(np.mean(residual**2)) <= 0.1 * np.std(target[:40])


# --------------------------------------------------------------------------- bad bytes


def _rewrite_header(data: bytes, **changes: object) -> bytes:
    arrays = _npz_arrays(data)
    header = json.loads(str(arrays["header"]))
    header.update(changes)
    arrays["header"] = np.array(json.dumps(header))
    return _npz(arrays)


def test_from_bytes_rejects_a_header_with_the_wrong_format():
    data = init_state(LearnerConfig(n_gates=N_GATES), _pool(0)).to_bytes()

    with pytest.raises(ValueError, match="not a Carve learner state"):
        LearnerState.from_bytes(_rewrite_header(data, format="carve-relu-network"))


def test_from_bytes_rejects_a_newer_version():
    data = init_state(LearnerConfig(n_gates=N_GATES), _pool(0)).to_bytes()

    with pytest.raises(ValueError, match="newer"):
        LearnerState.from_bytes(_rewrite_header(data, version=STATE_VERSION + 1))


def _network_export() -> bytes:
    return center_network(init_state(LearnerConfig(n_gates=N_GATES), _pool(0))).to_npz()


@pytest.mark.parametrize(
    "make_bytes",
    [
        pytest.param(lambda: b"this is not an npz archive", id="garbage"),
        pytest.param(lambda: b"", id="empty"),
        pytest.param(lambda: _npz({"x": np.ones(3)}), id="npz-without-header"),
        pytest.param(_network_export, id="relu-network-export"),
    ],
)
def test_from_bytes_rejects_bytes_that_are_not_a_state_with_a_clear_error(make_bytes):
    with pytest.raises(ValueError, match="not a Carve learner state"):
        LearnerState.from_bytes(make_bytes())
