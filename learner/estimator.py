"""A scikit-learn estimator on top of the learner's pure functions, for offline use.

This is the one module of :mod:`learner` that imports scikit-learn (already installed with
sentence-transformers); ``import learner`` does not load it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from learner.center import CenterOptions
from learner.config import DEFAULT_DELTA, GateInit, LearnerConfig, Projection, Task
from learner.convex import parse_loss
from learner.query import QueryResult
from learner.state import (
    LearnerState,
    center_network,
    fit_network,
    init_state,
    query,
    recenter,
    with_labels,
)


class CuttingPlaneClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped (Any bases)
    """ReLU classifier (depth 2 to 4) trained by the cutting-plane learner.

    ``fit`` builds the version space of all labels, computes its analytic centre, and (with
    ``final_model="convex"``) fits the convex group-lasso program on the same gates. The
    fitted network is ``network_``; ``query`` picks the next items to label from a pool.

    Parameters
    ----------
    n_gates : int or None, default=None
        Gates of the first hidden layer; None takes the depth's default (32 at depth 2).
    depth : {2, 3, 4}, default=2
        Network depth; deeper networks use the learner's per-layer gate defaults above the
        first layer (:data:`learner.config.DEFAULT_LAYER_GATES`).
    radius : float, default=1.0
    delta : float, default=learner.config.DEFAULT_DELTA
        Softness of the label cuts (docs/learner.md, "Soft version space"); 0 gives hard
        cuts, whose centre fits every training label.
    bias : bool, default=True
    projection : {"none", "pca", "random"}, default="none"
    n_components : int or None, default=None
        Output dimension of the projection; ignored when ``projection="none"``.
    gate_init : {"gaussian", "data"}, default="gaussian"
    final_model : {"convex", "center"}, default="convex"
    loss : {"hinge", "squared"}, default="hinge"
    beta : float, default=1e-3
        Group-lasso weight of the convex fit: a near hard-margin fit for arbitrary features
        (the platform's :func:`learner.fit_network` default, 0.02, was validated on sentence
        embeddings only; docs/learner.md, "Final model").
    tol : float, default=1e-9
    max_iter : int, default=200
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    state_ : LearnerState
    center_result_ : CenterResult
    network_ : ReLUNetwork
    n_iter_ : int
        Newton steps of the analytic centre.
    """

    def __init__(
        self,
        n_gates: int | None = None,
        depth: int = 2,
        radius: float = 1.0,
        delta: float = DEFAULT_DELTA,
        bias: bool = True,
        projection: str = "none",
        n_components: int | None = None,
        gate_init: str = "gaussian",
        final_model: str = "convex",
        loss: str = "hinge",
        beta: float = 1e-3,  # not DEFAULT_BETA: see the docstring
        tol: float = 1e-9,
        max_iter: int = 200,
        random_state: Any = None,
    ) -> None:
        self.n_gates = n_gates
        self.depth = depth
        self.radius = radius
        self.delta = delta
        self.bias = bias
        self.projection = projection
        self.n_components = n_components
        self.gate_init = gate_init
        self.final_model = final_model
        self.loss = loss
        self.beta = beta
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> CuttingPlaneClassifier:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        # Check every hyperparameter before the (expensive) centre is computed.
        if self.final_model not in ("convex", "center"):
            raise ValueError(f"final_model must be 'convex' or 'center', got {self.final_model!r}")
        loss = parse_loss(self.loss)
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        projection = Projection(str(getattr(self.projection, "value", self.projection)).lower())
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"Classifier can't train when only one class is present: {self.classes_}"
            )
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        config = LearnerConfig(
            task=Task.BINARY if n_classes == 2 else Task.MULTICLASS,
            n_classes=n_classes,
            n_gates=self.n_gates,
            depth=self.depth,
            bias=self.bias,
            projection=projection,
            n_components=None if projection is Projection.NONE else self.n_components,
            gate_init=GateInit(str(getattr(self.gate_init, "value", self.gate_init)).lower()),
            radius=self.radius,
            delta=self.delta,
            seed=seed,
        )
        state = with_labels(init_state(config, X), X, y_idx)
        state, self.center_result_ = recenter(
            state, CenterOptions(tol=self.tol, max_iter=self.max_iter)
        )
        self.n_iter_ = self.center_result_.nit
        if self.final_model == "convex":
            self.network_, self.fit_result_ = fit_network(state, loss=loss, beta=self.beta)
        else:
            if not self.center_result_.success:
                warnings.warn(
                    f"the analytic centre ended with status {self.center_result_.status.value} "
                    f"({self.center_result_.message}); the centre network may misfit",
                    UserWarning,
                    stacklevel=2,
                )
            self.network_ = center_network(state)
        self.state_: LearnerState = state
        return self

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        """Scores: (n_samples,) for two classes (positive means ``classes_[1]``), else
        (n_samples, n_classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.network_.decision_function(X)

    def predict(self, X: Any) -> NDArray[Any]:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.intp)]
        return self.classes_[np.argmax(scores, axis=1)]

    def query(
        self,
        X_pool: Any,
        n: int = 1,
        *,
        exclude: NDArray[np.bool_] | None = None,
        random_state: Any = None,
    ) -> QueryResult:
        """The n pool items whose cuts pass closest to the centre (see :mod:`learner.query`)."""
        check_is_fitted(self)
        X_pool = validate_data(self, X_pool, reset=False, dtype=np.float64)
        rng = np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))
        return query(self.state_, X_pool, n, rng, exclude=exclude)
