"""The soft version space (eq. SV): cvxpy agreement, no phase I, noisy labels, suspects, delta."""

from __future__ import annotations

from dataclasses import replace

import cvxpy as cp
import numpy as np
import pytest

import learner
from learner._barrier import HessianPath
from learner.center import CenterOptions, CenterStatus, analytic_center
from learner.config import Task
from learner.delta import DELTA_GRID, DeltaStatus, checkpoint, choose_delta
from learner.reference import reference_center
from learner.version_space import add_labels

from .problems import teacher_problem


def soft(vs, delta):
    return replace(vs, delta=delta, _cuts={})


def flipped(teacher, share, seed, n_classes=2):
    """The teacher's version space with ``share`` of its labels changed to another class."""
    rng = np.random.default_rng(seed)
    vs = teacher.vs
    y = vs.y.copy()
    idx = rng.choice(vs.n_labels, max(1, int(share * vs.n_labels)), replace=False)
    y[idx] = (y[idx] + rng.integers(1, n_classes, idx.size)) % n_classes
    return replace(vs, y=y, _cuts={}), idx


@pytest.mark.parametrize(
    ("task", "n_classes", "n_labels", "d", "n_gates"),
    [
        (Task.BINARY, 2, 4, 8, 4),  # span path (L < d)
        (Task.BINARY, 2, 30, 5, 6),
        (Task.MULTICLASS, 3, 20, 4, 4),
    ],
)
def test_soft_centre_matches_cvxpy_within_relative_gap_1e6(
    seed, task, n_classes, n_labels, d, n_gates
):
    teacher = teacher_problem(seed, n_labels, d, n_gates, task, n_classes)
    # Noisy labels: the hard version space is (usually) empty, the soft one never is.
    vs, _ = flipped(teacher, 0.2, seed, n_classes)
    vs = soft(vs, 0.05)

    ours = analytic_center(vs)
    ref = reference_center(vs, cp.CLARABEL)

    assert ours.status is CenterStatus.OPTIMAL, ours.message
    assert ref.success, ref.status
    gap = (ref.objective - ours.objective) / abs(ours.objective)
    assert abs(gap) <= 1e-6
    np.testing.assert_allclose(ours.x, ref.x, atol=2e-3 * np.abs(ref.x).max())


def test_soft_cuts_offset_is_delta_r_times_the_row_norm(seed):
    teacher = teacher_problem(seed, 12, 5, 6)
    vs = soft(teacher.vs, 0.01)
    cuts = vs.label_cuts()
    D = vs.patterns.astype(float)
    expected = 0.01 * vs.radius * np.linalg.norm(vs.X, axis=1) * np.sqrt(2 * D.sum(1))
    np.testing.assert_allclose(cuts.offset, expected)
    assert np.all(teacher.vs.label_cuts().offset == 0)


@pytest.mark.parametrize("depth", [2, 3])
def test_soft_cold_start_needs_no_phase_one_even_with_contradicting_labels(depth):
    rng = np.random.default_rng(5)
    E = rng.standard_normal((60, 6))
    config = learner.LearnerConfig(seed=1, delta=0.01, depth=depth)
    state = learner.init_state(config, E)
    y = rng.integers(0, 2, 40)
    # The same item labeled both ways, twice over: a hard version space has no interior.
    E_lab = np.vstack([E[:40], E[:5]])
    y_lab = np.concatenate([y, 1 - y[:5]])
    state = learner.with_labels(state, E_lab, y_lab)

    state, result = learner.recenter(state)

    assert result.status is CenterStatus.OPTIMAL, result.message
    assert result.phase1_nit == 0
    assert result.conflicts == ()
    assert result.active.all()
    # Each contradicted pair has exactly one label the centre gets wrong: both are suspects
    # candidates, and at least one of each pair is named.
    named = set(result.suspects)
    for i in range(5):
        assert i in named or 40 + i in named


def test_hard_cuts_still_name_contradicting_duplicates():
    rng = np.random.default_rng(5)
    E = rng.standard_normal((30, 6))
    state = learner.init_state(learner.LearnerConfig(seed=1, delta=0.0), E)
    state = learner.with_labels(state, np.vstack([E[:10], E[:1]]), [0, 1] * 5 + [1])
    _, result = learner.recenter(state)
    assert result.status is CenterStatus.CONFLICTS_EXCLUDED
    assert (0, 10) in result.conflicts


def test_suspects_are_the_labels_the_centre_gets_wrong_most_wrong_first(seed):
    teacher = teacher_problem(seed, 60, 5, 8)
    vs, flips = flipped(teacher, 0.1, seed)
    vs = soft(vs, 0.005)
    result = analytic_center(vs)
    margins = vs.margins(result.x)

    assert result.status is CenterStatus.OPTIMAL
    assert set(result.suspects) == set(np.flatnonzero(margins < 0).tolist())
    assert list(result.suspects) == sorted(result.suspects, key=lambda i: margins[i])
    # Flipped labels are what the soft centre gives up (they contradict a consistent teacher):
    # at least 3x their base rate of 10% among the suspects, and half of them found.
    assert result.suspects
    assert np.isin(np.asarray(result.suspects), flips).mean() >= 0.3
    assert np.isin(flips, np.asarray(result.suspects)).mean() >= 0.5


def test_margins_are_signed_distances_to_the_hard_cut(seed):
    teacher = teacher_problem(seed, 20, 5, 6)
    result = analytic_center(teacher.vs)
    m = teacher.vs.margins(result.x)
    assert np.all(m > 0)  # the hard centre agrees with every consistent label
    f = teacher.vs.decision(result.x)[:, 0]
    sign = 2 * teacher.vs.y - 1
    D = teacher.vs.patterns.astype(float)
    norms = np.linalg.norm(teacher.vs.X, axis=1) * np.sqrt(2 * D.sum(1))
    np.testing.assert_allclose(m, sign * f / norms / teacher.vs.radius)


def test_checkpoints_are_log_spaced_and_a_pure_function_of_the_count():
    assert checkpoint(0) == checkpoint(19) == 0
    assert checkpoint(20) == checkpoint(29) == 20
    assert checkpoint(30) == 30
    assert checkpoint(45) == checkpoint(66) == 45
    assert checkpoint(67) == checkpoint(100) == 67 and checkpoint(101) == 101
    marks = sorted({checkpoint(n) for n in range(20, 2000)})
    ratios = np.diff(marks) / np.asarray(marks[:-1])
    assert np.all((ratios > 0.4) & (ratios < 0.6))


def test_choose_delta_prefers_more_softness_for_noisier_labels():
    rng = np.random.default_rng(0)
    clean = teacher_problem(3, 120, 5, 8)
    noisy, _ = flipped(clean, 0.25, 3)
    r_noisy = choose_delta(noisy, np.random.default_rng(1))
    r_clean = choose_delta(clean.vs, np.random.default_rng(1))
    assert r_noisy.status is DeltaStatus.CHOSEN and r_clean.status is DeltaStatus.CHOSEN
    assert r_noisy.grid == DELTA_GRID and r_noisy.scores.shape == (len(DELTA_GRID),)
    assert r_noisy.delta in DELTA_GRID
    assert r_noisy.scores.max() >= r_noisy.scores[0]
    # Held-out accuracy of the chosen delta is the best of the grid.
    assert r_noisy.scores[DELTA_GRID.index(r_noisy.delta)] == r_noisy.scores.max()
    assert rng is not None


def test_choose_delta_keeps_the_fallback_when_it_cannot_cross_validate():
    teacher = teacher_problem(1, 10, 5, 6)
    r = choose_delta(soft(teacher.vs, 0.003), np.random.default_rng(0))
    assert r.status is DeltaStatus.TOO_FEW_LABELS and r.delta == 0.003
    reg = teacher_problem(1, 30, 4, 4, Task.REGRESSION, 1)
    assert choose_delta(reg.vs, np.random.default_rng(0)).status is DeltaStatus.NOT_APPLICABLE


def test_auto_delta_state_matches_a_rebuild_and_survives_bytes():
    rng = np.random.default_rng(2)
    E = rng.standard_normal((200, 6))
    y = (E[:, 0] + 0.5 * rng.standard_normal(200) > 0).astype(int)
    config = learner.LearnerConfig(seed=3, auto_delta=True)
    state = learner.init_state(config, E)
    for lo, hi in ((0, 15), (15, 33), (33, 50)):
        state = learner.with_labels(state, E[lo:hi], y[lo:hi])
        state, _ = learner.recenter(state)
    assert state.delta_labels == checkpoint(50) == 45
    assert state.version_space.delta == state.delta_level * 0.5  # ramp(50)
    again, _ = learner.rebuild(config, E, E[:50], y[:50])
    assert again.version_space.delta == state.version_space.delta
    np.testing.assert_allclose(again.center, state.center, atol=1e-4 * np.abs(state.center).max())
    loaded = learner.LearnerState.from_bytes(state.to_bytes())
    assert loaded.version_space.delta == state.version_space.delta
    assert loaded.delta_labels == 45


def test_add_labels_keeps_delta():
    teacher = teacher_problem(0, 10, 5, 6)
    vs = add_labels(soft(teacher.vs, 0.02), teacher.X[:2], [0, 1])
    assert vs.delta == 0.02 and vs.label_cuts().offset.min() > 0


def test_block_cholesky_survives_roundoff_that_leaves_a_pd_block_slightly_indefinite():
    # The phase-I breakdown on SST-2 (400 labels, a point 2e-6 from a gate hyperplane): the
    # block D_g = B_u^-1 + B_v^-1 spans ~14 orders of magnitude and roundoff left it with a
    # negative eigenvalue beyond the old single 1e-12 jitter. A block like that: PD in exact
    # arithmetic, stored with a -1e-11 (relative) error.
    from learner._barrier import _batched_cholesky, _cholesky

    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    lam = np.logspace(0, -14, 8)
    lam[-1] = -1e-11  # what roundoff left of the smallest eigenvalue
    M = (Q * lam) @ Q.T
    M = 0.5 * (M + M.T)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(M + 1e-12 * np.trace(M) / 8 * np.eye(8))  # the old single retry
    L = _batched_cholesky(M[None])[0]
    assert np.all(np.isfinite(L)) and np.allclose(L @ L.T, M, atol=1e-8)
    L2 = _cholesky(M)
    assert np.allclose(L2 @ L2.T, M, atol=1e-8)


@pytest.mark.slow
def test_cold_hard_recentres_that_broke_phase_one_on_sst2_now_centre():
    """The reproduction itself (needs ../shared/data and the embedding model: slow)."""
    from pathlib import Path

    from bench.al.__main__ import default_cache
    from bench.al.data import Embedder, load

    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    d = load("sst2", data, default_cache(), Embedder())
    X, y = d.pool.X, d.pool.y
    for n_gates, seed in ((32, 1), (64, 1), (64, 3)):
        idx = np.random.default_rng(1000 + seed).permutation(len(X))[:400]
        cfg = learner.LearnerConfig.recommended(
            384, seed=seed, delta=0.0, auto_delta=False, n_gates=n_gates
        )
        state = learner.with_labels(learner.init_state(cfg, X), X[idx], y[idx])
        _, result = learner.recenter(state)
        assert result.status is CenterStatus.OPTIMAL, (n_gates, seed, result.message)


def test_a_regression_phase_one_breakdown_returns_instead_of_restarting_forever():
    # Regression cuts are never soft: the restart through a softened problem must not apply
    # (it used to recurse until RecursionError).
    rng = np.random.default_rng(11)
    E = rng.normal(size=(200, 8))
    cfg = learner.LearnerConfig(task=Task.REGRESSION, n_gates=8)
    state = learner.with_labels(learner.init_state(cfg, E), E[:40], E[:40, 0])
    _, result = learner.recenter(state)
    assert result.status is CenterStatus.NO_INTERIOR
    assert result.phase1_nit <= 400  # one phase-I run, no restart
    assert np.all(np.isfinite(result.x))


def test_a_delta_too_small_to_matter_is_the_hard_version_space():
    teacher = teacher_problem(0, 10, 5, 6)
    tiny = soft(teacher.vs, 5e-5)
    assert not tiny.soft and np.all(tiny.label_cuts().offset == 0)
    assert soft(teacher.vs, 1e-4).soft


def test_with_labels_keeps_the_ramped_delta_between_recentres():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((100, 5))
    state = learner.init_state(learner.LearnerConfig(seed=0, delta=0.01), E)
    state = learner.with_labels(state, E[:40], (E[:40, 0] > 0).astype(int))
    assert state.version_space.delta == pytest.approx(0.01 * 0.4)
    state, _ = learner.recenter(state)
    assert state.version_space.delta == pytest.approx(0.004)


@pytest.mark.parametrize("soft_delta", [0.0, 0.05])
def test_newton_with_float32_factors_reaches_the_same_centre(seed, soft_delta, monkeypatch):
    import learner._barrier as barrier

    teacher = teacher_problem(seed, 30, 5, 6, Task.BINARY, 2)
    vs = soft(flipped(teacher, 0.2, seed)[0], soft_delta) if soft_delta else teacher.vs
    want = analytic_center(vs)
    monkeypatch.setattr(barrier, "_SINGLE_PRECISION_MIN", 0)  # every factor float32
    got = analytic_center(vs)
    assert got.status is want.status is CenterStatus.OPTIMAL
    assert abs(got.objective - want.objective) <= 1e-9 * abs(want.objective)
    np.testing.assert_allclose(got.x, want.x, atol=1e-5 * np.abs(want.x).max())


def test_a_float32_factor_that_fails_is_redone_in_float64(seed, monkeypatch):
    # Some Hessians are positive definite only in float64's precision (tiny-scale or
    # duplicated embeddings): float32's Cholesky then fails, and analytic_center must neither
    # raise nor take another path than the float64 solve would.
    import learner._barrier as barrier

    teacher = teacher_problem(seed, 30, 5, 6, Task.BINARY, 2)
    want = analytic_center(teacher.vs)
    real = barrier._cholesky
    tried32 = []

    def no_float32(M):
        if M.dtype == np.float32:
            tried32.append(M.shape)
            raise np.linalg.LinAlgError("not positive definite in float32")
        return real(M)

    monkeypatch.setattr(barrier, "_SINGLE_PRECISION_MIN", 0)
    monkeypatch.setattr(barrier, "_cholesky", no_float32)
    got = analytic_center(teacher.vs)
    assert tried32  # the float32 factor was attempted
    assert got.status is want.status is CenterStatus.OPTIMAL
    assert abs(got.objective - want.objective) <= 1e-9 * abs(want.objective)


# Large enough (J r = 2 P K' (d + 1) > 1500) for Newton steps to use CG rather than a
# factorization at every step: the block-preconditioned path of eq. BJ.
BLOCK_CASES = [(Task.BINARY, 2, 20), (Task.MULTICLASS, 3, 8)]


@pytest.mark.parametrize(("task", "n_classes", "n_gates"), BLOCK_CASES)
def test_a_soft_centre_needs_no_factorization_and_matches_cvxpy(seed, task, n_classes, n_gates):
    """Soft cuts: CG preconditioned by the Hessian without its label cuts (eq. BJ) solves every
    Newton system, and the centre is cvxpy's (relative gap <= 1e-6) and the factored path's
    (relative objective 1e-9)."""
    teacher = teacher_problem(seed, 150, 40, n_gates, task, n_classes)
    vs, _ = flipped(teacher, 0.15, seed, n_classes)
    vs = soft(vs, 0.05)

    ours = analytic_center(vs)
    factored = analytic_center(vs, options=CenterOptions(path=HessianPath.LABEL_SPACE))
    ref = reference_center(vs, cp.CLARABEL)

    assert ours.status is CenterStatus.OPTIMAL, ours.message
    assert ours.n_factorizations == 0 and ours.n_cg > 0
    assert factored.status is CenterStatus.OPTIMAL and factored.n_factorizations >= 1
    assert abs(ours.objective - factored.objective) <= 1e-9 * abs(factored.objective)
    np.testing.assert_allclose(ours.x, factored.x, atol=1e-4 * np.abs(factored.x).max())
    assert ref.success, ref.status
    assert abs(ref.objective - ours.objective) <= 1e-6 * abs(ours.objective)


def test_when_block_preconditioned_cg_fails_newton_factors_instead(seed, monkeypatch):
    """A block-preconditioned CG that cannot converge (here: no iteration allowed) turns the
    block path off for the rest of the solve; factorizations then give the same centre."""
    import learner._newton as newton

    teacher = teacher_problem(seed, 150, 40, 20)
    vs = soft(flipped(teacher, 0.15, seed)[0], 0.05)
    reference = analytic_center(vs)
    monkeypatch.setattr(newton, "_MAX_CG", 0)
    monkeypatch.setattr(newton, "_MAX_CG_KEPT", 0)

    fallback = analytic_center(vs)

    assert fallback.status is CenterStatus.OPTIMAL, fallback.message
    assert fallback.n_factorizations >= 1 and reference.n_factorizations == 0
    assert abs(fallback.objective - reference.objective) <= 1e-9 * abs(reference.objective)


def test_hard_cuts_do_not_try_the_block_preconditioner(seed):
    """Hard cuts get tiny slacks at the centre (CG with the block preconditioner needed 239
    iterations on a hard binary problem): the barrier does not offer it, and Newton factors."""
    from learner._barrier import Barrier, span_basis

    teacher = teacher_problem(seed, 150, 40, 20)
    assert not Barrier(teacher.vs, span_basis(teacher.vs.X)).block_preconditioning
    assert Barrier(soft(teacher.vs, 0.05), None).block_preconditioning

    result = analytic_center(teacher.vs)

    assert result.status is CenterStatus.OPTIMAL and result.n_factorizations >= 1
