"""Noisy labels (docs/learner.md, "Noisy labels"): conflicts are named, set aside, and the rest is
still centred."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from learner.center import CenterStatus, analytic_center, has_interior
from learner.config import Task
from learner.version_space import VersionSpace, add_labels, empty_version_space

from .problems import dense_rows, min_normalised_slack, teacher_problem, unit_rows


def _active_part(vs: VersionSpace, active: np.ndarray) -> VersionSpace:
    return vs.subset(np.flatnonzero(active))


def _assert_centred_inside(vs: VersionSpace, result) -> None:
    """x is finite, inside the ball, and strictly satisfies every label still in force."""
    assert np.all(np.isfinite(result.x))
    assert np.linalg.norm(result.x) < vs.radius
    rest = _active_part(vs, result.active)
    if rest.n_labels:
        assert min_normalised_slack(rest, result.x) > 0


def _dense_newton_decrement_squared(vs: VersionSpace, x: np.ndarray) -> float:
    """g^T H^{-1} g of the barrier (eq. AC) at x, from explicit dense rows (reference algebra)."""
    rows, rhs = dense_rows(vs)
    theta = x.ravel()
    s = rows @ theta + rhs
    sb = vs.radius**2 - theta @ theta
    g = -rows.T @ (1.0 / s) + 2.0 * theta / sb
    H = (
        (rows.T / s**2) @ rows
        + (2.0 / sb) * np.eye(theta.size)
        + 4.0 * np.outer(theta, theta) / sb**2
    )
    return float(g @ np.linalg.solve(H, g))


def _all_gates_off(gates: np.ndarray) -> np.ndarray:
    """A feature vector [z, 1] with h_i^T x = -1 < 0 for every gate (needs n_gates <= len(z))."""
    z = np.linalg.lstsq(gates[:, :-1], -1.0 - gates[:, -1], rcond=None)[0]
    x = np.append(z, 1.0)
    assert np.all(gates @ x < 0)
    return x


def _random_label_problem(seed: int, n_labels: int = 30, d: int = 2, n_gates: int = 4):
    """Random labels on many points in low dimension: no network of the class fits them all."""
    rng = np.random.default_rng(seed)
    vs = empty_version_space(rng.standard_normal((n_gates, d + 1)), Task.BINARY, 2, 1.0, 0.1)
    return add_labels(vs, unit_rows(rng, n_labels, d), rng.integers(0, 2, n_labels))


def _noisy_teacher(seed: int, n_labels: int = 60, n_flipped: int = 4):
    """Teacher labels (jointly consistent) with ``n_flipped`` of them turned into errors."""
    teacher = teacher_problem(seed, n_labels, d=2, n_gates=3)
    flipped = np.random.default_rng(seed + 1000).choice(n_labels, n_flipped, replace=False)
    y = teacher.vs.y.copy()
    y[flipped] = 1.0 - y[flipped]
    return teacher, replace(teacher.vs, y=y, _cuts={}), {int(i) for i in flipped}


# ---------------------------------------------------------------------------- duplicates


def test_identical_points_with_opposite_labels_are_named_as_one_conflict(seed):
    teacher = teacher_problem(seed, 20, 4, 4)
    vs = add_labels(teacher.vs, teacher.X[3][None], [1.0 - teacher.vs.y[3]])

    result = analytic_center(vs)

    assert result.status is CenterStatus.CONFLICTS_EXCLUDED, result.message
    assert result.conflicts == ((3, 20),)
    assert not result.active[3] and not result.active[20]
    assert result.active.sum() == 19
    _assert_centred_inside(vs, result)


def test_near_duplicates_with_opposite_labels_form_a_small_named_group(seed):
    teacher = teacher_problem(seed, 20, 4, 4)
    rng = np.random.default_rng(seed + 7)
    x = teacher.X[3] + 1e-9 * rng.standard_normal(teacher.X.shape[1])
    vs = add_labels(teacher.vs, x[None], [1.0 - teacher.vs.y[3]])

    result = analytic_center(vs)

    assert result.status is CenterStatus.CONFLICTS_EXCLUDED, result.message
    assert len(result.conflicts) == 1
    group = result.conflicts[0]
    assert {3, 20} <= set(group)
    assert len(group) <= 3
    _assert_centred_inside(vs, result)


def test_a_label_on_a_point_with_no_active_gate_is_a_conflict_of_its_own(seed):
    teacher = teacher_problem(seed, 20, 4, 4)
    x = _all_gates_off(teacher.vs.gate_weights)
    vs = add_labels(teacher.vs, x[None], [1.0])

    result = analytic_center(vs)

    assert result.status is CenterStatus.CONFLICTS_EXCLUDED, result.message
    assert result.conflicts == ((20,),)
    assert has_interior(vs.subset(np.array([20]))) is False
    _assert_centred_inside(vs, result)


@pytest.mark.parametrize(("gap_in_epsilons", "conflict"), [(2.5, True), (1.5, False)])
def test_regression_targets_on_one_point_conflict_only_when_more_than_two_epsilon_apart(
    seed, gap_in_epsilons, conflict
):
    teacher = teacher_problem(seed, 20, 4, 4, Task.REGRESSION, epsilon=0.1)
    y3 = teacher.vs.y[3]
    vs = add_labels(teacher.vs, teacher.X[3][None], [y3 + gap_in_epsilons * 0.1])

    result = analytic_center(vs)

    if conflict:
        assert result.status is CenterStatus.CONFLICTS_EXCLUDED, result.message
        assert result.conflicts == ((3, 20),)
    else:
        assert result.status is CenterStatus.OPTIMAL, result.message
        assert result.conflicts == ()
        assert result.active.all()
    _assert_centred_inside(vs, result)


def test_multiclass_duplicate_with_two_different_classes_is_a_conflict(seed):
    teacher = teacher_problem(seed, 20, 4, 4, Task.MULTICLASS, n_classes=3)
    other = (int(teacher.vs.y[3]) + 1) % 3
    vs = add_labels(teacher.vs, teacher.X[3][None], [other])

    result = analytic_center(vs)

    assert result.status is CenterStatus.CONFLICTS_EXCLUDED, result.message
    assert result.conflicts == ((3, 20),)
    _assert_centred_inside(vs, result)


# ---------------------------------------------------------------------------- phase I


def test_has_interior_is_true_for_labels_from_a_teacher(seed):
    teacher = teacher_problem(seed, 40, 5, 6)

    assert has_interior(teacher.vs) is True


def test_random_labels_give_irreducible_conflicts_and_a_finite_point_without_raising(seed):
    vs = _random_label_problem(seed)

    result = analytic_center(vs)

    assert np.all(np.isfinite(result.x))
    assert result.conflicts, "random labels on 30 points cannot all be fitted"
    named = [i for group in result.conflicts for i in group]
    assert len(named) == len(set(named))  # groups are disjoint
    for group in result.conflicts:
        members = np.array(group)
        assert not result.active[members].any()
        assert has_interior(vs.subset(members)) is False  # cannot all be right ...
        for drop in range(len(members)):  # ... and every member is needed for that
            assert has_interior(vs.subset(np.delete(members, drop))) is True
    if result.status is CenterStatus.NO_INTERIOR:
        assert "no interior" in result.message
    else:
        assert result.status is CenterStatus.CONFLICTS_EXCLUDED, result.message
        _assert_centred_inside(vs, result)


def test_noisy_teacher_labels_are_set_aside_and_the_rest_is_centred(seed):
    # The teacher's own labels are jointly consistent, so every group that cannot all be right
    # contains a flipped label, and excluding at most one group per flip leaves an interior:
    # the learner must end centred on the rest (docs/learner.md, "Noisy labels").
    teacher, vs, flipped = _noisy_teacher(seed)
    assert min_normalised_slack(teacher.vs, teacher.theta) > 1e-6  # clean labels have room

    result = analytic_center(vs)

    assert result.success, f"{result.status}: {result.message}"
    for group in result.conflicts:
        assert flipped & set(group), f"group {group} holds no flipped label ({flipped})"
    _assert_centred_inside(vs, result)
    # Centred: the Newton decrement of the barrier of the labels in force vanishes at x.
    lam2 = _dense_newton_decrement_squared(_active_part(vs, result.active), result.x)
    assert lam2 <= 1e-6 * max(1.0, abs(result.objective))
