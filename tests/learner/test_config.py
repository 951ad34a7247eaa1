"""LearnerConfig: validated in one place, with errors that name the field."""

from __future__ import annotations

import json

import pytest

from learner.config import GateInit, LearnerConfig, Projection, Task


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_gates": 0}, r"n_gates must be >= 1, got 0"),
        ({"n_gates": -3}, r"n_gates must be >= 1, got -3"),
        ({"radius": 0.0}, r"radius must be a finite number > 0, got 0.0"),
        ({"radius": -1.0}, r"radius must be a finite number > 0"),
        ({"radius": float("inf")}, r"radius must be a finite number > 0, got inf"),
        ({"radius": float("nan")}, r"radius must be a finite number > 0, got nan"),
        ({"epsilon": 0.0}, r"epsilon must be a finite number > 0"),
        ({"seed": -1}, r"seed must be >= 0, got -1"),
        ({"task": "ranking"}, r"task must be one of 'binary', 'multiclass', 'regression'"),
        ({"projection": "svd"}, r"projection must be one of 'none', 'pca', 'random'"),
        ({"gate_init": "uniform"}, r"gate_init must be one of 'gaussian', 'data'"),
        ({"n_components": 4}, r"n_components is only used with a projection"),
        ({"projection": "pca"}, r"n_components must be >= 1 with a projection, got None"),
        ({"projection": "random", "n_components": 0}, r"n_components must be >= 1"),
        ({"task": "multiclass", "n_classes": 2}, r"n_classes must be >= 3 for a multiclass"),
        ({"task": "binary", "n_classes": 3}, r"n_classes must be 2 for a binary task, got 3"),
    ],
)
def test_bad_values_are_rejected_with_a_message_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LearnerConfig(**kwargs)


def test_unknown_task_error_shows_the_offending_value():
    with pytest.raises(ValueError, match=r"got 'ranking'"):
        LearnerConfig(task="ranking")


def test_string_enum_values_are_accepted_and_stored_as_enums():
    config = LearnerConfig(
        task="multiclass", n_classes=4, projection="pca", n_components=8, gate_init="data"
    )

    assert config.task is Task.MULTICLASS
    assert config.projection is Projection.PCA
    assert config.gate_init is GateInit.DATA
    assert config == LearnerConfig(
        task=Task.MULTICLASS,
        n_classes=4,
        projection=Projection.PCA,
        n_components=8,
        gate_init=GateInit.DATA,
    )


def test_regression_stores_one_class_whatever_was_given():
    config = LearnerConfig(task="regression", n_classes=7)

    assert config.n_classes == 1
    assert config.n_outputs == 1


@pytest.mark.parametrize(
    ("kwargs", "n_outputs"),
    [({}, 1), ({"task": "multiclass", "n_classes": 5}, 5), ({"task": "regression"}, 1)],
)
def test_n_outputs_is_one_network_per_class_only_for_multiclass(kwargs, n_outputs):
    assert LearnerConfig(**kwargs).n_outputs == n_outputs


@pytest.mark.parametrize(
    "config",
    [
        LearnerConfig(),
        LearnerConfig(
            task=Task.MULTICLASS,
            n_classes=3,
            n_gates=5,
            bias=False,
            projection=Projection.RANDOM,
            n_components=2,
            gate_init=GateInit.GAUSSIAN,
            radius=2.5,
            epsilon=0.3,
            seed=11,
        ),
        LearnerConfig(task=Task.REGRESSION, projection=Projection.PCA, n_components=4),
    ],
)
def test_to_dict_from_dict_round_trips_through_json(config):
    data = config.to_dict()

    assert data["task"] == config.task.value
    assert data["projection"] == config.projection.value
    assert data["gate_init"] == config.gate_init.value
    assert LearnerConfig.from_dict(json.loads(json.dumps(data))) == config


def test_from_dict_rejects_unknown_keys():
    data = {**LearnerConfig().to_dict(), "n_hidden": 3}

    with pytest.raises(TypeError, match="n_hidden"):
        LearnerConfig.from_dict(data)


def test_config_is_immutable():
    config = LearnerConfig()

    with pytest.raises(AttributeError):
        config.n_gates = 4  # type: ignore[misc]


def test_recommended_projects_wide_embeddings_and_keeps_narrow_ones() -> None:
    wide = LearnerConfig.recommended(384, seed=3)
    assert wide.projection is Projection.PCA and wide.n_components == 64 and wide.seed == 3
    assert wide.auto_delta  # delta cross-validated per campaign (docs/benchmarks.md)
    assert LearnerConfig.recommended(384, projection="none", n_components=None).projection is (
        Projection.NONE
    )
    narrow = LearnerConfig.recommended(16)
    assert narrow == LearnerConfig(auto_delta=True)
