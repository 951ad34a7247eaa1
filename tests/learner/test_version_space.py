"""Cuts are built by broadcasting and agree with explicit, loop-written rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learner.config import Task
from learner.version_space import add_labels, empty_version_space

from .problems import dense_rows

LEARNER = Path(__file__).resolve().parents[2] / "learner"


@pytest.mark.parametrize(
    ("task", "n_classes", "per_label"),
    [(Task.BINARY, 2, 1), (Task.MULTICLASS, 4, 3), (Task.REGRESSION, 1, 2)],
)
def test_label_cut_slacks_equal_explicit_rows(seed, task, n_classes, per_label):
    rng = np.random.default_rng(seed)
    vs = empty_version_space(rng.standard_normal((3, 4)), task, n_classes, 1.0, 0.2)
    y = rng.standard_normal(6) if task is Task.REGRESSION else rng.integers(0, n_classes, 6)
    vs = add_labels(vs, rng.standard_normal((6, 4)), y)
    theta = rng.standard_normal((vs.n_outputs, 2, 3, 4))
    cuts = vs.label_cuts()
    wd = np.einsum("ld,kpd->lkp", vs.X, theta[:, 0] - theta[:, 1])

    slack = np.einsum("qkp,qkp->q", cuts.coef, np.repeat(wd, per_label, axis=0)) + cuts.offset

    rows, rhs = dense_rows(vs)
    reference = (rows @ theta.ravel() + rhs).reshape(6, -1)[:, -per_label:].ravel()
    assert cuts.per_label == per_label
    np.testing.assert_allclose(slack, reference, atol=1e-12)
    assert vs.n_rows == rows.shape[0]


def test_every_label_adds_a_cut_even_when_the_centre_already_agrees():
    rng = np.random.default_rng(0)
    vs = empty_version_space(rng.standard_normal((2, 3)), Task.BINARY, 2, 1.0, 0.1)
    X = rng.standard_normal((5, 3))

    vs = add_labels(vs, X, np.ones(5))

    assert vs.label_cuts().coef.shape[0] == 5


def test_add_labels_returns_a_new_space_and_leaves_the_old_one_alone():
    rng = np.random.default_rng(0)
    vs0 = empty_version_space(rng.standard_normal((2, 3)), Task.BINARY, 2, 1.0, 0.1)

    vs1 = add_labels(vs0, rng.standard_normal((2, 3)), [0, 1])

    assert vs0.n_labels == 0 and vs1.n_labels == 2


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.zeros((1, 3)), [1], "all zeros"),
        (np.ones((1, 3)), [2], "integers in"),
        (np.ones((1, 3)), [0.5], "integers in"),
        (np.full((1, 3), np.nan), [1], "NaN"),
        (np.ones((2, 3)), [1], "shape"),
        (np.ones((1, 4)), [1], "features"),
    ],
)
def test_add_labels_rejects_bad_input_with_a_clear_error(X, y, message):
    vs = empty_version_space(np.ones((2, 3)), Task.BINARY, 2, 1.0, 0.1)

    with pytest.raises(ValueError, match=message):
        add_labels(vs, X, y)


def test_learner_never_builds_kronecker_products():
    sources = "\n".join(p.read_text() for p in LEARNER.glob("*.py"))

    assert "kron" not in sources
