"""Agreement statistics for the dashboard (pure functions; inputs are plain lists)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters over the same items: (p_o - p_e) / (1 - p_e).

    Returns None with no items, and 1.0 when both raters used one and the same category
    throughout (agreement is perfect, chance agreement is 1).
    """
    if len(a) != len(b):
        raise ValueError("both raters must rate the same items")
    n = len(a)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca.keys() | cb.keys()) / (n * n)
    if p_e == 1.0:
        return 1.0
    return (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa: each entry holds the labels one item got from m >= 2 raters (m equal
    for all items). Returns None with no items."""
    ratings = [list(r) for r in ratings]
    if not ratings:
        return None
    m = len(ratings[0])
    if m < 2 or any(len(r) != m for r in ratings):
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n = len(ratings)
    counts = [Counter(r) for r in ratings]
    categories = set().union(*counts)
    # P_i: agreeing rater pairs on item i; p_j: share of all ratings in category j.
    p_i = [(sum(c * c for c in cnt.values()) - m) / (m * (m - 1)) for cnt in counts]
    p_j = {k: sum(cnt[k] for cnt in counts) / (n * m) for k in categories}
    p_bar = sum(p_i) / n
    p_e = sum(v * v for v in p_j.values())
    if p_e == 1.0:
        return 1.0
    return (p_bar - p_e) / (1.0 - p_e)
