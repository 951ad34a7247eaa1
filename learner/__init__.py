"""Carve's learner: a gradient-free cutting-plane learner for ReLU networks of depth 2 to 4.

A pure numerical library (numpy, scipy, cvxpy): no Django, no Celery, no database. The
sklearn-style estimator lives in :mod:`learner.estimator` (it imports scikit-learn) and is not
imported here. See docs/learner.md for the method and the API.
"""

from __future__ import annotations

from learner._barrier import HessianPath
from learner.center import CenterOptions, CenterResult, CenterStatus, analytic_center, has_interior
from learner.config import GateInit, LearnerConfig, Projection, Task
from learner.convex import ConvexFitError, ConvexFitResult, Loss, SolverFallbackWarning, convex_fit
from learner.diagnostics import Diagnostics, diagnose, log_volume, sample_networks
from learner.features import FeatureMap, Gates, fit_feature_map, sample_gates
from learner.loop import LoopOptions, LoopResult, run_loop
from learner.network import ReLUNetwork, gated_decision, network_from_theta
from learner.query import (
    PoolExhaustedError,
    QueryResult,
    QueryStrategy,
    score_pool,
    select_batch,
)
from learner.state import (
    LearnerState,
    center_network,
    diagnostics,
    fit_network,
    init_state,
    query,
    rebuild,
    recenter,
    with_labels,
)
from learner.version_space import VersionSpace, add_labels, empty_version_space

__all__ = [
    "CenterOptions",
    "CenterResult",
    "CenterStatus",
    "ConvexFitError",
    "ConvexFitResult",
    "Diagnostics",
    "FeatureMap",
    "GateInit",
    "Gates",
    "HessianPath",
    "LearnerConfig",
    "LearnerState",
    "LoopOptions",
    "LoopResult",
    "Loss",
    "PoolExhaustedError",
    "Projection",
    "QueryResult",
    "QueryStrategy",
    "ReLUNetwork",
    "SolverFallbackWarning",
    "Task",
    "VersionSpace",
    "add_labels",
    "analytic_center",
    "center_network",
    "convex_fit",
    "diagnose",
    "diagnostics",
    "empty_version_space",
    "fit_feature_map",
    "fit_network",
    "gated_decision",
    "has_interior",
    "init_state",
    "log_volume",
    "network_from_theta",
    "query",
    "rebuild",
    "recenter",
    "run_loop",
    "sample_gates",
    "sample_networks",
    "score_pool",
    "select_batch",
    "with_labels",
]
