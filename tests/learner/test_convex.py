"""The final convex fit: it fits separable labels, obeys the pattern rows, and fails loudly."""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pytest

from learner.config import Task
from learner.convex import ConvexFitError, Loss, SolverFallbackWarning, convex_fit
from learner.version_space import VersionSpace

from .problems import teacher_problem

MOSEK = "MOSEK"


def _f(vs: VersionSpace, theta: np.ndarray) -> np.ndarray:
    """Gated model f_k(x) = sum_i D_i(x) x^T (u_ki - v_ki) on the labeled points, (L, K')."""
    wd = np.einsum("ld,kpd->lkp", vs.X, theta[:, 0] - theta[:, 1])
    return np.einsum("lkp,lp->lk", wd, vs.patterns.astype(float))


def _min_pattern_slack(vs: VersionSpace, theta: np.ndarray) -> float:
    """Smallest (2 D_i(x) - 1) x^T w over every labeled x and every block w of theta."""
    sign = 2.0 * vs.patterns - 1.0  # (L, P)
    return float(np.min(sign[:, None, None, :] * np.einsum("ld,kspd->lksp", vs.X, theta)))


def test_hinge_fit_classifies_every_separable_binary_label_and_obeys_the_pattern_rows(seed):
    teacher = teacher_problem(seed, 30, 5, 6)

    fit = convex_fit(teacher.vs, loss=Loss.HINGE)

    f = _f(teacher.vs, fit.theta)[:, 0]
    np.testing.assert_array_equal((f > 0).astype(float), teacher.vs.y)
    scale = np.abs(np.einsum("ld,kspd->lksp", teacher.vs.X, fit.theta)).max()
    assert _min_pattern_slack(teacher.vs, fit.theta) >= -1e-7 * scale
    assert fit.status == cp.OPTIMAL and fit.solver == cp.CLARABEL
    assert fit.n_labels == 30 and fit.theta.shape == (1, 2, 6, 6)


def test_multiclass_hinge_fit_classifies_every_separable_label(seed):
    teacher = teacher_problem(seed, 30, 4, 5, Task.MULTICLASS, 3)

    fit = convex_fit(teacher.vs, loss="hinge")

    f = _f(teacher.vs, fit.theta)
    assert fit.theta.shape == (3, 2, 5, 5)
    np.testing.assert_array_equal(np.argmax(f, axis=1), teacher.vs.y)
    scale = np.abs(np.einsum("ld,kspd->lksp", teacher.vs.X, fit.theta)).max()
    assert _min_pattern_slack(teacher.vs, fit.theta) >= -1e-7 * scale


def test_squared_loss_regression_fit_gets_close_to_the_targets(seed):
    teacher = teacher_problem(seed, 30, 5, 6, Task.REGRESSION, 1)
    y = teacher.vs.y

    fit = convex_fit(teacher.vs, loss=Loss.SQUARED, beta=1e-6)

    residual = _f(teacher.vs, fit.theta)[:, 0] - y
    assert np.sqrt(np.mean(residual**2)) <= 0.1 * np.std(y)


def test_squared_loss_fits_binary_labels_against_plus_minus_one(seed):
    teacher = teacher_problem(seed, 30, 5, 6)

    fit = convex_fit(teacher.vs, loss=Loss.SQUARED, beta=1e-6)

    f = _f(teacher.vs, fit.theta)[:, 0]
    np.testing.assert_array_equal((f > 0).astype(float), teacher.vs.y)


def test_larger_beta_gives_a_smaller_group_lasso_norm(seed):
    teacher = teacher_problem(seed, 30, 5, 6)

    norms = [
        float(np.linalg.norm(convex_fit(teacher.vs, beta=beta).theta, axis=3).sum())
        for beta in (1e-3, 1e-1, 1.0)
    ]

    assert norms[0] > norms[1] > norms[2]


def test_mask_fits_only_the_selected_labels(seed):
    teacher = teacher_problem(seed, 30, 5, 6)
    mask = np.zeros(30, dtype=bool)
    mask[::3] = True

    fit = convex_fit(teacher.vs, mask=mask)

    assert fit.n_labels == 10
    sub = teacher.vs.subset(np.flatnonzero(mask))
    np.testing.assert_array_equal((_f(sub, fit.theta)[:, 0] > 0).astype(float), sub.y)


def test_a_missing_solver_falls_back_to_the_next_with_a_warning():
    assert MOSEK not in cp.installed_solvers()  # the fallback below depends on it
    teacher = teacher_problem(0, 20, 5, 6)

    with pytest.warns(SolverFallbackWarning, match=MOSEK):
        fit = convex_fit(teacher.vs, solvers=(MOSEK, cp.CLARABEL))

    assert fit.solver == cp.CLARABEL
    assert fit.status == cp.OPTIMAL


def test_fit_raises_a_domain_error_naming_the_solver_when_every_solver_fails():
    teacher = teacher_problem(0, 20, 5, 6)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SolverFallbackWarning)
        with pytest.raises(ConvexFitError, match=MOSEK):
            convex_fit(teacher.vs, solvers=(MOSEK,))


def test_hinge_loss_with_regression_targets_is_rejected():
    teacher = teacher_problem(0, 10, 4, 4, Task.REGRESSION, 1)

    with pytest.raises(ValueError, match="hinge loss needs class labels"):
        convex_fit(teacher.vs, loss=Loss.HINGE)


@pytest.mark.parametrize("beta", [-1e-3, float("nan")])
def test_negative_or_nan_beta_is_rejected(beta):
    teacher = teacher_problem(0, 10, 4, 4)

    with pytest.raises(ValueError, match="beta must be >= 0"):
        convex_fit(teacher.vs, beta=beta)


def test_fit_without_labels_is_rejected():
    teacher = teacher_problem(0, 10, 4, 4)

    with pytest.raises(ValueError, match="at least one label"):
        convex_fit(teacher.vs.subset(np.arange(0)))


def test_an_all_false_mask_is_rejected_as_no_labels():
    teacher = teacher_problem(0, 10, 4, 4)

    with pytest.raises(ValueError, match="at least one label"):
        convex_fit(teacher.vs, mask=np.zeros(10, dtype=bool))


def test_unknown_loss_is_rejected():
    teacher = teacher_problem(0, 10, 4, 4)

    with pytest.raises(ValueError, match="absolute"):
        convex_fit(teacher.vs, loss="absolute")


def test_fit_network_refits_a_collapsed_fit_with_a_smaller_beta():
    import learner

    rng = np.random.default_rng(0)
    E = rng.standard_normal((120, 5))
    y = (E[:, 0] + 0.3 * E[:, 1] > 0).astype(int)
    state = learner.init_state(learner.LearnerConfig(n_gates=6, seed=0), E)
    state = learner.with_labels(state, E[:60], y[:60])
    # beta = 5 zeroes every weight: a constant answer, no better than the majority label.
    collapsed = learner.convex_fit(state.version_space, beta=5.0)
    assert np.abs(collapsed.theta).max() < 1e-6
    net, fit = learner.fit_network(state, beta=5.0)
    assert fit.beta < 5.0
    majority = max(np.mean(y[:60]), 1 - np.mean(y[:60]))
    assert np.mean(net.predict(E[:60]) == y[:60]) > majority
    _, default = learner.fit_network(state)
    assert default.beta == learner.state.DEFAULT_BETA  # a sound fit keeps its beta


def test_fit_network_keeps_its_beta_when_every_label_has_one_class():
    import learner

    rng = np.random.default_rng(1)
    E = rng.standard_normal((30, 4))
    state = learner.init_state(learner.LearnerConfig(n_gates=4, seed=0), E)
    state = learner.with_labels(state, E[:10], np.ones(10, dtype=int))
    _, fit = learner.fit_network(state)
    assert fit.beta == learner.state.DEFAULT_BETA  # no pointless refits
