"""Measured convergence: samples stay inside, the log-volume proxy, pool disagreement."""

from __future__ import annotations

import numpy as np
import pytest

from learner import state as learner_state
from learner.center import CenterStatus, analytic_center
from learner.config import LearnerConfig, Task
from learner.diagnostics import diagnose, disagreement, log_volume, sample_networks
from learner.features import FeatureMap, Gates
from learner.version_space import VersionSpace, add_labels

from .problems import dense_rows, min_normalised_slack, teacher_problem, unit_rows

# (task, n_classes, n_labels, d, n_gates): 3 labels in R^7 exercise the span path.
PROBLEMS = [
    (Task.BINARY, 2, 20, 4, 4),
    (Task.BINARY, 2, 3, 6, 3),
    (Task.MULTICLASS, 3, 15, 4, 3),
    (Task.REGRESSION, 1, 15, 4, 3),
]


def _maps(vs: VersionSpace) -> tuple[FeatureMap, Gates]:
    """Identity feature map with bias, and the gates of ``vs`` (raw dim = n_features - 1)."""
    return FeatureMap(np.zeros(vs.n_features - 1), None, bias=True), Gates(vs.gate_weights)


def _pool(seed: int, vs: VersionSpace, n: int = 300) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed + 50), n, vs.n_features - 1)[:, :-1]


def _centre(vs: VersionSpace):
    result = analytic_center(vs)
    assert result.success, result.message
    return result


def _dense_log_volume(vs: VersionSpace, x: np.ndarray) -> float:
    """-1/2 log det of the barrier Hessian (eq. AC) in the full space, from dense rows."""
    theta = x.ravel()
    sb = vs.radius**2 - theta @ theta
    H = (2.0 / sb) * np.eye(theta.size) + 4.0 * np.outer(theta, theta) / sb**2
    if vs.n_labels:
        rows, rhs = dense_rows(vs)
        s = rows @ theta + rhs
        H += (rows.T / s**2) @ rows
    sign, logdet = np.linalg.slogdet(H)
    assert sign > 0
    return -0.5 * logdet


# ---------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(("task", "n_classes", "n_labels", "d", "n_gates"), PROBLEMS)
@pytest.mark.parametrize("method", ["hit-and-run", "dikin"])
def test_every_sampled_network_lies_strictly_inside_the_version_space(
    seed, task, n_classes, n_labels, d, n_gates, method
):
    teacher = teacher_problem(seed, n_labels, d, n_gates, task, n_classes)
    centre = _centre(teacher.vs)

    samples = sample_networks(
        teacher.vs, centre.x, np.random.default_rng(seed), 16, method=method, steps=20
    )

    assert samples.shape == (16, *centre.x.shape)
    assert np.all(np.isfinite(samples))
    for s in samples:
        assert min_normalised_slack(teacher.vs, s) > 0
        assert np.linalg.norm(s) < teacher.vs.radius
    assert not np.allclose(samples, centre.x)  # they do move away from the centre


def test_samples_respect_only_the_labels_still_in_force(seed):
    teacher = teacher_problem(seed, 15, 4, 3)
    vs = add_labels(teacher.vs, teacher.X[2][None], [1.0 - teacher.vs.y[2]])
    centre = analytic_center(vs)
    assert centre.status is CenterStatus.CONFLICTS_EXCLUDED

    samples = sample_networks(
        vs, centre.x, np.random.default_rng(seed), 8, active=centre.active, steps=20
    )

    rest = vs.subset(np.flatnonzero(centre.active))
    assert all(min_normalised_slack(rest, s) > 0 for s in samples)


def test_a_point_outside_the_version_space_is_rejected():
    teacher = teacher_problem(0, 10, 4, 3)

    with pytest.raises(ValueError, match="strictly inside"):
        sample_networks(teacher.vs, -teacher.theta, np.random.default_rng(0), 4)


@pytest.mark.parametrize("method", ["hit-and-run", "dikin"])
def test_same_rng_seed_gives_identical_samples(seed, method):
    teacher = teacher_problem(seed, 12, 4, 3)
    centre = _centre(teacher.vs)

    a = sample_networks(teacher.vs, centre.x, np.random.default_rng(seed), 6, method=method)
    b = sample_networks(teacher.vs, centre.x, np.random.default_rng(seed), 6, method=method)

    np.testing.assert_array_equal(a, b)


def test_same_rng_seed_gives_identical_diagnostics(seed):
    teacher = teacher_problem(seed, 12, 4, 3)
    centre = _centre(teacher.vs)
    fm, gates = _maps(teacher.vs)
    E = _pool(seed, teacher.vs)

    a = diagnose(teacher.vs, centre.x, centre.active, E, fm, gates, np.random.default_rng(seed))
    b = diagnose(teacher.vs, centre.x, centre.active, E, fm, gates, np.random.default_rng(seed))

    assert a == b


# ---------------------------------------------------------------------------- log-volume


@pytest.mark.parametrize(("task", "n_classes", "n_labels", "d", "n_gates"), PROBLEMS)
def test_log_volume_is_minus_half_log_det_of_the_dense_full_space_hessian(
    seed, task, n_classes, n_labels, d, n_gates
):
    # With n_labels < n_features the structured code works in the span of the labels and adds
    # the complement as c I, c = 2 / (R^2 - ||x||^2); the dense Hessian has all of it.
    teacher = teacher_problem(seed, n_labels, d, n_gates, task, n_classes)
    centre = _centre(teacher.vs)

    value = log_volume(teacher.vs, centre.x)

    assert value == pytest.approx(_dense_log_volume(teacher.vs, centre.x), rel=1e-9, abs=1e-8)


def test_log_volume_with_no_labels_is_that_of_the_ball(seed):
    teacher = teacher_problem(seed, 5, 4, 3)
    empty = teacher.vs.subset(np.arange(0))
    x = 0.3 * teacher.theta / np.linalg.norm(teacher.theta)

    assert log_volume(empty, x) == pytest.approx(_dense_log_volume(empty, x), rel=1e-12)
    n = teacher.theta.size
    assert log_volume(empty, np.zeros_like(x)) == pytest.approx(-0.5 * n * np.log(2.0))


def test_log_volume_counts_only_active_labels(seed):
    teacher = teacher_problem(seed, 10, 4, 3)
    vs = add_labels(teacher.vs, teacher.X[1][None], [1.0 - teacher.vs.y[1]])
    centre = analytic_center(vs)
    assert centre.status is CenterStatus.CONFLICTS_EXCLUDED

    value = log_volume(vs, centre.x, centre.active)

    rest = vs.subset(np.flatnonzero(centre.active))
    assert value == pytest.approx(_dense_log_volume(rest, centre.x), rel=1e-9)


def test_log_volume_shrinks_when_thirty_labels_are_added(seed):
    teacher = teacher_problem(seed, 40, 4, 4)
    first = teacher.vs.subset(np.arange(10))

    before = log_volume(first, _centre(first).x)
    after = log_volume(teacher.vs, _centre(teacher.vs).x)

    assert after < before


# ---------------------------------------------------------------------------- disagreement


@pytest.mark.parametrize(("task", "n_classes"), [(Task.BINARY, 2), (Task.MULTICLASS, 3)])
def test_identical_samples_never_disagree_and_opposite_ones_disagree_where_f_is_nonzero(
    seed, task, n_classes
):
    teacher = teacher_problem(seed, 12, 4, 3, task, n_classes)
    x = _centre(teacher.vs).x
    fm, gates = _maps(teacher.vs)
    E = _pool(seed, teacher.vs)

    same = disagreement(np.stack([x] * 4), E, fm, gates, task, 0.1)
    flipped = disagreement(np.stack([x, -x]), E, fm, gates, task, 0.1)

    assert same == 0.0
    X = fm.transform(E)
    D = X @ gates.weights.T >= 0
    f = np.einsum("np,kpn->nk", D, (x[:, 0] - x[:, 1]) @ X.T)  # (n, K)
    if task is Task.BINARY:
        expected = np.mean(f[:, 0] != 0)  # f -> -f flips the label wherever f != 0
    else:
        expected = np.mean(np.argmax(f, 1) != np.argmax(-f, 1))
    assert flipped == pytest.approx(expected, abs=1.0 / len(E))
    assert flipped > 0


def test_regression_disagreement_counts_spreads_beyond_two_epsilon(seed):
    teacher = teacher_problem(seed, 12, 4, 3, Task.REGRESSION, epsilon=0.05)
    x = _centre(teacher.vs).x
    fm, gates = _maps(teacher.vs)
    E = _pool(seed, teacher.vs)
    X = fm.transform(E)
    f = np.sum((X @ gates.weights.T >= 0) * (X @ (x[0, 0] - x[0, 1]).T), axis=1)

    same = disagreement(np.stack([x] * 3), E, fm, gates, Task.REGRESSION, 0.05)
    scaled = disagreement(np.stack([x, 2 * x]), E, fm, gates, Task.REGRESSION, 0.05)

    assert same == 0.0
    # The predictions of x and 2x differ by |f(x)|.
    assert scaled == pytest.approx(np.mean(np.abs(f) > 0.1), abs=1.0 / len(E))


@pytest.mark.parametrize(("task", "n_classes", "n_labels", "d", "n_gates"), PROBLEMS)
def test_diagnose_reports_a_share_in_the_unit_interval_and_stops_below_the_threshold(
    seed, task, n_classes, n_labels, d, n_gates
):
    teacher = teacher_problem(seed, n_labels, d, n_gates, task, n_classes)
    centre = _centre(teacher.vs)
    fm, gates = _maps(teacher.vs)
    E = _pool(seed, teacher.vs)

    results = [
        diagnose(
            teacher.vs,
            centre.x,
            centre.active,
            E,
            fm,
            gates,
            np.random.default_rng(seed),
            threshold=threshold,
            steps=20,
        )
        for threshold in (0.0, 0.05, 0.3, 1.0)
    ]

    for diag in results:
        assert 0.0 <= diag.disagreement <= 1.0
        assert diag.stop == (diag.disagreement <= diag.threshold)
        assert diag.n_cuts == teacher.vs.n_rows
        assert diag.n_active == diag.n_labels == n_labels
        assert diag.n_eval == len(E)
    assert results[-1].stop  # everything is below a threshold of 1


def test_diagnose_evaluates_at_most_max_eval_items(seed):
    teacher = teacher_problem(seed, 10, 4, 3)
    centre = _centre(teacher.vs)
    fm, gates = _maps(teacher.vs)

    diag = diagnose(
        teacher.vs,
        centre.x,
        centre.active,
        _pool(seed, teacher.vs, 500),
        fm,
        gates,
        np.random.default_rng(seed),
        max_eval=120,
        steps=10,
    )

    assert diag.n_eval == 120


def test_more_teacher_labels_do_not_increase_disagreement_on_the_pool(seed):
    teacher = teacher_problem(seed, 60, 4, 4)
    fm, gates = _maps(teacher.vs)
    E = _pool(seed, teacher.vs, 400)

    def measured(n_labels: int) -> float:
        vs = teacher.vs.subset(np.arange(n_labels))
        centre = _centre(vs)
        rng = np.random.default_rng(seed)
        return diagnose(vs, centre.x, centre.active, E, fm, gates, rng).disagreement

    early, late = measured(5), measured(60)

    assert late <= early


def test_state_diagnostics_need_a_centre_and_then_describe_the_labels(seed):
    rng = np.random.default_rng(seed)
    E_pool = rng.standard_normal((200, 4))
    state = learner_state.init_state(LearnerConfig(n_gates=4, seed=seed), E_pool)
    state = learner_state.with_labels(state, E_pool[:8], rng.integers(0, 2, 8))
    with pytest.raises(ValueError, match="need a centre"):
        learner_state.diagnostics(state, E_pool)
    state, result = learner_state.recenter(state)
    assert result.success, result.message

    diag = learner_state.diagnostics(state, E_pool, rng=seed, max_eval=150)

    assert diag.n_labels == 8 and diag.n_active == int(result.active.sum())
    assert diag.n_eval == 150
    assert 0.0 <= diag.disagreement <= 1.0
    assert diag == learner_state.diagnostics(state, E_pool, rng=seed, max_eval=150)
