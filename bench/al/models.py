"""Models of the real-data benchmark: the baselines and Carve's learner behind one interface.

Every model is refitted on the whole labeled set each round (``fit``) and answers
``predict_proba`` of shape (n, K) (K = 2 on the sentiment sets, 4 on AG News). Baselines
are scikit-learn estimators wrapped for the small-text query strategies; :class:`CarveModel`
keeps its learner state across rounds and adds only the new labels (warm-started recentre),
which is what the platform does.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.neural_network import MLPClassifier
from small_text.classifiers.classification import EmbeddingMixin, SklearnClassifier
from small_text.data.datasets import SklearnDataset

import learner

Array = NDArray[np.float64]

#: The C grid of ``logregcv`` (what a careful user would search; scikit-learn's log grid).
CV_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class CVLogisticRegression(LogisticRegression):
    """Logistic regression whose C is chosen by stratified 5-fold cross-validation on the
    labels at every fit (fewer folds when a class has fewer than 5 labels; C = 1 below 2).

    A plain subclass, so small-text's wrappers and BADGE's gradient embedding see an ordinary
    fitted ``LogisticRegression``; ``C`` holds the chosen value after ``fit``.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> CVLogisticRegression:
        counts = np.bincount(np.asarray(y, dtype=np.int64))
        folds = int(min(5, counts[counts > 0].min())) if len(counts[counts > 0]) > 1 else 0
        self.C = 1.0
        if folds >= 2:
            with warnings.catch_warnings():
                # scikit-learn 1.8 announces a change of LogisticRegressionCV's attributes.
                warnings.simplefilter("ignore", FutureWarning)
                search = LogisticRegressionCV(Cs=list(CV_GRID), cv=folds, max_iter=1000)
                search.fit(X, y)
            self.C = float(np.atleast_1d(search.C_)[0])
        return super().fit(X, y, sample_weight)


class Baseline(SklearnClassifier, EmbeddingMixin):  # type: ignore[misc]
    """A scikit-learn classifier as small-text sees it; its embedding is the item's vector."""

    def __init__(self, kind: str, seed: int, n_classes: int = 2) -> None:
        if kind == "logreg":
            model: Any = LogisticRegression(C=1.0, max_iter=1000)
        elif kind == "logregcv":
            model = CVLogisticRegression(C=1.0, max_iter=1000)
        elif kind == "mlp":
            # One hidden ReLU layer trained from gradients: the network class Carve trains
            # without gradients (2P = 64 hidden units at P = 32). L-BFGS is scikit-learn's
            # advice for small training sets; at 500 SST-2 labels it fitted in 0.13 s against
            # Adam's 0.60 s, with validation accuracy 0.736 vs 0.740.
            model = MLPClassifier(
                hidden_layer_sizes=(64,),
                activation="relu",
                solver="lbfgs",
                alpha=1e-3,
                max_iter=300,
                random_state=seed,
            )
        else:
            raise ValueError(f"unknown baseline model {kind!r}")
        super().__init__(model, num_classes=n_classes)
        self.kind = kind
        self.n_classes = n_classes

    def fit_xy(self, X: NDArray[Any], y: NDArray[np.int64]) -> None:
        """Fit on arrays (small-text's ``fit`` takes its dataset type)."""
        self.fit(SklearnDataset(X, y, target_labels=np.arange(self.n_classes)))

    def embed(self, data_set: Any, return_proba: bool = False, pbar: Any = None) -> Any:
        x = np.asarray(data_set.x)
        return (x, self.model.predict_proba(x)) if return_proba else x

    def proba(self, X: NDArray[Any]) -> Array:
        return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    def gradient_embedding(self, X: NDArray[Any]) -> Array:
        """BADGE's last-layer gradient of the loss at the predicted label (Ash et al. 2020).

        For a softmax/sigmoid output on features h(x): g(x) = (p(x) - e_yhat) (x) h(x), shape
        (n, K * dim h). h is the input for logistic regression, the hidden ReLU layer for the MLP.
        """
        p = self.proba(X)
        if self.kind == "mlp":
            W, b = self.model.coefs_[0], self.model.intercepts_[0]
            h = np.maximum(np.asarray(X, dtype=np.float64) @ W + b, 0.0)
        else:
            h = np.asarray(X, dtype=np.float64)
        h = np.hstack([h, np.ones((h.shape[0], 1))])  # the bias is a parameter too
        scale = p.copy()
        scale[np.arange(len(p)), p.argmax(axis=1)] -= 1.0
        return (scale[:, :, None] * h[:, None, :]).reshape(len(p), -1)


class CarveModel:
    """Carve's learner as a benchmark model.

    Parameters
    ----------
    config : learner.LearnerConfig
    served : {"center", "convex", "logreg"}
        Which model answers: the analytic centre itself, the convex group-lasso fit on the
        labels (docs/learner.md, "Final model"), or (a diagnostic that separates the queries' value
        from the model's) logistic regression on the labels Carve chose.
    query : dict, optional
        Keyword arguments of :func:`learner.query` (``diversity``, ``strategy``).
    """

    kind = "carve"

    def __init__(
        self,
        config: learner.LearnerConfig,
        served: str = "center",
        query: dict[str, Any] | None = None,
    ) -> None:
        if served not in ("center", "convex", "logreg"):
            raise ValueError(f"served must be 'center', 'convex' or 'logreg', got {served!r}")
        self.config = config
        self.served = served
        self.query_kw = dict(query or {})
        self.logreg: LogisticRegression | None = None
        self.state: learner.LearnerState | None = None
        self.net: learner.ReLUNetwork | None = None
        self.statuses: list[str] = []
        #: The last recentre's suspect labels (indices into the labels given to ``fit``).
        self.suspects: tuple[int, ...] = ()

    def start(self, X_pool: NDArray[Any]) -> None:
        self.state = learner.init_state(self.config, X_pool)

    def fit(self, X_lab: NDArray[Any], y_lab: NDArray[np.int64]) -> None:
        """Add the labels beyond those already in the state (the labeled set only grows)."""
        assert self.state is not None, "call start() first"
        have = self.state.n_labels
        if len(y_lab) > have:
            self.state = learner.with_labels(self.state, X_lab[have:], y_lab[have:])
        self.state, result = learner.recenter(self.state)
        self.statuses.append(result.status.value)
        self.suspects = result.suspects
        if self.served == "convex":
            self.net, _ = learner.fit_network(self.state)
        else:
            self.net = learner.center_network(self.state)
        if self.served == "logreg":
            self.logreg = LogisticRegression(C=1.0, max_iter=1000).fit(X_lab, y_lab)

    fit_xy = fit

    def decision(self, X: NDArray[Any]) -> Array:
        assert self.net is not None, "call fit() first"
        if self.logreg is not None:
            return np.asarray(self.logreg.decision_function(X), dtype=np.float64)
        return _outputs(self.net, X)

    def served_probas(self, parts: dict[str, NDArray[Any]]) -> dict[str, dict[str, Array]]:
        """The centre, the convex fit on the same labels (:func:`learner.fit_network`) and
        their ensemble, as class probabilities for each of ``parts`` (name -> X): each model's
        outputs are divided by their standard deviation over the part (a temperature that
        puts both on one scale; no label is used) and squashed as in :meth:`proba`, and the
        ensemble averages the two. For the report's served-model comparison
        (docs/learner.md, "Final model")."""
        assert self.state is not None, "call fit() first"
        nets = {
            "centre": learner.center_network(self.state),
            "convex": learner.fit_network(self.state)[0],
        }
        out = {}
        for part, X in parts.items():
            p = {name: _squash(_outputs(net, X)) for name, net in nets.items()}
            p["ensemble"] = 0.5 * (p["centre"] + p["convex"])
            out[part] = p
        return out

    def proba(self, X: NDArray[Any]) -> Array:
        """A monotone squashing of the decision, for the shared accuracy code only (the
        argmax is the network's prediction; multi-class: a softmax of the K outputs)."""
        return _squash(self.decision(X))


def _outputs(net: learner.ReLUNetwork, X: NDArray[Any]) -> Array:
    """A network's decision values: shape (n,) for one output, (n, K) for K."""
    f = np.asarray(net.decision_function(X), dtype=np.float64)
    return f.reshape(len(X)) if f.size == len(X) else f.reshape(len(X), -1)


def _squash(f: Array) -> Array:
    """Probabilities of shape (n, K) from decisions scaled by their standard deviation:
    a softmax of K outputs, or 0.5 (1 + tanh) of one."""
    if f.ndim == 2 and f.shape[1] > 1:
        z = f / (np.std(f) + 1e-12)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    f = f.reshape(len(f))
    p1 = 0.5 * (1.0 + np.tanh(f / (np.std(f) + 1e-12)))
    return np.stack([1.0 - p1, p1], axis=1)
