"""Calibration of the centre network (docs/learner.md, "Calibration", eq. CAL) and the reason
codes of suggestions (learner/suggest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from learner.calibration import (
    Calibration,
    CalibrationStatus,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    network_scores,
    probabilities,
    smoothed_targets,
)
from learner.config import LearnerConfig, Task
from learner.state import LearnerState, center_network, init_state, recenter, with_labels
from learner.suggest import INFORMATIVE, NEW, UNSURE, nearest_distance, reasons


def _blobs(
    seed: int, n: int, n_classes: int = 2, dim: int = 8, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Separable Gaussian blobs with a share ``noise`` of labels moved to another class."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * 1.5
    y = rng.integers(n_classes, size=n)
    E = centres[y] + rng.standard_normal((n, dim))
    flip = rng.random(n) < noise
    y = np.where(flip, (y + rng.integers(1, n_classes, size=n)) % n_classes, y)
    return E, y


def _state(seed: int, n: int, n_classes: int = 2, n_pool: int = 400) -> LearnerState:
    E, y = _blobs(seed, n_pool, n_classes)
    task = Task.BINARY if n_classes == 2 else Task.MULTICLASS
    config = LearnerConfig(task=task, n_classes=n_classes, n_gates=8, seed=seed)
    state = with_labels(init_state(config, E), E[:n], y[:n])
    return recenter(state)[0]


def test_calibrated_probabilities_beat_raw_margins_on_held_out_data(seed: int) -> None:
    n_pool = 400
    state = _state(seed, 120, n_pool=n_pool)
    cal = calibrate(state, np.random.default_rng(seed))
    assert cal.status is CalibrationStatus.FITTED
    assert cal.temperature > 0
    assert cal.n_folds == 5 and cal.n_labels == 120
    assert cal.log_loss is not None and cal.log_loss_raw is not None
    assert cal.log_loss < cal.log_loss_raw
    assert cal.accuracy is not None and cal.accuracy > 0.7
    # On items the learner never saw, calibrated probabilities have lower log loss and ECE
    # than the softmax of the raw margins.
    E, y = _blobs(seed, n_pool)
    scores = center_network(state).scores(E[120:])
    test_y = y[120:]
    raw = probabilities(scores, Task.BINARY)
    calibrated = cal.probabilities(scores, Task.BINARY)
    assert log_loss(scores, test_y, Task.BINARY, cal.temperature) < log_loss(
        scores, test_y, Task.BINARY
    )
    assert expected_calibration_error(calibrated, test_y) < expected_calibration_error(raw, test_y)
    # The temperature never changes the predicted class.
    np.testing.assert_array_equal(calibrated.argmax(axis=1), raw.argmax(axis=1))


def test_multiclass_calibration() -> None:
    state = _state(3, 90, n_classes=3)
    cal = calibrate(state, np.random.default_rng(0), n_folds=3)
    assert cal.status is CalibrationStatus.FITTED and cal.n_folds == 3
    assert cal.log_loss is not None and cal.log_loss_raw is not None
    assert cal.log_loss < cal.log_loss_raw
    p = cal.probabilities(np.zeros((4, 3)), Task.MULTICLASS)
    np.testing.assert_allclose(p, 1 / 3)


def test_deterministic_with_a_seeded_generator() -> None:
    state = _state(1, 60)
    a = calibrate(state, np.random.default_rng(7))
    b = calibrate(state, np.random.default_rng(7))
    assert (a.temperature, a.accuracy, a.log_loss) == (b.temperature, b.accuracy, b.log_loss)
    assert Calibration.from_dict(a.to_dict()).temperature == a.temperature


def test_too_few_labels_and_no_centre() -> None:
    state = _state(0, 8)
    assert calibrate(state, np.random.default_rng(0)).status is CalibrationStatus.TOO_FEW_LABELS
    E, y = _blobs(0, 40)
    config = LearnerConfig(task=Task.BINARY, n_classes=2, n_gates=8)
    fresh = with_labels(init_state(config, E), E[:20], y[:20])  # no recentre yet
    assert calibrate(fresh, np.random.default_rng(0)).status is CalibrationStatus.NO_CENTRE
    one_class = recenter(with_labels(init_state(config, E), E[:12], np.zeros(12, int)))[0]
    cal = calibrate(one_class, np.random.default_rng(0))
    assert cal.status is CalibrationStatus.TOO_FEW_LABELS and cal.temperature == 1.0


def test_fit_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    s = rng.standard_normal((20000, 1)) * 0.05
    y = (rng.random(20000) < 1 / (1 + np.exp(-s[:, 0] / 0.02))).astype(int)
    T, b = fit_temperature(s, y, Task.BINARY)
    assert b == 0.0
    assert pytest.approx(0.02, rel=0.1) == T
    T2, b2 = fit_temperature(s + 0.01, y, Task.BINARY, bias=True)
    assert pytest.approx(0.02, rel=0.1) == T2
    assert pytest.approx(-0.5, abs=0.15) == b2


def test_smoothed_targets_are_platts() -> None:
    t = smoothed_targets(np.array([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(t[0], [1 - 1 / 5, 1 / 5])
    np.testing.assert_allclose(t[3], [1 / 3, 1 - 1 / 3])
    np.testing.assert_allclose(t.sum(axis=1), 1.0)


def test_network_scores_match_the_network() -> None:
    state = _state(2, 40)
    E, _ = _blobs(2, 400)
    net = center_network(state)
    np.testing.assert_allclose(
        network_scores(net, state.feature_map.transform(E[:50])), net.scores(E[:50])
    )


def test_reasons() -> None:
    rng = np.random.default_rng(0)
    labeled = rng.standard_normal((30, 5)) + 5.0  # one tight region
    items = np.vstack([labeled[:3] + 0.01, -labeled[:1]])
    probs = np.array([[0.52, 0.48], [0.95, 0.05], [0.1, 0.9], [0.9, 0.1]])
    assert reasons(probs, items, labeled) == [UNSURE, INFORMATIVE, INFORMATIVE, NEW]
    assert reasons(probs, items, labeled[:5]) == [UNSURE, *[INFORMATIVE] * 3]  # too few labels
    d = nearest_distance(items, labeled)
    assert d.shape == (4,) and d[3] > 1.0 > d[0]
