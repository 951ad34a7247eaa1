"""The gated model and its ReLU network agree on labeled data; exports round-trip safely."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from learner.center import CenterStatus, analytic_center
from learner.config import LearnerConfig, Projection, Task
from learner.convex import Loss, convex_fit
from learner.features import FeatureMap, Gates, fit_feature_map
from learner.network import FORMAT_VERSION, ReLUNetwork, gated_decision, network_from_theta
from learner.version_space import VersionSpace

from .problems import teacher_problem

TASKS = [(Task.BINARY, 2), (Task.MULTICLASS, 3), (Task.REGRESSION, 1)]


def _identity(vs: VersionSpace) -> FeatureMap:
    """The teacher's X already carries the bias column: map features to themselves."""
    return FeatureMap(mean=np.zeros(vs.n_features), components=None, bias=False)


def _gated(vs: VersionSpace, theta: np.ndarray) -> np.ndarray:
    return gated_decision(vs.X, _identity(vs), Gates(vs.gate_weights), theta, dtype=np.float64)


def _relu_reference(X: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """g_k(x) = sum_i relu(x^T u_ki) - relu(x^T v_ki), written out directly."""
    pre = np.maximum(np.einsum("nd,kspd->nksp", X, theta), 0.0)
    return pre[:, :, 0].sum(axis=2) - pre[:, :, 1].sum(axis=2)


def _random_network(
    seed: int, task: Task, n_classes: int, projection: Projection = Projection.NONE
) -> tuple[ReLUNetwork, np.ndarray]:
    """A network on raw 6-dim embeddings through a fitted feature map, and a pool to score."""
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((40, 6)) * np.linspace(3.0, 0.5, 6)
    n_components = None if projection is Projection.NONE else 3
    config = LearnerConfig(
        task=task, n_classes=n_classes, projection=projection, n_components=n_components
    )
    fm = fit_feature_map(config, E, rng)
    theta = rng.standard_normal((config.n_outputs, 2, 5, fm.n_features))
    return network_from_theta(theta, fm, task, n_classes), E


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_relu_form_equals_gated_form_on_labeled_points_at_the_analytic_centre(
    seed, task, n_classes
):
    teacher = teacher_problem(seed, 30, 5, 6, task, n_classes)
    centre = analytic_center(teacher.vs)
    assert centre.status is CenterStatus.OPTIMAL

    net = network_from_theta(centre.x, _identity(teacher.vs), task, n_classes)

    gated = _gated(teacher.vs, centre.x)
    np.testing.assert_allclose(
        net.scores(teacher.vs.X), gated, rtol=1e-6, atol=1e-9 * np.abs(gated).max()
    )


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_relu_form_equals_gated_form_on_labeled_points_for_the_convex_fit(seed, task, n_classes):
    teacher = teacher_problem(seed, 30, 5, 6, task, n_classes)
    loss = Loss.SQUARED if task is Task.REGRESSION else Loss.HINGE
    fit = convex_fit(teacher.vs, loss=loss)

    net = network_from_theta(fit.theta, _identity(teacher.vs), task, n_classes)

    gated = _gated(teacher.vs, fit.theta)
    # The pattern rows hold up to the solver's constraint tolerance.
    np.testing.assert_allclose(
        net.scores(teacher.vs.X), gated, rtol=0, atol=1e-5 * max(1.0, np.abs(gated).max())
    )


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_network_computes_the_relu_reading_of_any_theta(seed, task, n_classes):
    rng = np.random.default_rng(seed)
    K = n_classes if task is Task.MULTICLASS else 1
    theta = rng.standard_normal((K, 2, 4, 5))
    X = rng.standard_normal((25, 5))

    net = network_from_theta(theta, FeatureMap(np.zeros(5), None, False), task, n_classes)

    np.testing.assert_allclose(net.scores(X), _relu_reference(X, theta), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_network_has_two_hidden_units_per_gate_and_output(task, n_classes):
    K = n_classes if task is Task.MULTICLASS else 1
    theta = np.random.default_rng(0).standard_normal((K, 2, 7, 4))

    net = network_from_theta(theta, FeatureMap(np.zeros(4), None, False), task, n_classes)

    assert net.n_hidden == 2 * 7 * K
    assert net.W1.shape == (2 * 7 * K, 4)
    assert net.W2.shape == (2 * 7 * K, K)
    # Each unit feeds exactly one output, with weight +-sqrt(||w||) and a unit-norm-scaled input.
    assert np.all(np.count_nonzero(net.W2, axis=1) == 1)


def test_units_with_zero_weight_are_dropped_and_the_scores_do_not_change():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((3, 2, 6, 4))
    theta[0, 1, 2] = 0.0
    theta[2, 0, 5] = 0.0
    theta[1, 0, 0] = 1e-14  # below rtol times the largest norm
    X = rng.standard_normal((20, 4))
    fm = FeatureMap(np.zeros(4), None, False)

    net = network_from_theta(theta, fm, Task.MULTICLASS, 3)

    assert net.n_hidden == 2 * 6 * 3 - 3
    assert np.all(np.linalg.norm(net.W1, axis=1) > 0)
    np.testing.assert_allclose(net.scores(X), _relu_reference(X, theta), atol=1e-12)


def test_all_zero_theta_gives_a_network_with_no_units_and_zero_scores():
    fm = FeatureMap(np.zeros(4), None, False)

    net = network_from_theta(np.zeros((1, 2, 3, 4)), fm, Task.BINARY, 2)

    assert net.n_hidden == 0
    np.testing.assert_array_equal(net.scores(np.ones((2, 4))), np.zeros((2, 1)))


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("projection", list(Projection))
@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_dict_and_json_exports_give_identical_predictions_and_scores(task, n_classes, projection):
    net, E = _random_network(0, task, n_classes, projection)

    for loaded in (
        ReLUNetwork.from_dict(net.to_dict()),
        ReLUNetwork.from_dict(json.loads(net.to_json())),
    ):
        assert loaded.task is task and loaded.n_classes == n_classes
        np.testing.assert_array_equal(loaded.scores(E), net.scores(E))
        np.testing.assert_array_equal(loaded.predict(E), net.predict(E))


@pytest.mark.parametrize("projection", list(Projection))
@pytest.mark.parametrize(("task", "n_classes"), TASKS)
def test_npz_export_gives_identical_predictions_and_scores(task, n_classes, projection):
    net, E = _random_network(1, task, n_classes, projection)

    loaded = ReLUNetwork.from_npz(net.to_npz())

    assert loaded.task is task and loaded.n_classes == n_classes
    assert (loaded.feature_map.components is None) == (projection is Projection.NONE)
    np.testing.assert_array_equal(loaded.scores(E), net.scores(E))
    np.testing.assert_array_equal(loaded.predict(E), net.predict(E))


def test_npz_export_loads_without_pickle():
    net, _ = _random_network(0, Task.MULTICLASS, 3, Projection.PCA)

    with np.load(io.BytesIO(net.to_npz()), allow_pickle=False) as z:
        dtypes = {name: z[name].dtype for name in z.files}

    assert all(dt.kind != "O" for dt in dtypes.values())


def _npz(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # allow_pickle defaults to True when saving
    return buf.getvalue()


def test_from_npz_refuses_a_pickled_object_array():
    net, _ = _random_network(0, Task.BINARY, 2)
    with np.load(io.BytesIO(net.to_npz()), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["W1"] = np.array([{"payload": "unpickled"}, None], dtype=object)

    with pytest.raises(ValueError, match="allow_pickle"):
        ReLUNetwork.from_npz(_npz(**arrays))


def test_from_dict_rejects_a_wrong_format():
    data = _random_network(0, Task.BINARY, 2)[0].to_dict()
    data["format"] = "carve-learner-state"

    with pytest.raises(ValueError, match="not a Carve ReLU network"):
        ReLUNetwork.from_dict(data)


def test_from_dict_rejects_a_newer_version():
    data = _random_network(0, Task.BINARY, 2)[0].to_dict()
    data["version"] = FORMAT_VERSION + 1

    with pytest.raises(ValueError, match="newer"):
        ReLUNetwork.from_dict(data)


def _rewrite_meta(npz: bytes, **changes: object) -> bytes:
    with np.load(io.BytesIO(npz), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(changes)
    arrays["meta"] = np.array(json.dumps(meta))
    return _npz(**arrays)


def test_from_npz_rejects_a_wrong_format():
    npz = _random_network(0, Task.BINARY, 2)[0].to_npz()

    with pytest.raises(ValueError, match="not a Carve ReLU network"):
        ReLUNetwork.from_npz(_rewrite_meta(npz, format="something-else"))


def test_from_npz_rejects_a_newer_version():
    npz = _random_network(0, Task.BINARY, 2)[0].to_npz()

    with pytest.raises(ValueError, match="newer"):
        ReLUNetwork.from_npz(_rewrite_meta(npz, version=FORMAT_VERSION + 1))


# --------------------------------------------------------------------------- predict


def test_binary_predict_is_zero_or_one_by_the_sign_of_the_score(seed):
    net, E = _random_network(seed, Task.BINARY, 2)

    pred = net.predict(E)
    scores = net.decision_function(E)

    assert scores.shape == (E.shape[0],)
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (scores > 0).astype(int))


def test_multiclass_predict_is_the_argmax_of_the_scores(seed):
    net, E = _random_network(seed, Task.MULTICLASS, 4)

    pred = net.predict(E)
    scores = net.decision_function(E)

    assert scores.shape == (E.shape[0], 4)
    np.testing.assert_array_equal(pred, np.argmax(scores, axis=1))
    assert set(np.unique(pred)) <= {0, 1, 2, 3}


def test_regression_predict_returns_the_values(seed):
    net, E = _random_network(seed, Task.REGRESSION, 1)

    pred = net.predict(E)

    assert pred.shape == (E.shape[0],) and pred.dtype == np.float64
    np.testing.assert_array_equal(pred, net.scores(E)[:, 0])
    np.testing.assert_array_equal(net.decision_function(E), pred)


def test_scores_reject_embeddings_of_the_wrong_width():
    net, E = _random_network(0, Task.BINARY, 2)

    with pytest.raises(ValueError, match="features, expected 6"):
        net.predict(E[:, :5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gated_decision_in_chunks_equals_one_pass(seed, dtype):
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((103, 6))
    config = LearnerConfig(projection=Projection.PCA, n_components=4)
    fm = fit_feature_map(config, E, rng)
    gates = Gates(rng.standard_normal((5, fm.n_features)))
    theta = rng.standard_normal((3, 2, 5, fm.n_features))

    whole = gated_decision(E, fm, gates, theta, dtype=dtype)
    chunked = gated_decision(E, fm, gates, theta, chunk=10, dtype=dtype)

    assert whole.shape == (103, 3) and whole.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(chunked, whole, rtol=tol, atol=tol * np.abs(whole).max())
