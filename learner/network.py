"""Gated model, ordinary ReLU network, and the map between them.

On every labeled point the gated model (linear in theta)

    f_k(x; theta) = sum_i D_i(x) x^T (u_ki - v_ki)

equals the two-layer ReLU network

    g_k(x; theta) = sum_i relu(x^T u_ki) - relu(x^T v_ki)

because the pattern rows force sign(x^T u_ki) = sign(x^T v_ki) = 2 D_i(x) - 1 there
(docs/learner.md, "Final model"; Pilanci & Ergen 2020). Written in the usual form, hidden unit
u/sqrt(||u||) has
output weight +sqrt(||u||) and v/sqrt(||v||) has -sqrt(||v||); relu is positively homogeneous,
so relu(x^T u/sqrt(||u||)) sqrt(||u||) = relu(x^T u).

Deeper networks (:mod:`learner.lift`): the gated model has the coefficients c_g(x) of eq. D1,
and the network of eq. D4 has the lifted blocks as its first layer and fixed +-1 weights
above; the two agree on every point where the D2 and D3 rows hold.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from learner._npz import load_or_value_error, open_npz, read_header
from learner._validation import as_pool
from learner.config import Task
from learner.features import POOL_CHUNK, FeatureMap, Gates
from learner.lift import network_layers

Array = NDArray[np.float64]


#: Newest export format: 2 adds the hidden layers of deeper networks. A two-layer network is
#: still written as version 1, so older readers load it.
FORMAT_VERSION = 2


def gated_decision(
    E: NDArray[Any],
    feature_map: FeatureMap,
    gates: Gates,
    theta: Array,
    *,
    chunk: int = POOL_CHUNK,
    dtype: DTypeLike = np.float32,
) -> NDArray[Any]:
    """f(x; theta) for raw embeddings, streamed in chunks.

    Parameters
    ----------
    E : ndarray of shape (n_samples, n_raw)
    feature_map : FeatureMap
    gates : Gates
    theta : ndarray of shape (n_outputs, 2, n_gates, n_features)
    chunk : int
        Rows per chunk; memory is O(chunk * (n_features + n_gates * n_outputs)).
    dtype : float32 (pool scoring) or float64.

    Returns
    -------
    ndarray of shape (n_samples, n_outputs)
    """
    K, _, P, d = theta.shape
    wd: NDArray[Any] = (theta[:, 0] - theta[:, 1]).reshape(K * P, d).T.astype(dtype)  # (d, K P)
    out: NDArray[Any] = np.empty((E.shape[0], K), dtype=dtype)
    for start in range(0, E.shape[0], chunk):
        X = feature_map.transform(E[start : start + chunk], dtype=dtype)
        c = gates.output_coef(X, dtype)  # D(x), or c(x) of eq. D1 deeper
        Z = (X @ wd).reshape(X.shape[0], K, P)
        out[start : start + chunk] = np.einsum("nkp,np->nk", Z, c)
    return out


@dataclass(frozen=True, eq=False)
class ReLUNetwork:
    """A ReLU network on raw embeddings of depth 2 + len(hidden):

        h_1 = relu(x W1^T),  h_k = relu(h_{k-1} H_k^T) for H_k in ``hidden``,  scores = h W2.

    Attributes
    ----------
    W1 : ndarray of shape (n_hidden, n_features)
        First-layer weights acting on mapped features x (bias column included when ``bias``).
    W2 : ndarray of shape (n_last_hidden, n_outputs)
        Output weights (on the last hidden layer).
    feature_map : FeatureMap
        Maps raw embeddings to x.
    task : Task
    n_classes : int
    hidden : tuple of ndarray, shapes (units_k, units_{k-1})
        Weights of hidden layers 2..L-1 (empty for a two-layer network).
    """

    W1: Array
    W2: Array
    feature_map: FeatureMap
    task: Task
    n_classes: int
    hidden: tuple[Array, ...] = ()

    @property
    def n_hidden(self) -> int:
        return int(self.W1.shape[0])

    @property
    def depth(self) -> int:
        return 2 + len(self.hidden)

    def scores(self, E: Any) -> Array:
        """Output scores, shape (n_samples, n_outputs)."""
        E = as_pool(E, "E", n_features=self.feature_map.n_raw)
        out = np.empty((E.shape[0], self.W2.shape[1]))
        for start in range(0, E.shape[0], POOL_CHUNK):
            X = self.feature_map.transform(E[start : start + POOL_CHUNK])
            h = np.maximum(X @ self.W1.T, 0.0)
            for H in self.hidden:
                h = np.maximum(h @ H.T, 0.0)
            out[start : start + POOL_CHUNK] = h @ self.W2
        return out

    def decision_function(self, E: Any) -> Array:
        """Scores: shape (n_samples,) for binary and regression, (n_samples, K) multi-class."""
        s = self.scores(E)
        return s if self.task is Task.MULTICLASS else s[:, 0]

    def predict(self, E: Any) -> NDArray[Any]:
        """Class index (0..K-1) for classification, the value for regression."""
        s = self.scores(E)
        if self.task is Task.REGRESSION:
            return s[:, 0]
        if self.task is Task.BINARY:
            return (s[:, 0] > 0).astype(np.int64)
        return np.argmax(s, axis=1).astype(np.int64)

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict holding everything needed to predict from raw embeddings."""
        fm = self.feature_map
        out: dict[str, Any] = {
            "format": "carve-relu-network",
            "version": 2 if self.hidden else 1,
            "task": self.task.value,
            "n_classes": self.n_classes,
            "W1": self.W1.tolist(),
            "W2": self.W2.tolist(),
            "feature_map": {
                "bias": fm.bias,
                "mean": fm.mean.tolist(),
                "components": None if fm.components is None else fm.components.tolist(),
            },
        }
        if self.hidden:
            out["hidden"] = [H.tolist() for H in self.hidden]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReLUNetwork:
        if data.get("format") != "carve-relu-network":
            raise ValueError("not a Carve ReLU network export")
        if int(data.get("version", -1)) > FORMAT_VERSION:
            raise ValueError(f"export version {data['version']} is newer than this library")
        fm = data["feature_map"]
        comps = fm["components"]
        feature_map = FeatureMap(
            mean=np.asarray(fm["mean"], dtype=np.float64),
            components=None if comps is None else np.asarray(comps, dtype=np.float64),
            bias=bool(fm["bias"]),
        )
        task = Task(data["task"])
        n_classes = int(data["n_classes"])
        n_out = n_classes if task is Task.MULTICLASS else 1
        W1 = np.asarray(data["W1"], dtype=np.float64).reshape(
            len(data["W1"]), feature_map.n_features
        )
        hidden: list[Array] = []
        width = W1.shape[0]
        for layer in data.get("hidden", []):
            H = np.asarray(layer, dtype=np.float64).reshape(len(layer), width)
            hidden.append(H)
            width = H.shape[0]
        W2 = np.asarray(data["W2"], dtype=np.float64).reshape(width, n_out)
        return cls(W1, W2, feature_map, task, n_classes, tuple(hidden))

    def to_npz(self) -> bytes:
        """The network as ``.npz`` bytes (no pickle)."""
        fm = self.feature_map
        buf = io.BytesIO()
        arrays: dict[str, Any] = {
            "W1": self.W1,
            "W2": self.W2,
            "mean": fm.mean,
            "meta": np.array(
                json.dumps(
                    {
                        "format": "carve-relu-network",
                        "version": 2 if self.hidden else 1,
                        "task": self.task.value,
                        "n_classes": self.n_classes,
                        "bias": fm.bias,
                        "n_hidden_layers": 1 + len(self.hidden),
                    }
                )
            ),
        }
        for i, H in enumerate(self.hidden):
            arrays[f"hidden_{i}"] = H
        if fm.components is not None:
            arrays["components"] = fm.components
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> ReLUNetwork:
        """Inverse of :meth:`to_npz`; refuses pickled content and unknown formats.

        Raises
        ------
        ValueError
            For anything that is not an intact export of this format.
        """
        return load_or_value_error(cls._from_npz, data, "Carve ReLU network export")

    @classmethod
    def _from_npz(cls, data: bytes) -> ReLUNetwork:
        with open_npz(data, "a Carve ReLU network export") as z:
            meta = read_header(
                z, "meta", "carve-relu-network", FORMAT_VERSION, "Carve ReLU network export"
            )
            components = z["components"] if "components" in z.files else None
            fm = FeatureMap(mean=z["mean"], components=components, bias=bool(meta["bias"]))
            n_extra = int(meta.get("n_hidden_layers", 1)) - 1
            hidden = tuple(z[f"hidden_{i}"] for i in range(n_extra))
            return cls(z["W1"], z["W2"], fm, Task(meta["task"]), int(meta["n_classes"]), hidden)


def network_from_theta(
    theta: Array,
    feature_map: FeatureMap,
    task: Task,
    n_classes: int,
    *,
    rtol: float = 1e-9,
    sizes: tuple[int, ...] | None = None,
) -> ReLUNetwork:
    """Map gated weights to an ordinary ReLU network (module docstring).

    Parameters
    ----------
    theta : ndarray of shape (n_outputs, 2, n_gates, n_features)
    rtol : float
        Two-layer only: units whose weight norm is below ``rtol`` times the largest are dropped.
    sizes : tuple of int, optional
        Gates per hidden layer (P_1, ..., P_{L-1}) of a lifted deeper model; the network is
        then that of eq. D4 (:func:`learner.lift.network_layers`).

    Returns
    -------
    ReLUNetwork; at depth 2 with at most 2 * n_gates * n_outputs hidden units.
    """
    if sizes is not None and len(sizes) > 1:
        layers, output = network_layers(theta, sizes)
        return ReLUNetwork(
            W1=layers[0],
            W2=output,
            feature_map=feature_map,
            task=task,
            n_classes=n_classes,
            hidden=tuple(layers[1:]),
        )
    K, _, P, d = theta.shape
    norms = np.linalg.norm(theta, axis=3)  # (K, 2, P)
    keep = norms > rtol * max(float(norms.max(initial=0.0)), np.finfo(float).tiny)
    k_idx, side, _ = np.nonzero(keep)
    w = theta[keep]  # (m, d)
    n = norms[keep]
    W1 = w / np.sqrt(n)[:, None]
    W2 = np.zeros((w.shape[0], K))
    W2[np.arange(w.shape[0]), k_idx] = np.where(side == 0, 1.0, -1.0) * np.sqrt(n)
    return ReLUNetwork(W1=W1, W2=W2, feature_map=feature_map, task=task, n_classes=n_classes)
