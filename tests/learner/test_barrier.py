"""The structured Hessian machinery against dense, obviously-correct reference algebra."""

from __future__ import annotations

import numpy as np
import pytest

from learner._barrier import Barrier, HessianPath, span_basis
from learner.config import Task
from learner.version_space import add_labels, empty_version_space

from .problems import dense_rows

TASKS = [(Task.BINARY, 2), (Task.MULTICLASS, 3), (Task.REGRESSION, 1)]


def _random_problem(seed: int, task: Task, n_classes: int, n_labels: int, d: int, P: int = 3):
    rng = np.random.default_rng(seed)
    vs = empty_version_space(rng.standard_normal((P, d)), task, n_classes, 1.0, 0.5)
    y = (
        rng.standard_normal(n_labels) * 0.1
        if task is Task.REGRESSION
        else rng.integers(0, n_classes, n_labels)
    )
    vs = add_labels(vs, rng.standard_normal((n_labels, d)), y)
    bar = Barrier(vs, span_basis(vs.X))
    theta = rng.standard_normal((bar.K, 2, bar.P, bar.r)) * 0.1
    sl = bar.slacks(theta)
    # The algebra holds for any positive slack values; use |s| + 0.1 to stay in the domain.
    sl.p = np.abs(sl.p) + 0.1
    sl.t = np.abs(sl.t) + 0.1
    return vs, bar, theta, sl, rng


def _dense_hessian(bar: Barrier, vs, theta, sl):
    rows, _ = dense_rows(vs)
    if bar.basis is not None:  # rows in basis coordinates: a_j -> V^T a_j per block
        n = rows.shape[0]
        rows = (rows.reshape(n, bar.K, 2, bar.P, -1) @ bar.basis).reshape(n, -1)
    s = _dense_order_slacks(bar, sl)
    H = (rows.T * (1.0 / s**2)) @ rows
    t = theta.ravel()
    H += 2.0 * np.eye(H.shape[0]) / sl.sb + 4.0 * np.outer(t, t) / sl.sb**2
    return H, rows, s


def _dense_order_slacks(bar: Barrier, sl):
    """Slacks in the row order of ``dense_rows`` (per label: pattern rows, then its cuts)."""
    out = []
    C = bar.C
    for j in range(bar.L):
        out.append(sl.p[j].ravel())
        out.append(sl.t[j * C : (j + 1) * C])
    return np.concatenate(out)


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
@pytest.mark.parametrize(("n_labels", "d"), [(3, 5), (9, 4)])
@pytest.mark.parametrize("path", [HessianPath.LABEL_SPACE, HessianPath.GATE_SPACE])
def test_woodbury_solve_and_logdet_match_dense_algebra(seed, task, n_classes, n_labels, d, path):
    vs, bar, theta, sl, rng = _random_problem(seed, task, n_classes, n_labels, d)
    H, _, _ = _dense_hessian(bar, vs, theta, sl)
    fac = bar.factorize(theta, sl, path)
    Y = rng.standard_normal((2, *theta.shape))

    X = fac.solve(Y)

    expected = np.linalg.solve(H, Y.reshape(2, -1).T).T
    np.testing.assert_allclose(X.reshape(2, -1), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fac.logdet(), np.linalg.slogdet(H)[1], rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_gradient_and_hessian_vector_product_match_dense_rows(seed, task, n_classes):
    vs, bar, theta, sl, rng = _random_problem(seed, task, n_classes, 7, 5)
    H, rows, s = _dense_hessian(bar, vs, theta, sl)
    V = rng.standard_normal((3, *theta.shape))

    g = bar.gradient(theta, sl).ravel()
    hv = bar.hess_vec(theta, sl, V).reshape(3, -1)

    g_dense = -(rows.T @ (1.0 / s)) + 2.0 * theta.ravel() / sl.sb
    np.testing.assert_allclose(g, g_dense, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(hv, (H @ V.reshape(3, -1).T).T, rtol=1e-10, atol=1e-9)


def test_samples_have_the_inverse_hessian_as_covariance():
    vs, bar, theta, sl, _ = _random_problem(3, Task.BINARY, 2, 4, 3)
    H, _, _ = _dense_hessian(bar, vs, theta, sl)
    fac = bar.factorize(theta, sl)
    n = 40_000

    S = fac.sample(np.random.default_rng(0), n).reshape(n, -1)

    cov = S.T @ S / n
    Hinv = np.linalg.inv(H)
    # Monte-Carlo error of a covariance entry ~ sqrt(2/n) of the scale.
    assert np.abs(cov - Hinv).max() <= 0.03 * np.abs(Hinv).max()


def test_span_basis_is_none_for_full_rank_and_orthonormal_otherwise():
    rng = np.random.default_rng(0)
    assert span_basis(rng.standard_normal((10, 4))) is None
    low = rng.standard_normal((10, 2)) @ rng.standard_normal((2, 5))

    V = span_basis(low)

    assert V is not None and V.shape == (5, 2)
    np.testing.assert_allclose(V.T @ V, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(low @ V @ V.T, low, atol=1e-10)  # rows lie in the span


@pytest.mark.parametrize("path", [HessianPath.LABEL_SPACE, HessianPath.GATE_SPACE])
def test_a_single_precision_factor_preconditions_to_float32_accuracy(seed, path, monkeypatch):
    import learner._barrier as barrier

    vs, bar, theta, sl, rng = _random_problem(seed, Task.BINARY, 2, 9, 4)
    H, _, _ = _dense_hessian(bar, vs, theta, sl)
    Y = rng.standard_normal((2, *theta.shape))
    expected = np.linalg.solve(H, Y.reshape(2, -1).T).T
    assert not bar.factorize(theta, sl, path, single=True).single  # small: stays float64
    monkeypatch.setattr(barrier, "_SINGLE_PRECISION_MIN", 0)
    fac = bar.factorize(theta, sl, path, single=True)
    assert fac.single and fac._chol32 is not None and fac._chol32.dtype == np.float32
    X = fac.solve(Y, approximate=True).reshape(2, -1)
    err = np.abs(X - expected).max() / np.abs(expected).max()
    assert 0 < err < 1e-3  # float32's rounding shows, and nothing worse


@pytest.mark.parametrize("n_classes", [3, 4, 6])
@pytest.mark.parametrize("single", [False, True])
def test_per_class_capacitance_equals_the_generic_multiclass_algebra(
    seed, n_classes, single, monkeypatch
):
    """The per-class products (ClassCuts) give the same A X, A^T z, H v, gradient, cut values,
    solves and log det as the generic products over every cut, to 1e-9 (float64) or float32's
    rounding (``single``)."""
    import learner._barrier as barrier

    vs, bar, theta, sl, rng = _random_problem(seed, Task.MULTICLASS, n_classes, 11, 5, P=4)
    assert bar.classes is not None
    sl.sb = 0.5  # inside the ball whatever the random theta's norm
    if single:
        monkeypatch.setattr(barrier, "_SINGLE_PRECISION_MIN", 0)
    X = rng.standard_normal((2, *theta.shape))
    z = rng.standard_normal((2, bar.Q))
    new = bar.factorize(theta, sl, HessianPath.LABEL_SPACE, single=single)
    # The barrier's own products (CG's H v, the gradient, the cut values) the same way.
    new_products = (
        bar.hess_vec(theta, sl, X),
        bar.gradient(theta, sl),
        bar.label_values(bar.z(X[0])),
    )
    classes, bar.classes = bar.classes, None
    old = bar.factorize(theta, sl, HessianPath.LABEL_SPACE)
    old_products = (
        bar.hess_vec(theta, sl, X),
        bar.gradient(theta, sl),
        bar.label_values(bar.z(X[0])),
    )
    bar.classes = classes

    for a, b in zip(new_products, old_products, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())

    np.testing.assert_allclose(new._apply_A(X), old._apply_A(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new._apply_At(z), old._apply_At(z), rtol=1e-12, atol=1e-12)
    tol = 1e-4 if single else 1e-9
    np.testing.assert_allclose(
        new.solve(X, approximate=single),
        old.solve(X),
        rtol=tol,
        atol=tol * np.abs(old.solve(X)).max(),
    )
    if not single:
        np.testing.assert_allclose(new.logdet(), old.logdet(), rtol=1e-12)


@pytest.mark.parametrize("n_classes", [3, 5])
def test_multiclass_centre_equals_the_generic_path(seed, n_classes, monkeypatch):
    """The analytic centre through the per-class path equals the generic one to 1e-9."""
    import learner._barrier as barrier
    from learner.center import analytic_center

    from .problems import teacher_problem

    vs = teacher_problem(seed, 40, d=5, n_gates=6, task=Task.MULTICLASS, n_classes=n_classes).vs
    new = analytic_center(vs)
    monkeypatch.setattr(barrier, "_CLASS_CUTS", False)
    old = analytic_center(vs)

    assert new.success and old.success
    np.testing.assert_allclose(new.x, old.x, rtol=0, atol=1e-9 * np.abs(old.x).max())
    assert abs(new.objective - old.objective) <= 1e-9 * abs(old.objective)


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
@pytest.mark.parametrize("path", [HessianPath.LABEL_SPACE, HessianPath.GATE_SPACE])
def test_many_right_hand_sides_solve_like_one_at_a_time(seed, task, n_classes, path):
    """The batched products used for many right-hand sides (Dikin recovery, sampling) give
    what the one-at-a-time products give."""
    vs, bar, theta, sl, rng = _random_problem(seed, task, n_classes, 9, 4)
    sl.sb = 0.5
    fac = bar.factorize(theta, sl, path)
    Y = rng.standard_normal((6, *theta.shape))
    z = rng.standard_normal((6, bar.Q))

    batched = fac.solve(Y)
    single = np.stack([fac.solve(Y[i]) for i in range(6)])

    np.testing.assert_allclose(batched, single, rtol=1e-10, atol=1e-12 * np.abs(single).max())
    np.testing.assert_allclose(
        fac._apply_At(z),
        np.concatenate([fac._apply_At(z[i : i + 1]) for i in range(6)]),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        fac._apply_A(Y), np.concatenate([fac._apply_A(Y[i : i + 1]) for i in range(6)]), rtol=1e-12
    )


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_the_block_preconditioner_inverts_the_hessian_without_its_label_cuts(seed, task, n_classes):
    """BlockPreconditioner.solve is (blockdiag(B_j) + beta beta^T)^{-1} (eq. BJ), against a
    dense matrix built from the definition of the pattern rows and the ball."""
    from learner._barrier import BlockPreconditioner

    vs, bar, theta, sl, rng = _random_problem(seed, task, n_classes, 9, 4)
    sl.sb = 0.5
    n = theta.size
    dense = np.zeros((n, n))
    J, r = bar.J, bar.r
    wp = (1.0 / sl.p**2).reshape(bar.L, J)
    for j in range(J):
        dense[j * r : (j + 1) * r, j * r : (j + 1) * r] = (bar.F.T * wp[:, j]) @ bar.F + (
            2.0 / sl.sb
        ) * np.eye(r)
    beta = (2.0 / sl.sb) * theta.ravel()
    dense += np.outer(beta, beta)
    y = rng.standard_normal(theta.shape)

    x = BlockPreconditioner(bar, theta, sl).solve(y)

    np.testing.assert_allclose(dense @ x.ravel(), y.ravel(), rtol=1e-8, atol=1e-8 * np.abs(y).max())


def test_pattern_blocks_from_the_cached_triangle_equal_the_loop(seed, monkeypatch):
    """B_j from the upper triangle of F (x) F (cached) equal the per-block loop (no cache)."""
    import learner._barrier as barrier

    vs, bar, theta, sl, rng = _random_problem(seed, Task.MULTICLASS, 3, 9, 4)
    wp = rng.random((bar.L, bar.J))
    assert bar._ff is not None
    cached = bar.pattern_blocks(wp, 0.3)
    monkeypatch.setattr(barrier, "_FF_CACHE_LIMIT", 0)
    looped = barrier.Barrier(vs, None).pattern_blocks(wp, 0.3)

    np.testing.assert_allclose(cached, looped, rtol=1e-13, atol=1e-13 * np.abs(looped).max())
    np.testing.assert_array_equal(cached, cached.transpose(0, 2, 1))


@pytest.mark.parametrize("r", [4, 20])
def test_block_inverses_by_cholesky_match_lu_and_fall_back_when_not_positive_definite(seed, r):
    """The preconditioner's block inverses (LAPACK potrf/potri, or batched LU below 12 x 12)
    invert every block; a block that is not positive definite sends all of them to LU."""
    from learner._barrier import _cholesky_inverse

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((5, 3 * r, r))
    B = np.einsum("jnr,jns->jrs", X, X) + 0.1 * np.eye(r)
    eye = np.broadcast_to(np.eye(r), B.shape)

    np.testing.assert_allclose(np.matmul(_cholesky_inverse(B), B), eye, atol=1e-9)
    # Indefinite with a positive diagonal (eigenvalues 3 and -1 in the first two coordinates):
    # potrf fails on it, and every block goes through the Jacobi-scaled LU instead.
    B[2] = np.eye(r)
    B[2, 0, 1] = B[2, 1, 0] = 2.0
    np.testing.assert_allclose(np.matmul(_cholesky_inverse(B), B), eye, atol=1e-9)
