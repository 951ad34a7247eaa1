"""Query strategies of the real-data benchmark.

Each strategy picks ``n`` unlabeled pool indices given the model fitted on the labels so far:

- ``random``, ``entropy`` (prediction entropy), ``breaking_ties`` (smallest gap between the two
  most likely classes; Luo et al. 2005), ``coreset`` (greedy k-centre; Sener & Savarese 2018),
  ``kmeans`` (embedding k-means; Yuan et al. 2020) and ``cal`` (contrastive active learning;
  Margatina et al. 2021): the ``small-text`` library's implementations (Schröder et al. 2023).
  Embedding-based ones use the sentence embedding as the item's embedding.
- ``badge`` (Ash et al. 2020, "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
  Bounds"): implemented here from the paper. small-text's BADGE is written for its PyTorch
  classifiers, skips the gradient scaling for two classes and seeds k-means++ from an
  unseeded generator; ours takes the last-layer gradient embedding of the scikit-learn model
  and runs seeded k-means++ (D² sampling) on it.
- ``carve`` (Carve's rule, :func:`learner.query`: the cuts closest to the centre, normalised,
  with batch diversity) and ``carve_extremes`` (the reference code's rule: half the batch from
  the most positive centre predictions, half from the most negative).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special
from small_text.data.datasets import SklearnDataset
from small_text.query_strategies import (
    BreakingTies,
    ContrastiveActiveLearning,
    EmbeddingKMeans,
    GreedyCoreset,
    PredictionEntropy,
    RandomSampling,
)

import learner
from bench.al.models import Baseline, CarveModel

Index = NDArray[np.intp]


class FastPredictionEntropy(PredictionEntropy):  # type: ignore[misc]
    """small-text's prediction entropy, computed for all rows at once (small-text calls
    scipy's ``entropy`` once per row, a third of the benchmark's time); the same scores, so
    the same picks up to floating-point ties."""

    def get_confidence(self, clf: Any, dataset: Any, *_: Any) -> NDArray[np.float64]:
        proba = np.asarray(clf.predict_proba(dataset), dtype=np.float64)
        p = proba / proba.sum(axis=1, keepdims=True)
        return np.asarray(-special.xlogy(p, p).sum(axis=1), dtype=np.float64)


SMALL_TEXT = {
    "random": RandomSampling,
    "entropy": FastPredictionEntropy,
    "breaking_ties": BreakingTies,
    "coreset": lambda: GreedyCoreset(distance_metric="euclidean", normalize=True),
    "kmeans": lambda: EmbeddingKMeans(normalize=True),
    "cal": lambda: ContrastiveActiveLearning(k=10, pbar=None),
}
BASELINE_STRATEGIES = (*SMALL_TEXT, "badge")
CARVE_STRATEGIES = ("carve", "carve_extremes")


def kmeans_pp(G: NDArray[np.float64], n: int, rng: np.random.Generator) -> Index:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) as BADGE uses it.

    The first pick is the row of largest norm (BADGE's choice); each next row is drawn with
    probability proportional to its squared distance to the nearest pick (D² sampling).

    Parameters
    ----------
    G : ndarray of shape (m, k)
    n : int  (n <= m)

    Returns
    -------
    ndarray of intp, shape (n,): distinct row indices.
    """
    sq = np.einsum("ij,ij->i", G, G)
    picks = [int(np.argmax(sq))]
    d2 = np.maximum(sq + sq[picks[0]] - 2.0 * G @ G[picks[0]], 0.0)
    while len(picks) < n:
        d2[picks] = 0.0
        total = d2.sum()
        j = (
            int(rng.choice(len(G), p=d2 / total))
            if total > 0
            else int(rng.choice(np.setdiff1d(np.arange(len(G)), picks)))
        )
        picks.append(j)
        d2 = np.minimum(d2, np.maximum(sq + sq[j] - 2.0 * G @ G[j], 0.0))
    return np.asarray(picks, dtype=np.intp)


class Strategy:
    """Picks the next batch; ``name`` is the strategy and ``model`` the model kind."""

    def __init__(self, name: str, X_pool: NDArray[Any], seed: int, n_classes: int = 2) -> None:
        self.name = name
        self.X_pool = X_pool
        self.rng = np.random.default_rng(seed + 7919)
        if name in SMALL_TEXT:
            self.qs = SMALL_TEXT[name]()
            # Strategies see the pool vectors only, never the pool's true labels.
            self.dataset = SklearnDataset(
                X_pool,
                np.zeros(len(X_pool), dtype=np.int64),
                target_labels=np.arange(n_classes),
            )
        elif name not in ("badge", *CARVE_STRATEGIES):
            raise ValueError(f"unknown strategy {name!r}")

    def select(self, model: Any, labeled: Index, y_labeled: NDArray[np.int64], n: int) -> Index:
        unlabeled = np.setdiff1d(np.arange(len(self.X_pool)), labeled)
        if self.name in SMALL_TEXT:
            out = self.qs.query(model, self.dataset, unlabeled, labeled, y_labeled, n=n)
        elif self.name == "badge":
            assert isinstance(model, Baseline)
            G = model.gradient_embedding(self.X_pool[unlabeled])
            out = unlabeled[kmeans_pp(G, n, self.rng)]
        elif self.name == "carve":
            assert isinstance(model, CarveModel) and model.state is not None
            taken = np.zeros(len(self.X_pool), dtype=bool)
            taken[labeled] = True
            picked = learner.query(
                model.state, self.X_pool, n, self.rng, exclude=taken, **model.query_kw
            )
            out = picked.indices
        else:  # carve_extremes
            f = model.decision(self.X_pool[unlabeled])
            order = np.argsort(f, kind="stable")
            low, high = order[: n - n // 2], order[::-1][: n // 2]
            out = unlabeled[np.concatenate([high, low])]
        out = np.asarray(out, dtype=np.intp)
        if len(np.unique(out)) != n or np.isin(out, labeled).any():
            raise RuntimeError(f"{self.name} returned {out}: not {n} distinct unlabeled items")
        return out
