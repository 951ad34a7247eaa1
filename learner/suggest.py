"""Why an item was queued, in one word, for the model's suggestion on the labeling card.

docs/learner.md, "Suggestions": every queued item was picked because its cut passes close to
the centre (docs/learner.md, "Queries"); what an annotator can act on is the kind of
closeness:

* ``unsure``: the calibrated probabilities (eq. CAL) hedge: the top class has less than
  :data:`UNSURE_TOP`, or leads the second by less than :data:`UNSURE_GAP`;
* ``new``: the item is farther (cosine distance, eq. NEW) from every labeled item than
  :data:`NEW_QUANTILE` of the labeled items are from their nearest labeled neighbour: a
  region of the data the labels have not reached;
* ``informative``: neither; the model is fairly sure, and the label tests it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Top calibrated probability below which the model counts as unsure.
UNSURE_TOP = 0.6
#: Lead of the top class over the second below which the model counts as unsure.
UNSURE_GAP = 0.1
#: Quantile of the labeled items' nearest-labeled-neighbour distances that makes an item new.
NEW_QUANTILE = 0.9
#: Fewest labeled items the "new" test needs (fewer leave no typical spacing to compare to).
NEW_MIN_LABELS = 10
#: The labeled items compared against are capped (the most recent): O(n_items x this) work.
NEW_MAX_LABELS = 2000

UNSURE, NEW, INFORMATIVE = "unsure", "new", "informative"


def _unit(E: NDArray[Any]) -> NDArray[np.float64]:
    X = np.asarray(E, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    out: NDArray[np.float64] = X / np.maximum(norms, np.finfo(np.float64).tiny)
    return out


def nearest_distance(E: Any, E_ref: Any, *, exclude_self: bool = False) -> NDArray[np.float64]:
    """Cosine distance 1 - cos(e, r) from each row of ``E`` to its nearest row of ``E_ref``
    (eq. NEW).

    Parameters
    ----------
    E : array-like of shape (n, d)
    E_ref : array-like of shape (m, d), m >= 1 (m >= 2 with ``exclude_self``)
    exclude_self : bool
        ``E`` is ``E_ref``: skip each row's distance to itself.

    Returns
    -------
    ndarray of shape (n,)
    """
    sim = _unit(E) @ _unit(E_ref).T
    if exclude_self:
        np.fill_diagonal(sim, -np.inf)
    out: NDArray[np.float64] = 1.0 - sim.max(axis=1)
    return out


def reasons(probs: NDArray[np.float64], E_items: Any, E_labeled: Any) -> list[str]:
    """One reason code per item (module docstring).

    Parameters
    ----------
    probs : ndarray of shape (n, K)
        Calibrated class probabilities of the items (eq. CAL).
    E_items : array-like of shape (n, d)
        Their embeddings.
    E_labeled : array-like of shape (m, d)
        Embeddings of the labeled items (only the last :data:`NEW_MAX_LABELS` are used).

    Returns
    -------
    list of str, length n: "unsure", "new" or "informative".
    """
    top2 = -np.sort(-probs, axis=1)[:, :2]
    unsure = (top2[:, 0] < UNSURE_TOP) | (top2[:, 0] - top2[:, 1] < UNSURE_GAP)
    new = np.zeros(probs.shape[0], dtype=bool)
    ref = np.asarray(E_labeled)[-NEW_MAX_LABELS:]
    if ref.shape[0] >= NEW_MIN_LABELS and probs.shape[0]:
        spacing = nearest_distance(ref, ref, exclude_self=True)
        new = nearest_distance(E_items, ref) > np.quantile(spacing, NEW_QUANTILE)
    return [UNSURE if u else NEW if n else INFORMATIVE for u, n in zip(unsure, new, strict=True)]
