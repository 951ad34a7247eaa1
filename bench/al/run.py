"""The active-learning loop of the benchmark: one (dataset, strategy, model, seed) run.

Protocol: 10 initial labels (5 per class, drawn at random with the run's seed), then batches
of ``step`` items chosen by the strategy until ``budget`` labels; every label counts. After each
batch the model is refitted on all labels and scored on the evaluation parts. The time of a
round is what an annotator waits for: the model update plus the next query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import learner
from bench.al.data import Dataset, Part
from bench.al.models import Baseline, CarveModel
from bench.al.strategies import CARVE_STRATEGIES, Strategy


@dataclass(frozen=True)
class Job:
    dataset: str
    strategy: str
    model: str  # "logreg", "mlp" or "carve"
    seed: int
    budget: int = 500
    step: int = 10
    settings: dict[str, Any] = field(default_factory=dict)  # carve: config and query overrides
    served: str = "center"
    label: str = ""  # row name in tables; defaults to strategy[-model]
    flip: float = 0.0  # share of pool labels changed to another class before the run
    compare_served: bool = False  # carve: also score the convex fit and the ensemble

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return self.strategy if self.model == "carve" else f"{self.strategy}-{self.model}"


def initial_labels(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` random items of each class (the usual warm start of pool-based AL)."""
    picks = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    return np.concatenate(picks).astype(np.intp)


#: Job.settings keys that set learner.query's arguments instead of the LearnerConfig.
QUERY_KEYS = {"diversity": "diversity", "query_strategy": "strategy", "explore": "explore"}


def make_model(job: Job, n_raw: int, n_classes: int = 2) -> Baseline | CarveModel:
    """Carve runs with :meth:`learner.LearnerConfig.recommended` plus the job's overrides
    (a multi-class task when the data have more than two classes)."""
    if job.model == "carve":
        overrides = {k: v for k, v in job.settings.items() if k not in QUERY_KEYS}
        query = {QUERY_KEYS[k]: v for k, v in job.settings.items() if k in QUERY_KEYS}
        if n_classes > 2:
            overrides = {"task": "multiclass", "n_classes": n_classes, **overrides}
        config = learner.LearnerConfig.recommended(n_raw, seed=job.seed, **overrides)
        return CarveModel(config, served=job.served, query=query)
    return Baseline(job.model, job.seed, n_classes)


def flipped_labels(
    y: np.ndarray, share: float, seed: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pool labels with ``share`` of them changed to a random other class (a seeded choice,
    the same for every strategy of a seed), and the mask of changed items."""
    rng = np.random.default_rng([seed, 4242])
    mask = np.zeros(len(y), dtype=bool)
    mask[rng.choice(len(y), int(round(share * len(y))), replace=False)] = True
    noisy = y.copy()
    noisy[mask] = (y[mask] + rng.integers(1, n_classes, int(mask.sum()))) % n_classes
    return noisy, mask


def suspect_precision(model: Baseline | CarveModel, flipped: np.ndarray) -> float:
    """Share of flipped labels among the top-k suspects, k = number of flipped labels given
    (``flipped`` is the mask over the labeled items, in the order they were given); nan when
    the model names no suspects or no label was flipped."""
    if not isinstance(model, CarveModel) or not flipped.any() or not model.suspects:
        return float("nan")
    top = np.asarray(model.suspects[: int(flipped.sum())], dtype=np.intp)
    return float(flipped[top].mean())


#: Label counts at which a ``compare_served`` run also scores the convex fit and the ensemble
#: (the convex fit takes about a minute at 500 labels, so not at every round).
SERVED_AT = (100, 500)


def served_accuracies(
    model: Baseline | CarveModel, parts: dict[str, Part]
) -> dict[str, dict[str, float]]:
    """Per part: ``acc_centre``, ``acc_convex`` and ``acc_ensemble`` of a Carve model."""
    assert isinstance(model, CarveModel)
    probas = model.served_probas({name: part.X for name, part in parts.items()})
    return {
        name: {
            f"acc_{kind}": round(float(np.mean(p.argmax(axis=1) == parts[name].y)), 5)
            for kind, p in probas[name].items()
        }
        for name in parts
    }


def accuracy(model: Baseline | CarveModel, part: Part) -> float:
    return float(np.mean(model.proba(part.X).argmax(axis=1) == part.y))


def run(job: Job, data: Dataset) -> list[dict[str, Any]]:
    """Rows ``{dataset, strategy, seed, labels, split, accuracy, fit_s, query_s, flipped,
    suspect_precision}`` per budget (the last two for runs with flipped labels), plus
    ``acc_centre``, ``acc_convex`` and ``acc_ensemble`` at :data:`SERVED_AT` for a
    ``compare_served`` run."""
    if (job.model == "carve") != (job.strategy in CARVE_STRATEGIES):
        raise ValueError(f"strategy {job.strategy} does not go with model {job.model}")
    rng = np.random.default_rng(job.seed)
    np.random.seed(job.seed)  # small-text's random sampling and k-means use the global generator
    X, y = data.pool.X, data.pool.y
    n_classes = int(y.max()) + 1
    flips = np.zeros(len(y), dtype=bool)
    if job.flip:
        y, flips = flipped_labels(y, job.flip, job.seed, n_classes)  # the evals stay clean
    labeled = initial_labels(y, job.step // 2, rng)
    model = make_model(job, X.shape[1], n_classes)
    if isinstance(model, CarveModel):
        model.start(X)
    strategy = Strategy(job.strategy, X, job.seed, n_classes)
    rows: list[dict[str, Any]] = []
    while True:
        start = time.perf_counter()
        model.fit_xy(X[labeled], y[labeled])
        fit_s = time.perf_counter() - start
        query_s = float("nan")
        if len(labeled) < job.budget:
            start = time.perf_counter()
            new = strategy.select(model, labeled, y[labeled], job.step)
            query_s = time.perf_counter() - start
        served = (
            served_accuracies(model, data.evals)
            if job.compare_served and len(labeled) in SERVED_AT
            else {}
        )
        for split, part in data.evals.items():
            rows.append(
                {
                    "dataset": job.dataset,
                    "strategy": job.name,
                    "seed": job.seed,
                    "labels": len(labeled),
                    "split": split,
                    "accuracy": round(accuracy(model, part), 5),
                    "fit_s": round(fit_s, 4),
                    "query_s": round(query_s, 4),
                    "flipped": int(flips[labeled].sum()),
                    "suspect_precision": round(suspect_precision(model, flips[labeled]), 4),
                    **served.get(split, {}),
                }
            )
        if len(labeled) >= job.budget:
            return rows
        labeled = np.concatenate([labeled, new])


def ceilings(data: Dataset, seed: int = 0) -> list[dict[str, Any]]:
    """The baseline models trained on the whole pool, scored like the runs."""
    rows = []
    for kind in ("logreg", "mlp"):
        model = Baseline(kind, seed, int(data.pool.y.max()) + 1)
        model.fit_xy(data.pool.X, data.pool.y)
        for split, part in data.evals.items():
            acc = round(accuracy(model, part), 5)
            rows.append({"dataset": data.name, "model": kind, "split": split, "accuracy": acc})
    return rows
