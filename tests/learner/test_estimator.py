"""CuttingPlaneClassifier follows the scikit-learn contract and learns simple data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from learner.estimator import CuttingPlaneClassifier
from learner.state import LearnerState

#: Checks expected to fail because they do not apply to this estimator, with the reason.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}

#: Checks that scikit-learn itself skips in this environment: they raise SkipTest before
#: asserting anything, so they are left out rather than reported as skipped tests.
NOT_RUNNABLE_HERE: dict[str, str] = {
    "check_array_api_input": (
        "needs SCIPY_ARRAY_API=1 set before scipy is imported (it would change scipy for the "
        "whole test process); the estimator declares no array-API support"
    ),
    "check_classifier_data_not_an_array": (
        "its pandas half needs pandas, which is not a project dependency; the non-ndarray "
        "half is covered by test_fit_and_predict_accept_nested_lists"
    ),
}


def _check_name(check: Any) -> str:
    return getattr(check, "func", check).__name__


def _runnable(decorator: pytest.MarkDecorator) -> pytest.MarkDecorator:
    """``decorator`` (from parametrize_with_checks) without the NOT_RUNNABLE_HERE checks."""
    argnames, params = decorator.mark.args
    kept = [p for p in params if _check_name(getattr(p, "values", p)[1]) not in NOT_RUNNABLE_HERE]
    return pytest.mark.parametrize(argnames, kept, **decorator.mark.kwargs)


@_runnable(
    parametrize_with_checks(
        [CuttingPlaneClassifier(n_gates=8, random_state=0)],
        expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
    )
)
def test_estimator_passes_the_sklearn_checks(estimator, check):
    check(estimator)


def _blobs(seed: int, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(
        n_samples=240, centers=n_classes, n_features=4, cluster_std=1.0, random_state=seed
    )


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("final_model", ["convex", "center"])
def test_it_classifies_held_out_blobs_with_accuracy_above_0_9(seed, n_classes, final_model):
    X, y = _blobs(seed, n_classes)
    train, test = slice(0, 160), slice(160, None)

    clf = CuttingPlaneClassifier(n_gates=8, final_model=final_model, random_state=seed)
    clf.fit(X[train], y[train])

    assert clf.score(X[test], y[test]) > 0.9
    assert isinstance(clf.state_, LearnerState) and clf.state_.n_labels == 160


def test_decision_function_is_one_column_for_two_classes_and_k_columns_otherwise():
    X2, y2 = _blobs(0, 2)
    X3, y3 = _blobs(0, 3)

    two = CuttingPlaneClassifier(n_gates=8, random_state=0).fit(X2, y2)
    three = CuttingPlaneClassifier(n_gates=8, random_state=0).fit(X3, y3)

    assert two.decision_function(X2).shape == (240,)
    assert three.decision_function(X3).shape == (240, 3)
    np.testing.assert_array_equal(
        two.predict(X2), two.classes_[(two.decision_function(X2) > 0).astype(int)]
    )
    np.testing.assert_array_equal(
        three.predict(X3), three.classes_[np.argmax(three.decision_function(X3), axis=1)]
    )


def test_get_params_and_set_params_round_trip():
    params = {
        "n_gates": 5,
        "depth": 3,
        "radius": 2.0,
        "delta": 0.01,
        "bias": False,
        "projection": "pca",
        "n_components": 3,
        "gate_init": "data",
        "final_model": "center",
        "loss": "squared",
        "beta": 0.01,
        "tol": 1e-8,
        "max_iter": 50,
        "random_state": 4,
    }

    clf = CuttingPlaneClassifier().set_params(**params)

    assert clf.get_params() == params
    assert CuttingPlaneClassifier(**params).get_params() == params
    assert clone(clf).get_params() == params


def test_it_learns_string_class_labels_and_predicts_them():
    X, y = _blobs(1, 2)
    names = np.array(["spam", "ham"])[y]

    clf = CuttingPlaneClassifier(n_gates=8, random_state=0).fit(X, names)

    np.testing.assert_array_equal(clf.classes_, ["ham", "spam"])
    pred = clf.predict(X)
    assert set(pred) <= {"ham", "spam"}
    assert np.mean(pred == names) > 0.9


def test_fit_and_predict_accept_nested_lists():
    X, y = _blobs(2, 3)

    from_array = CuttingPlaneClassifier(n_gates=8, random_state=0).fit(X, y)
    from_lists = CuttingPlaneClassifier(n_gates=8, random_state=0).fit(X.tolist(), y.tolist())

    np.testing.assert_array_equal(from_lists.predict(X.tolist()), from_array.predict(X))


def test_query_returns_distinct_pool_indices_outside_exclude(seed):
    X, y = _blobs(seed, 2)
    clf = CuttingPlaneClassifier(n_gates=8, random_state=seed).fit(X[:40], y[:40])
    pool = X[40:]
    exclude = np.zeros(pool.shape[0], dtype=bool)
    exclude[::2] = True

    picked = clf.query(pool, 6, exclude=exclude, random_state=seed)

    assert picked.indices.shape == (6,) and picked.scores.shape == (6,)
    assert len(set(picked.indices.tolist())) == 6
    assert not np.any(exclude[picked.indices])
    assert np.all((picked.indices >= 0) & (picked.indices < pool.shape[0]))


def test_query_is_reproducible_for_the_same_random_state():
    X, y = _blobs(0, 3)
    clf = CuttingPlaneClassifier(n_gates=8, random_state=0).fit(X[:60], y[:60])

    a = clf.query(X[60:], 5, random_state=3)
    b = clf.query(X[60:], 5, random_state=3)

    np.testing.assert_array_equal(a.indices, b.indices)


def test_unknown_final_model_is_rejected_at_fit():
    X, y = _blobs(0, 2)

    with pytest.raises(ValueError, match="final_model must be 'convex' or 'center'"):
        CuttingPlaneClassifier(final_model="both").fit(X, y)
