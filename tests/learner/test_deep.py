"""Deep networks (depth 3 and 4): the lifted model, its rows, its network, and the loop."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import learner
from learner import lift
from learner._barrier import Barrier, HessianPath, span_basis
from learner.center import CenterOptions, analytic_center
from learner.reference import reference_center

DEPTHS = [((4, 3), "depth 3"), ((3, 2, 3), "depth 4")]


def _random_net(sizes: tuple[int, ...], d: int, rng: np.random.Generator) -> tuple[Any, Any]:
    first = rng.standard_normal((sizes[0], d))
    upper = tuple(rng.standard_normal((sizes[k], sizes[k - 1])) for k in range(1, len(sizes)))
    return first, upper


def _features(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    return np.c_[rng.standard_normal((n, d - 1)), np.ones(n)]


def _paths(sizes: tuple[int, ...]) -> list[tuple[tuple[int, ...], int]]:
    """Every lifted gate as (slots a_{L-1}, ..., a_2; j_1), in the documented order."""
    slot_ranges = [range(2 * P) for P in reversed(sizes[1:])]
    return [(slots, j1) for slots in itertools.product(*slot_ranges) for j1 in range(sizes[0])]


def _direct_coef(bits: tuple[np.ndarray, ...], sizes: tuple[int, ...]) -> np.ndarray:
    """c_g(x) of eq. D1 by walking every path: prod of signs times prod of active bits."""
    n = bits[0].shape[0]
    out = np.zeros((n, lift.n_lifted_gates(sizes)))
    for g, (slots, j1) in enumerate(_paths(sizes)):
        value = bits[0][:, j1].astype(float)
        for layer, a in zip(range(len(sizes) - 1, 0, -1), slots, strict=True):
            P = sizes[layer]
            sign = 1.0 if a < P else -1.0
            value = value * sign * bits[layer][:, a % P]
        out[:, g] = value
    return out


@pytest.mark.parametrize(("sizes", "name"), DEPTHS)
def test_lifted_coefficients_match_a_walk_over_every_path(
    sizes: tuple[int, ...], name: str
) -> None:
    rng = np.random.default_rng(0)
    first, upper = _random_net(sizes, 5, rng)
    X = _features(40, 5, rng)
    bits = lift.forward_bits(X, first, upper)
    rows = lift.lifted_rows(bits)
    np.testing.assert_array_equal(rows.output, _direct_coef(bits, sizes))
    np.testing.assert_array_equal(lift.lifted_output(bits), rows.output)
    # The D2 bit of each gate is its layer-1 unit's bit.
    paths = _paths(sizes)
    d2 = lift.first_layer_patterns(bits)
    for g, (_, j1) in enumerate(paths):
        np.testing.assert_array_equal(d2[:, g], bits[0][:, j1])


@pytest.mark.parametrize(("sizes", "name"), DEPTHS)
def test_d3_rows_are_the_sign_checked_pre_activations_of_each_upper_unit(
    sizes: tuple[int, ...], name: str
) -> None:
    rng = np.random.default_rng(1)
    first, upper = _random_net(sizes, 5, rng)
    X = _features(30, 5, rng)
    bits = lift.forward_bits(X, first, upper)
    G = lift.n_lifted_gates(sizes)
    W = rng.standard_normal((30, G))  # x^T (u_g - v_g) for arbitrary blocks
    got = np.einsum("nrg,ng->nr", lift.lifted_rows(bits).structural, W)
    # Direct: for layer k and every prefix (a_{L-1}..a_k), (2 D^(k)_{j_k} - 1) times the sum
    # over the gates under that prefix of their sub-network coefficient below layer k.
    paths = _paths(sizes)
    expected = []
    L = len(sizes) + 1
    for k in range(2, L):
        n_prefix = len(sizes) - k + 1  # slots a_{L-1} .. a_k
        prefixes = sorted({slots[:n_prefix] for slots, _ in paths})
        for prefix in prefixes:
            a_k = prefix[-1]
            P = sizes[k - 1]
            sign_row = 2.0 * bits[k - 1][:, a_k % P] - 1.0
            total = np.zeros(30)
            for g, (slots, j1) in enumerate(paths):
                if slots[:n_prefix] != prefix:
                    continue
                below = bits[0][:, j1].astype(float)
                for layer, a in zip(range(len(sizes) - 1, 0, -1), slots, strict=True):
                    if layer + 1 >= k:  # layers k and above are not part of the sub-network
                        continue
                    Pl = sizes[layer]
                    below = below * (1.0 if a < Pl else -1.0) * bits[layer][:, a % Pl]
                total += below * W[:, g]
            expected.append(sign_row * total)
    np.testing.assert_allclose(got, np.stack(expected, axis=1), atol=1e-12)


def _direct_forward(theta: np.ndarray, sizes: tuple[int, ...], X: np.ndarray) -> np.ndarray:
    """The network of eq. D4 evaluated unit by unit, by recursion over prefixes."""
    K = theta.shape[0]
    paths = _paths(sizes)
    out = np.zeros((X.shape[0], K))
    depth_upper = len(sizes) - 1

    def unit(k: int, prefix: tuple[int, ...]) -> np.ndarray:
        level = depth_upper - len(prefix) + 1  # layer of this unit's children (1 = layer 1)
        total = np.zeros(X.shape[0])
        if level == 1:
            for g, (slots, _) in enumerate(paths):
                if slots == prefix:
                    total += np.maximum(X @ theta[k, 0, g], 0) - np.maximum(X @ theta[k, 1, g], 0)
        else:
            P = sizes[level - 1]
            for a in range(2 * P):
                sign = 1.0 if a < P else -1.0
                total += sign * unit(k, (*prefix, a))
        return np.maximum(total, 0.0)

    top = sizes[-1]
    for k in range(K):
        for a in range(2 * top):
            out[:, k] += (1.0 if a < top else -1.0) * unit(k, (a,))
    return out


@pytest.mark.parametrize(("sizes", "name"), DEPTHS)
@pytest.mark.parametrize("K", [1, 3])
def test_the_mapped_network_is_a_plain_forward_pass_on_random_data(
    sizes: tuple[int, ...], name: str, K: int
) -> None:
    """The reference three-layer code gates each outer term with the wrong unit's pattern;
    here the exported network is checked against a unit-by-unit forward pass on random data
    (no pattern rows hold there, so nothing can hide behind them)."""
    rng = np.random.default_rng(2)
    G = lift.n_lifted_gates(sizes)
    theta = rng.standard_normal((K, 2, G, 4))
    fm = learner.FeatureMap(mean=np.zeros(3), components=None, bias=True)
    task = learner.Task.BINARY if K == 1 else learner.Task.MULTICLASS
    net = learner.network_from_theta(theta, fm, task, max(K, 2) if K == 1 else K, sizes=sizes)
    assert net.depth == len(sizes) + 1
    E = rng.standard_normal((25, 3))
    X = fm.transform(E)
    np.testing.assert_allclose(net.scores(E), _direct_forward(theta, sizes, X), atol=1e-10)


def _state(
    depth: int, task: str = "binary", n: int = 80, seed: int = 0, delta: float = 0.0
) -> learner.LearnerState:
    """Hard cuts by default: these tests check the hard version space's invariants."""
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((300, 6))
    teacher = rng.standard_normal((4, 7))
    h = np.maximum(np.c_[E, np.ones(300)] @ teacher.T, 0) @ rng.standard_normal((4, 3))
    y = (h[:, 0] > np.median(h[:, 0])).astype(int) if task == "binary" else np.argmax(h, axis=1)
    sizes = {3: (6, 2), 4: (4, 2, 2)}[depth]
    cfg = learner.LearnerConfig(
        depth=depth,
        n_gates=sizes[0],
        upper_gates=sizes[1:],
        task=task,
        n_classes=2 if task == "binary" else 3,
        seed=seed,
        delta=delta,
    )
    state = learner.init_state(cfg, E)
    return learner.with_labels(state, E[:n], y[:n])


@pytest.mark.parametrize("delta", [0.0, 0.005])
@pytest.mark.parametrize("depth", [3, 4])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_at_the_centre_the_network_equals_the_lifted_model_on_labeled_points(
    depth: int, task: str, delta: float
) -> None:
    # The D2/D3 rows stay hard in a soft version space, so the equality holds for both.
    state, result = learner.recenter(_state(depth, task, delta=delta))
    assert result.status is learner.CenterStatus.OPTIMAL, result.message
    vs = state.version_space
    X = vs.X
    net = learner.center_network(state)
    assert net.depth == depth
    # Scores of the exported network on the labeled features (the feature map is the
    # identity plus a bias here, so raw embeddings are X without its last column).
    scores = net.scores(X[:, :-1])
    lifted = learner.gated_decision(
        X[:, :-1], state.feature_map, state.gates, state.theta, dtype=np.float64
    )
    np.testing.assert_allclose(scores, lifted, rtol=1e-8, atol=1e-12)
    wrong = np.flatnonzero(net.predict(X[:, :-1]) != vs.y.astype(int))
    # Hard: every label is a cut. Soft: what it gets wrong is exactly its suspect list.
    assert set(wrong.tolist()) == set(result.suspects)
    assert delta > 0 or wrong.size == 0


@pytest.mark.parametrize("depth", [3, 4])
def test_the_block_factored_path_gives_the_label_space_centre(depth: int) -> None:
    vs = _state(depth, n=60).version_space
    a = analytic_center(vs, options=CenterOptions(path=HessianPath.LABEL_SPACE))
    b = analytic_center(vs, options=CenterOptions(path=HessianPath.STRUCTURED))
    c = analytic_center(vs, options=CenterOptions(path=HessianPath.GATE_SPACE))
    assert a.success and b.success and c.success
    np.testing.assert_allclose(b.x, a.x, atol=1e-9)
    np.testing.assert_allclose(c.x, a.x, atol=1e-9)
    paths = [r.solver.split("/")[1] for r in (a, b, c)]
    assert paths == ["label-space", "structured", "gate-space"]


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_gate_space_blocks_solve_like_the_label_space_factor(task: str) -> None:
    # Depth 4 at n = 60: every D3 group has 5 n = 300 rows against 4 x 7 gate columns, so a
    # factor meant for preconditioning uses the gate-space blocks (docs/learner.md eq. DB).
    vs = _state(4, task, n=60).version_space
    bar = Barrier(vs, span_basis(vs.X))
    rng = np.random.default_rng(3)
    theta = bar.to_reduced(analytic_center(vs).x)
    sl = bar.slacks(theta)
    gate = bar.factorize(theta, sl, HessianPath.STRUCTURED, single=True)
    rows = bar.factorize(theta, sl, HessianPath.STRUCTURED)
    label = bar.factorize(theta, sl, HessianPath.LABEL_SPACE)
    assert gate.inexact and not rows.inexact
    assert any(type(b).__name__ == "_GateBlock" for b in gate._blocks)
    Y = rng.standard_normal((3, *theta.shape))
    expected = label.solve(Y)
    for fac in (gate, rows):
        np.testing.assert_allclose(
            fac.solve(Y), expected, rtol=1e-7, atol=1e-9 * np.abs(expected).max()
        )
        np.testing.assert_allclose(fac.logdet(), label.logdet(), rtol=1e-10)


@pytest.mark.parametrize(("depth", "task"), [(3, "binary"), (4, "binary"), (3, "multiclass")])
def test_the_deep_centre_matches_cvxpy_within_relative_gap_1e6(depth: int, task: str) -> None:
    vs = _state(depth, task=task, n=25).version_space
    ours = analytic_center(vs)
    ref = reference_center(vs)
    assert ours.success and ref.success
    assert abs(ours.objective - ref.objective) <= 1e-6 * abs(ref.objective)


@pytest.mark.parametrize("depth", [3, 4])
def test_the_cold_start_is_inside_every_pattern_and_d3_row(depth: int) -> None:
    vs = _state(depth, n=50).version_space
    start = vs.start_blocks()  # (2, G, d)
    S = 2.0 * vs.gate_patterns - 1.0
    assert np.all(S * (vs.X @ start[0].T) > 0) and np.all(S * (vs.X @ start[1].T) > 0)
    cuts = vs.label_cuts()
    W = vs.X @ (start[0] - start[1]).T  # (L, G)
    C_label = cuts.per_label - vs.n_structural
    coef = cuts.coef.reshape(vs.n_labels, cuts.per_label, 1, -1)[:, C_label:, 0, :]
    assert np.all(np.einsum("lrg,lg->lr", coef, W) > 0)


def test_every_point_has_an_active_path_through_the_bias_units() -> None:
    state = _state(4, n=1)
    rng = np.random.default_rng(5)
    X = state.feature_map.transform(rng.standard_normal((2000, 6)))
    coef = state.gates.output_coef(X)
    assert np.all(np.any(coef != 0, axis=1))


def test_a_deep_state_round_trips_and_rebuilds_the_same_centre() -> None:
    state, _ = learner.recenter(_state(3))
    back = learner.LearnerState.from_bytes(state.to_bytes())
    assert back.config == state.config and back.gates.sizes == state.gates.sizes
    for a, b in zip(back.version_space.layer_bits, state.version_space.layer_bits, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.center, state.center)
    rng = np.random.default_rng(0)
    E = rng.standard_normal((300, 6))
    vs = state.version_space
    rebuilt, result = learner.rebuild(state.config, E, vs.X[:, :-1], vs.y)
    assert result.success
    np.testing.assert_allclose(rebuilt.center, state.center, atol=1e-10)


def test_queries_diagnostics_and_conflicts_work_at_depth_3() -> None:
    rng = np.random.default_rng(0)
    E = rng.standard_normal((300, 6))
    state, _ = learner.recenter(_state(3))
    picked = learner.query(state, E, k=5, rng=rng)
    assert len(set(picked.indices.tolist())) == 5
    diag = learner.diagnostics(state, E, rng=rng)
    assert diag.n_cuts > 0 and 0.0 <= diag.disagreement <= 1.0
    # The same point twice with both labels cannot both hold.
    x = state.version_space.X[:1, :-1]
    clash = learner.with_labels(state, np.vstack([x, x]), [0, 1])
    clash, result = learner.recenter(clash)
    assert result.status is learner.CenterStatus.CONFLICTS_EXCLUDED
    n = state.n_labels
    assert any(n in group or n + 1 in group for group in result.conflicts)


def test_the_convex_fit_at_depth_3_is_a_network_that_fits_its_labels() -> None:
    state = _state(3, n=60)
    net, fit = learner.fit_network(state, beta=1e-4)
    vs = state.version_space
    assert net.depth == 3 and fit.n_labels == 60
    lifted = learner.gated_decision(
        vs.X[:, :-1], state.feature_map, state.gates, fit.theta, dtype=np.float64
    )
    # The fit satisfies every pattern and D3 row, so its network is the lifted model there.
    np.testing.assert_allclose(net.scores(vs.X[:, :-1]), lifted, atol=1e-6)
    assert np.mean(net.predict(vs.X[:, :-1]) == vs.y) >= 0.95


def test_deep_networks_export_and_load_as_json_and_npz() -> None:
    state, _ = learner.recenter(_state(4))
    net = learner.center_network(state)
    E = np.random.default_rng(3).standard_normal((10, 6))
    for back in (
        learner.ReLUNetwork.from_dict(net.to_dict()),
        learner.ReLUNetwork.from_npz(net.to_npz()),
    ):
        assert back.depth == 4 and len(back.hidden) == 2
        np.testing.assert_allclose(back.scores(E), net.scores(E), rtol=1e-12)
    assert net.to_dict()["version"] == 2
    two = learner.center_network(
        learner.recenter(
            learner.with_labels(learner.init_state(learner.LearnerConfig(), E), E[:3], [0, 1, 0])
        )[0]
    )
    assert two.to_dict()["version"] == 1 and "hidden" not in two.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 5}, "depth must be 2, 3 or 4"),
        ({"depth": 3, "upper_gates": (2, 2)}, "needs 1 counts at depth 3"),
        ({"depth": 3, "upper_gates": (0,)}, "integers >= 1"),
        ({"depth": 2, "upper_gates": (4,)}, "needs 0 counts at depth 2"),
        ({"depth": 3, "bias": False}, "needs bias=True"),
    ],
)
def test_depth_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        learner.LearnerConfig(**kwargs)


def test_depth_defaults_and_dict_round_trip() -> None:
    assert learner.LearnerConfig().layer_gates == (32,)
    three = learner.LearnerConfig(depth=3)
    assert three.layer_gates == (8, 2)
    assert learner.LearnerConfig.from_dict(three.to_dict()) == three
    assert learner.LearnerConfig(depth=4).layer_gates == (4, 2, 2)
    # Depth 2 writes the dict it always wrote (older readers, platform fingerprints).
    assert "depth" not in learner.LearnerConfig().to_dict()


def test_the_estimator_takes_a_depth() -> None:
    from learner.estimator import CuttingPlaneClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = (np.maximum(X[:, 0], 0) - np.abs(X[:, 1]) > -0.3).astype(int)
    model = CuttingPlaneClassifier(depth=3, final_model="center", delta=0.0, random_state=0)
    model.fit(X[:80], y[:80])
    assert model.network_.depth == 3 and model.state_.gates.sizes == (8, 2)
    assert np.mean(model.predict(X[:80]) == y[:80]) == 1.0  # every label is a cut
    assert model.get_params()["depth"] == 3


def test_items_where_the_network_and_the_lifted_model_disagree_are_queried_first() -> None:
    state, _ = learner.recenter(_state(3))
    rng = np.random.default_rng(7)
    E = rng.standard_normal((400, 6))
    theta = state.theta + 0.3 * np.abs(state.theta).max() * rng.standard_normal(state.theta.shape)
    scores = learner.score_pool(E, state.feature_map, state.gates, theta, state.config.task)
    f = learner.gated_decision(E, state.feature_map, state.gates, theta, dtype=np.float64)[:, 0]
    net = learner.network_from_theta(
        theta, state.feature_map, state.config.task, 2, sizes=state.gates.sizes
    )
    g = net.scores(E)[:, 0]
    split = (f > 0) != (g > 0)
    assert 0 < split.sum() < len(E)  # the perturbed point violates rows at some items
    assert np.all(scores[split] == 0) and np.all(scores[~split] > 0)
