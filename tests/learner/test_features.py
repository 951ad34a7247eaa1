"""Feature map (identity, PCA, random projection) and gates drawn from an injected rng."""

from __future__ import annotations

import numpy as np
import pytest

from learner.config import GateInit, LearnerConfig, Projection
from learner.features import FeatureMap, Gates, fit_feature_map, sample_gates


def _anisotropic_pool(seed: int, n: int = 60, dim: int = 6) -> np.ndarray:
    """Distinct variances per direction, so the principal components are well separated."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.25])[:dim]
    return (rng.standard_normal((n, dim)) * scales) @ rotation.T + rng.normal(size=dim)


def test_identity_map_appends_a_bias_column_only_when_asked():
    E = np.arange(6.0).reshape(2, 3)
    rng = np.random.default_rng(0)

    with_bias = fit_feature_map(LearnerConfig(), E, rng)
    without = fit_feature_map(LearnerConfig(bias=False), E, rng)

    np.testing.assert_array_equal(with_bias.transform(E), [[0, 1, 2, 1], [3, 4, 5, 1]])
    np.testing.assert_array_equal(without.transform(E), E)
    assert (with_bias.n_raw, with_bias.n_features, without.n_features) == (3, 4, 3)


def test_pca_equals_the_top_eigenvectors_of_the_pool_covariance_up_to_sign(seed):
    E = _anisotropic_pool(seed)
    config = LearnerConfig(projection=Projection.PCA, n_components=3)

    fm = fit_feature_map(config, E, np.random.default_rng(seed))

    evals, evecs = np.linalg.eigh(np.cov(E, rowvar=False))
    top = evecs[:, np.argsort(evals)[::-1][:3]]
    signs = np.sign(np.sum(top * fm.components, axis=0))
    np.testing.assert_allclose(fm.components, top * signs, atol=1e-10)
    np.testing.assert_allclose(fm.mean, E.mean(axis=0), rtol=1e-12, atol=1e-12)
    # Projected features are centred and uncorrelated, with the top eigenvalues as variances.
    Z = fm.transform(E)[:, :-1]
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-10)
    expected = np.diag(np.sort(evals)[::-1][:3])
    np.testing.assert_allclose(np.cov(Z, rowvar=False), expected, atol=1e-9)


def test_pca_fixes_each_component_sign_so_its_largest_entry_is_positive(seed):
    E = _anisotropic_pool(seed)
    config = LearnerConfig(projection=Projection.PCA, n_components=4)

    fm = fit_feature_map(config, E, np.random.default_rng(0))

    largest = fm.components[np.argmax(np.abs(fm.components), axis=0), np.arange(4)]
    assert np.all(largest > 0)


def test_pca_accepts_float32_pools_and_gives_the_float64_result():
    E = _anisotropic_pool(0)
    config = LearnerConfig(projection=Projection.PCA, n_components=2)

    a = fit_feature_map(config, E, np.random.default_rng(0))
    b = fit_feature_map(config, E.astype(np.float32), np.random.default_rng(0))

    assert b.components.dtype == np.float64
    np.testing.assert_allclose(b.components, a.components, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_random_projection_has_the_configured_shape(bias):
    E = np.random.default_rng(0).standard_normal((30, 10))
    config = LearnerConfig(projection="random", n_components=4, bias=bias)

    fm = fit_feature_map(config, E, np.random.default_rng(1))

    assert fm.components.shape == (10, 4)
    assert fm.n_features == 4 + int(bias)
    assert fm.transform(E).shape == (30, 4 + int(bias))
    np.testing.assert_array_equal(fm.mean, np.zeros(10))


def test_random_projection_is_drawn_from_the_rng():
    E = np.random.default_rng(0).standard_normal((30, 10))
    config = LearnerConfig(projection="random", n_components=4)

    a = fit_feature_map(config, E, np.random.default_rng(7))
    b = fit_feature_map(config, E, np.random.default_rng(7))
    c = fit_feature_map(config, E, np.random.default_rng(8))

    np.testing.assert_array_equal(a.components, b.components)
    assert not np.allclose(a.components, c.components)


@pytest.mark.parametrize("projection", [Projection.PCA, Projection.RANDOM])
def test_projection_wider_than_the_embeddings_is_rejected(projection):
    config = LearnerConfig(projection=projection, n_components=7)

    with pytest.raises(ValueError, match="n_components=7 exceeds the embedding dimension 6"):
        fit_feature_map(config, _anisotropic_pool(0), np.random.default_rng(0))


def test_pca_needs_two_pool_items():
    config = LearnerConfig(projection=Projection.PCA, n_components=1)

    with pytest.raises(ValueError, match="at least 2 pool items"):
        fit_feature_map(config, np.ones((1, 3)), np.random.default_rng(0))


@pytest.mark.parametrize("gate_init", list(GateInit))
def test_gate_sampling_is_reproducible_from_the_rng(seed, gate_init):
    E = _anisotropic_pool(seed)
    config = LearnerConfig(n_gates=9, gate_init=gate_init)
    fm = fit_feature_map(config, E, np.random.default_rng(seed))

    a = sample_gates(config, fm, np.random.default_rng(seed), E)
    b = sample_gates(config, fm, np.random.default_rng(seed), E)
    c = sample_gates(config, fm, np.random.default_rng(seed + 1), E)

    assert a.weights.shape == (9, fm.n_features) and a.n_gates == 9
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.allclose(a.weights, c.weights)


def test_data_gates_pass_next_to_pool_points_but_never_exactly_through_one(seed):
    E = _anisotropic_pool(seed)
    config = LearnerConfig(n_gates=12, gate_init=GateInit.DATA)
    fm = fit_feature_map(config, E, np.random.default_rng(seed))

    gates = sample_gates(config, fm, np.random.default_rng(seed), E)

    X = fm.transform(E)  # rows [p, 1]
    distance = np.abs(X @ gates.weights.T)  # unit normals: distance of each point to each gate
    spread = np.mean(np.linalg.norm(X[:, :-1], axis=1))
    # Each gate passes within 1e-3 * spread of its anchor (a pool point) ...
    assert np.all(distance.min(axis=0) <= 2e-3 * spread)
    # ... but not exactly through it: a tie would make the pattern bit depend on rounding.
    assert np.all(distance.min(axis=0) > 0)
    np.testing.assert_allclose(np.linalg.norm(gates.weights[:, :-1], axis=1), 1.0, rtol=1e-12)


def test_data_gates_need_a_bias_and_a_pool():
    E = _anisotropic_pool(0)
    rng = np.random.default_rng(0)
    no_bias = LearnerConfig(gate_init="data", bias=False)
    with_bias = LearnerConfig(gate_init="data")

    with pytest.raises(ValueError, match="needs bias=True"):
        sample_gates(no_bias, fit_feature_map(no_bias, E, rng), rng, E)
    with pytest.raises(ValueError, match="needs the pool"):
        sample_gates(with_bias, fit_feature_map(with_bias, E, rng), rng, None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_patterns_are_bools_of_shape_n_by_p_matching_the_gate_signs(seed, dtype):
    rng = np.random.default_rng(seed)
    gates = Gates(rng.standard_normal((7, 4)))
    X = rng.standard_normal((25, 4)).astype(dtype)

    D = gates.patterns(X)

    assert D.shape == (25, 7) and D.dtype == np.bool_
    np.testing.assert_array_equal(D, (X.astype(np.float64) @ gates.weights.T) >= 0)


def test_pattern_bit_is_on_exactly_on_the_gate_hyperplane():
    gates = Gates(np.array([[1.0, -1.0]]))

    D = gates.patterns(np.array([[2.0, 2.0], [1.0, 2.0]]))

    np.testing.assert_array_equal(D, [[True], [False]])


def test_feature_map_transform_honours_the_requested_dtype():
    fm = FeatureMap(mean=np.zeros(3), components=np.eye(3)[:, :2], bias=True)

    Z = fm.transform(np.ones((4, 3)), dtype=np.float32)

    assert Z.dtype == np.float32 and Z.shape == (4, 3)
