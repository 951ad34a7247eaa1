"""The structured analytic centre: agreement with cvxpy, invariants, warm starts."""

from __future__ import annotations

from dataclasses import replace

import cvxpy as cp
import numpy as np
import pytest

from learner._barrier import Barrier, HessianPath
from learner.center import CenterOptions, CenterStatus, analytic_center
from learner.config import Task
from learner.reference import reference_center
from learner.version_space import add_labels

from .problems import min_normalised_slack, teacher_problem

CASES = [
    # (task, n_classes, n_labels, d, n_gates): L < d exercises the span ("kernel") path.
    (Task.BINARY, 2, 4, 8, 4),
    (Task.BINARY, 2, 30, 5, 6),
    (Task.MULTICLASS, 3, 20, 4, 4),
    (Task.REGRESSION, 1, 15, 4, 4),
]


@pytest.mark.parametrize(("task", "n_classes", "n_labels", "d", "n_gates"), CASES)
def test_centre_matches_cvxpy_within_relative_gap_1e6(seed, task, n_classes, n_labels, d, n_gates):
    teacher = teacher_problem(seed, n_labels, d, n_gates, task, n_classes)

    ours = analytic_center(teacher.vs)
    ref = reference_center(teacher.vs, cp.CLARABEL)

    assert ours.status is CenterStatus.OPTIMAL, ours.message
    assert ref.success, ref.status
    gap = (ref.objective - ours.objective) / abs(ours.objective)
    assert abs(gap) <= 1e-6
    # Both are the (unique) minimiser, so the points agree too.
    np.testing.assert_allclose(ours.x, ref.x, atol=2e-3 * np.abs(ref.x).max())


@pytest.mark.parametrize("path", [HessianPath.LABEL_SPACE, HessianPath.GATE_SPACE])
def test_both_woodbury_paths_reach_the_same_centre(seed, path):
    teacher = teacher_problem(seed, 25, 5, 5)
    reference = analytic_center(teacher.vs, options=CenterOptions(path=HessianPath.LABEL_SPACE))

    result = analytic_center(teacher.vs, options=CenterOptions(path=path))

    assert result.status is CenterStatus.OPTIMAL
    assert abs(result.objective - reference.objective) <= 1e-8 * abs(reference.objective)


def test_centre_lies_strictly_inside_every_half_space_and_the_ball(seed):
    teacher = teacher_problem(seed, 40, 5, 6)

    result = analytic_center(teacher.vs)

    assert result.status is CenterStatus.OPTIMAL
    assert result.max_violation == 0.0
    assert min_normalised_slack(teacher.vs, result.x) > 0
    assert np.linalg.norm(result.x) < teacher.vs.radius
    assert np.all(np.isfinite(result.x))


def test_ground_truth_network_stays_feasible(seed):
    teacher = teacher_problem(seed, 60, 5, 6)

    assert min_normalised_slack(teacher.vs, teacher.theta) > 0  # the teacher is inside
    result = analytic_center(teacher.vs)
    assert result.status is CenterStatus.OPTIMAL
    assert result.conflicts == ()


def test_a_label_that_contradicts_the_centre_cuts_it_off_and_the_new_centre_obeys_it(seed):
    teacher = teacher_problem(seed, 30, 5, 6)
    old = analytic_center(teacher.vs)
    rng = np.random.default_rng(seed + 100)
    x = np.append(rng.standard_normal(5), 1.0)
    D = (teacher.vs.gate_weights @ x) >= 0
    f_old = float(np.sum(D[:, None] * (old.x[0, 0] - old.x[0, 1]) @ x))
    contradicting = 0 if f_old > 0 else 1

    vs_new = add_labels(teacher.vs, x[None], [contradicting])
    new = analytic_center(vs_new, start=old.x)

    sign = 1.0 if contradicting == 1 else -1.0
    assert sign * f_old < 0  # the new cut excludes the previous centre
    if new.status is CenterStatus.OPTIMAL:
        f_new = float(np.sum(D[:, None] * (new.x[0, 0] - new.x[0, 1]) @ x))
        assert sign * f_new > 0
    else:  # the contradiction emptied the polytope: it must be reported, not hidden
        assert new.status is CenterStatus.CONFLICTS_EXCLUDED
        assert any(teacher.vs.n_labels in g for g in new.conflicts)


@pytest.mark.parametrize("task", [Task.BINARY, Task.REGRESSION])
def test_warm_start_after_new_labels_reaches_the_cold_centre(seed, task):
    teacher = teacher_problem(seed, 40, 5, 6, task)
    first = analytic_center(teacher.vs.subset(np.arange(30)))

    warm = analytic_center(teacher.vs, start=first.x)
    cold = analytic_center(teacher.vs)

    assert warm.status is CenterStatus.OPTIMAL and cold.status is CenterStatus.OPTIMAL
    assert abs(warm.objective - cold.objective) <= 1e-8 * abs(cold.objective)
    np.testing.assert_allclose(warm.x, cold.x, atol=1e-4 * np.abs(cold.x).max())


@pytest.mark.parametrize(("task", "n_classes"), [(Task.BINARY, 2), (Task.MULTICLASS, 4)])
def test_a_soft_warm_start_repairs_new_pattern_rows_without_phase_one(seed, task, n_classes):
    # New points violate about half of their pattern rows at the old centre; the blockwise
    # Dikin repair (docs/learner.md, "Warm start") fixes them, so no phase I runs, and the
    # centre is the one a cold start reaches.
    teacher = teacher_problem(seed, 54, 10, 8, task, n_classes)
    vs = replace(teacher.vs, delta=0.05, _cuts={})
    first = analytic_center(vs.subset(np.arange(50)))
    violated = Barrier(vs, None).slacks(first.x).p <= 0
    assert violated[50:].any()  # the new points' rows
    assert not violated[:50].any()

    warm = analytic_center(vs, start=first.x)
    cold = analytic_center(vs)

    assert warm.status is CenterStatus.OPTIMAL and cold.status is CenterStatus.OPTIMAL
    assert warm.phase1_nit == 0
    assert abs(warm.objective - cold.objective) <= 1e-9 * abs(cold.objective)


def test_same_inputs_give_the_same_centre_bit_for_bit(seed):
    teacher = teacher_problem(seed, 20, 5, 5)

    a = analytic_center(teacher.vs)
    b = analytic_center(teacher.vs)

    np.testing.assert_array_equal(a.x, b.x)


def test_no_labels_gives_the_centre_of_the_ball():
    teacher = teacher_problem(0, 5)

    result = analytic_center(teacher.vs.subset(np.arange(0)))

    assert result.status is CenterStatus.OPTIMAL
    assert np.all(result.x == 0)


def test_result_reports_newton_work_and_a_small_decrement(seed):
    teacher = teacher_problem(seed, 30, 5, 5)

    result = analytic_center(teacher.vs)

    assert result.nit >= 1 and result.n_factorizations >= 1
    assert result.decrement**2 / 2 <= 1e-10 * max(1.0, abs(result.objective))
    assert result.solver.startswith("newton/")


def test_objective_is_the_barrier_value_at_x(seed):
    teacher = teacher_problem(seed, 12, 4, 4)

    result = analytic_center(teacher.vs)

    bar = Barrier(teacher.vs, None)
    assert result.objective == pytest.approx(Barrier.value(bar.slacks(result.x)), rel=1e-12)


def test_start_with_wrong_shape_is_rejected():
    teacher = teacher_problem(0, 5)

    with pytest.raises(ValueError, match="shape"):
        analytic_center(teacher.vs, start=np.zeros(3))


def test_iteration_limit_is_a_status_with_a_finite_point():
    teacher = teacher_problem(0, 40, 5, 6)

    result = analytic_center(teacher.vs, options=CenterOptions(max_iter=1, tol=1e-300))

    assert result.status is CenterStatus.MAX_ITER
    assert np.all(np.isfinite(result.x))
    assert min_normalised_slack(teacher.vs, result.x) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tol": 0}, "tol"),
        ({"mu": 1.0}, "mu"),
        ({"margin_tol": 2.0}, "margin_tol"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CenterOptions(**kwargs)
