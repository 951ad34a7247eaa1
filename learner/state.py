"""Learner state: everything a campaign must persist between jobs, as plain arrays.

A :class:`LearnerState` is immutable; every operation returns a new one. The stored centre is a
cache: the state is a pure function of (config, pool embeddings the projection and gates were
fitted on, labeled embeddings, labels), so :func:`rebuild` recreates it exactly, and a crashed
worker loses nothing. :meth:`LearnerState.to_bytes` writes ``.npz`` bytes (arrays plus a JSON
header), never a pickle.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from learner._npz import load_or_value_error, open_npz, read_header
from learner._validation import as_matrix, as_pool, as_rng
from learner.center import CenterOptions, CenterResult, CenterStatus, analytic_center
from learner.config import LearnerConfig, Task
from learner.convex import ConvexFitResult, Loss, convex_fit
from learner.delta import DELTA_GRID, checkpoint, choose_delta, ramp
from learner.diagnostics import Diagnostics, diagnose, sample_networks
from learner.features import FeatureMap, Gates, fit_feature_map, sample_gates
from learner.network import ReLUNetwork, gated_decision, network_from_theta
from learner.query import QueryResult, QueryStrategy, score_by_samples, score_pool, select_batch
from learner.version_space import VersionSpace, add_labels, empty_version_space

#: 2 adds the upper layers of deeper networks (depth-2 states are still written as 1).
STATE_VERSION = 2


@dataclass(frozen=True, eq=False)
class LearnerState:
    """One campaign's learner.

    Attributes
    ----------
    config : LearnerConfig
    feature_map : FeatureMap
    gates : Gates
    version_space : VersionSpace
        Labeled points (mapped features) and labels.
    center : ndarray of shape (n_outputs, 2, n_gates, n_features) or None
        Cached analytic centre of the active labels (None before the first recentre).
    active : ndarray of bool, shape (n_labels,)
        Labels in force at ``center``; the others were excluded as conflicts.
    conflicts : tuple of tuple of int
        Conflict groups found by the last recentre (label indices).
    center_status : str
        Status of the last recentre (a :class:`CenterStatus` value, or "none").
    round : int
        Number of recentres so far.
    delta_labels : int
        With ``config.auto_delta``: how many leading labels the softness level was
        cross-validated on (:func:`learner.delta.checkpoint`); 0 while ``config.delta`` holds.
    delta_level : float
        The softness level in force (``config.delta`` or the cross-validated one); the
        version space's delta is this times :func:`learner.delta.ramp` of the label count.
    """

    config: LearnerConfig
    feature_map: FeatureMap
    gates: Gates
    version_space: VersionSpace
    center: NDArray[np.float64] | None = None
    active: NDArray[np.bool_] | None = None
    conflicts: tuple[tuple[int, ...], ...] = ()
    center_status: str = "none"
    round: int = 0
    delta_labels: int = 0
    delta_level: float = -1.0

    @property
    def n_labels(self) -> int:
        return self.version_space.n_labels

    @property
    def theta(self) -> NDArray[np.float64]:
        """The centre, or zeros (the centre of the empty version space) before any recentre."""
        if self.center is not None:
            return self.center
        vs = self.version_space
        return np.zeros((vs.n_outputs, 2, vs.n_gates, vs.n_features))

    # ------------------------------------------------------------------ bytes
    def to_bytes(self) -> bytes:
        """Serialise to ``.npz`` bytes (arrays and a JSON header; no pickle)."""
        vs = self.version_space
        fm = self.feature_map
        flat = [i for g in self.conflicts for i in g]
        sizes = [len(g) for g in self.conflicts]
        header = {
            "format": "carve-learner-state",
            "version": 2 if self.gates.upper else 1,
            "config": self.config.to_dict(),
            "bias": fm.bias,
            "center_status": self.center_status,
            "round": self.round,
            "delta": vs.delta,
            "delta_labels": self.delta_labels,
            "delta_level": self.delta_level,
            "has_center": self.center is not None,
            "has_components": fm.components is not None,
        }
        arrays: dict[str, Any] = {
            "header": np.array(json.dumps(header)),
            "mean": fm.mean,
            "gates": self.gates.weights,
            "X": vs.X,
            "patterns": vs.patterns,
            "y": vs.y,
            "conflicts_flat": np.asarray(flat, dtype=np.int64),
            "conflicts_sizes": np.asarray(sizes, dtype=np.int64),
        }
        for i, (W, bits) in enumerate(zip(self.gates.upper, vs.upper_patterns, strict=True)):
            arrays[f"upper_{i}"] = W
            arrays[f"upper_patterns_{i}"] = bits
        if fm.components is not None:
            arrays["components"] = fm.components
        if self.center is not None:
            arrays["center"] = self.center
        if self.active is not None:
            arrays["active"] = self.active
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LearnerState:
        """Inverse of :meth:`to_bytes`.

        Raises
        ------
        ValueError
            For anything that is not an intact state of this format.
        """
        return load_or_value_error(cls._from_bytes, data, "Carve learner state")

    @classmethod
    def _from_bytes(cls, data: bytes) -> LearnerState:
        with open_npz(data, "a Carve learner state") as z:
            header = read_header(
                z, "header", "carve-learner-state", STATE_VERSION, "Carve learner state"
            )
            config = LearnerConfig.from_dict(header["config"])
            fm = FeatureMap(
                mean=z["mean"],
                components=z["components"] if header["has_components"] else None,
                bias=bool(header["bias"]),
            )
            n_upper = config.depth - 2
            gates = Gates(weights=z["gates"], upper=tuple(z[f"upper_{i}"] for i in range(n_upper)))
            vs = replace(_empty(config, gates), delta=float(header.get("delta", config.delta)))
            X, y, patterns = z["X"], z["y"], z["patterns"]
            if X.shape[0]:
                # The stored pattern bits define the polytope: never recompute them.
                vs = replace(
                    vs,
                    X=X,
                    y=y,
                    patterns=patterns.astype(bool),
                    upper_patterns=tuple(
                        z[f"upper_patterns_{i}"].astype(bool) for i in range(n_upper)
                    ),
                    _cuts={},
                )
            sizes = z["conflicts_sizes"].tolist()
            flat = z["conflicts_flat"].tolist()
            groups, pos = [], 0
            for size in sizes:
                groups.append(tuple(int(i) for i in flat[pos : pos + size]))
                pos += size
            return cls(
                config=config,
                feature_map=fm,
                gates=gates,
                version_space=vs,
                center=z["center"] if header["has_center"] else None,
                active=z["active"] if "active" in z.files else None,
                conflicts=tuple(groups),
                center_status=str(header["center_status"]),
                round=int(header["round"]),
                delta_labels=int(header.get("delta_labels", 0)),
                delta_level=float(header.get("delta_level", -1.0)),
            )


def _empty(config: LearnerConfig, gates: Gates) -> VersionSpace:
    """The version space of ``config`` and ``gates`` with no labels yet."""
    return empty_version_space(
        gates.weights,
        config.task,
        config.n_classes,
        config.radius,
        config.epsilon,
        upper_weights=gates.upper,
        delta=config.delta,
    )


def init_state(config: LearnerConfig, E_pool: Any, rng: Any = None) -> LearnerState:
    """Fit the projection and draw the gates for a new campaign.

    Parameters
    ----------
    config : LearnerConfig
    E_pool : ndarray of shape (n_pool, n_raw)
        The campaign's pool embeddings.
    rng : numpy.random.Generator or int, optional
        Defaults to ``numpy.random.default_rng(config.seed)``, so a state is reproducible from
        the config alone.
    """
    gen = as_rng(config.seed if rng is None else rng)
    E_pool = as_pool(E_pool, "E_pool")
    if E_pool.shape[0] == 0:
        raise ValueError("E_pool is empty")
    feature_map = fit_feature_map(config, E_pool, gen)
    gates = sample_gates(config, feature_map, gen, E_pool)
    vs = _empty(config, gates)
    return LearnerState(config=config, feature_map=feature_map, gates=gates, version_space=vs)


def with_labels(state: LearnerState, E_new: Any, y_new: Any) -> LearnerState:
    """Append labeled items (raw embeddings). The cached centre is kept as a warm start.

    Parameters
    ----------
    E_new : array-like of shape (n_new, n_raw)
    y_new : array-like of shape (n_new,)
        Class indices 0..K-1, or targets for regression.
    """
    E_new = as_matrix(E_new, "E_new", n_features=state.feature_map.n_raw)
    X_new = state.feature_map.transform(E_new)
    vs = add_labels(state.version_space, X_new, y_new)
    if state.config.task is not Task.REGRESSION:
        # The level in force, ramped to the new label count (recenter re-chooses the level at
        # an auto_delta checkpoint).
        level = state.delta_level if state.delta_level >= 0 else state.config.delta
        vs = replace(vs, delta=level * ramp(vs.n_labels), _cuts={})
    return replace(state, version_space=vs)


def recenter(
    state: LearnerState, options: CenterOptions | None = None
) -> tuple[LearnerState, CenterResult]:
    """Recompute the analytic centre, warm-started from the cached one.

    With ``config.auto_delta`` the softness is first re-chosen by cross-validation when the
    label count has reached a new checkpoint (:func:`learner.delta.checkpoint`).
    """
    state = _with_chosen_delta(state)
    result = analytic_center(state.version_space, start=state.center, options=options)
    new = replace(
        state,
        center=result.x,
        active=result.active,
        conflicts=result.conflicts,
        center_status=result.status.value,
        round=state.round + 1,
    )
    return new, result


def _with_chosen_delta(state: LearnerState) -> LearnerState:
    """``state`` with the softness its labels call for (docs/learner.md, "Choosing delta").

    The level is ``config.delta``, or with ``config.auto_delta`` the level cross-validated on
    the labels up to the last checkpoint (:func:`learner.delta.checkpoint`); the version
    space gets the level times :func:`learner.delta.ramp` of the label count. Both are pure
    functions of the labels, so a rebuild reaches the same delta.
    """
    cfg = state.config
    vs = state.version_space
    if cfg.task is Task.REGRESSION:
        return state
    level, m = state.delta_level, state.delta_labels
    if not cfg.auto_delta:
        level, m = cfg.delta, 0
    elif checkpoint(state.n_labels) != m or level < 0:
        m = checkpoint(state.n_labels)
        level = cfg.delta
        if m:
            scale = ramp(m)
            chosen = choose_delta(
                vs.subset(np.arange(m)),
                np.random.default_rng([cfg.seed, m]),
                grid=tuple(g * scale for g in DELTA_GRID),
                fallback=cfg.delta * scale,
            )
            level = chosen.delta / scale
    delta = level * ramp(state.n_labels)
    if delta == vs.delta and level == state.delta_level and m == state.delta_labels:
        return state
    return replace(
        state,
        version_space=replace(vs, delta=delta, _cuts={}),
        delta_labels=m,
        delta_level=level,
    )


def rebuild(
    config: LearnerConfig,
    E_pool: Any,
    E_labeled: Any,
    y: Any,
    options: CenterOptions | None = None,
) -> tuple[LearnerState, CenterResult]:
    """Recreate a state from scratch: same config and data give the same gates and centre."""
    state = init_state(config, E_pool)
    if len(y):
        state = with_labels(state, E_labeled, y)
    return recenter(state, options)


def query(
    state: LearnerState,
    E_pool: Any,
    k: int = 1,
    rng: Any = None,
    *,
    exclude: NDArray[np.bool_] | None = None,
    strategy: QueryStrategy | str = QueryStrategy.DISTANCE,
    diversity: float = 1.0,
    n_samples: int = 16,
    explore: float = 0.0,
) -> QueryResult:
    """The k most informative, mutually diverse pool items (see :mod:`learner.query`).

    Regression scores items by the spread of ``n_samples`` networks sampled around the centre.
    """
    gen = as_rng(state.config.seed + state.round if rng is None else rng)
    E_pool = as_pool(E_pool, "E_pool", n_features=state.feature_map.n_raw)
    vs = state.version_space
    if state.config.task is Task.REGRESSION:
        if _centre_usable(state):
            active = state.active if state.active is not None else np.ones(vs.n_labels, bool)
            nets = sample_networks(vs, state.theta, gen, n_samples, active=active)
            preds = np.stack(
                [gated_decision(E_pool, state.feature_map, state.gates, s)[:, 0] for s in nets]
            )
            scores = score_by_samples(preds)
        else:
            # No centre inside the version space to sample around (no recentre yet since
            # these labels, or the last one found no interior): every item is as informative.
            scores = np.zeros(E_pool.shape[0], dtype=np.float32)
    else:
        scores = score_pool(
            E_pool,
            state.feature_map,
            state.gates,
            state.theta,
            state.config.task,
            strategy=strategy,
        )
    return select_batch(
        scores,
        k,
        gen,
        exclude=exclude,
        features=lambda idx: state.feature_map.transform(np.asarray(E_pool)[idx]),
        diversity=diversity,
        explore=explore,
    )


def diagnostics(
    state: LearnerState,
    E_pool: Any,
    rng: Any = None,
    *,
    n_samples: int = 16,
    max_eval: int = 5000,
    threshold: float = 0.02,
) -> Diagnostics:
    """Cuts, log-volume proxy and disagreement at the cached centre."""
    if not _centre_usable(state):
        stale = state.active is not None and len(state.active) != state.n_labels
        why = (
            "labels were added since the last recentre"
            if stale
            else f"the last recentre ended with status {state.center_status!r}"
        )
        raise ValueError(f"diagnostics need a centre inside the version space: {why}")
    gen = as_rng(state.config.seed + state.round if rng is None else rng)
    active = state.active if state.active is not None else np.ones(state.n_labels, dtype=bool)
    return diagnose(
        state.version_space,
        state.theta,
        active,
        as_pool(E_pool, "E_pool", n_features=state.feature_map.n_raw),
        state.feature_map,
        state.gates,
        gen,
        n_samples=n_samples,
        max_eval=max_eval,
        threshold=threshold,
    )


def _centre_usable(state: LearnerState) -> bool:
    """Whether the cached centre is a strictly feasible point for the current labels."""
    return (
        state.center is not None
        and state.active is not None
        and len(state.active) == state.n_labels
        and state.center_status
        in (
            CenterStatus.OPTIMAL.value,
            CenterStatus.CONFLICTS_EXCLUDED.value,
            CenterStatus.MAX_ITER.value,
        )
    )


def center_network(state: LearnerState) -> ReLUNetwork:
    """The raw centre as an ordinary ReLU network."""
    cfg = state.config
    return network_from_theta(
        state.theta, state.feature_map, cfg.task, cfg.n_classes, sizes=state.gates.sizes
    )


#: Default group-lasso weight of :func:`fit_network` (docs/learner.md, "Final model").
DEFAULT_BETA = 0.02

#: A fit is refitted with beta / 4 (at most this many times) when it collapsed.
_COLLAPSE_RETRIES = 3


def fit_network(
    state: LearnerState,
    *,
    loss: Loss | str | None = None,
    beta: float = DEFAULT_BETA,
) -> tuple[ReLUNetwork, ConvexFitResult]:
    """Final model: the convex fit on all labels, as a ReLU network.

    ``loss`` defaults to hinge for classification and squared for regression. A
    classification fit that collapsed (its training accuracy is no better than always
    answering the most common label, which a too-large ``beta`` does) is refitted with
    ``beta / 4``, at most three times; ``ConvexFitResult.beta`` says which beta was kept.
    """
    cfg = state.config
    chosen = (
        loss if loss is not None else (Loss.SQUARED if cfg.task is Task.REGRESSION else Loss.HINGE)
    )
    vs = state.version_space
    fit = convex_fit(vs, loss=chosen, beta=beta)
    if cfg.task is not Task.REGRESSION and np.unique(vs.y).size > 1:
        majority = float(np.bincount(vs.y.astype(np.intp)).max()) / vs.n_labels
        for _ in range(_COLLAPSE_RETRIES):
            if fit.beta <= 0 or _training_accuracy(vs, fit.theta) > majority:
                break
            fit = convex_fit(vs, loss=chosen, beta=fit.beta / 4)
    net = network_from_theta(
        fit.theta, state.feature_map, cfg.task, cfg.n_classes, sizes=state.gates.sizes
    )
    return net, fit


def _training_accuracy(vs: VersionSpace, theta: NDArray[np.float64]) -> float:
    """Share of the labels the gated model ``theta`` predicts (classification)."""
    f = vs.decision(theta)
    pred = (f[:, 0] > 0) if vs.task is Task.BINARY else np.argmax(f, axis=1)
    return float(np.mean(pred.astype(np.float64) == vs.y))
