"""Agreement statistics against worked examples."""

from __future__ import annotations

import pytest

from labeling.agreement import cohen_kappa, fleiss_kappa


def test_cohen_kappa_worked_example() -> None:
    # 50 items: both "yes" 20, both "no" 15, a yes/b no 5, a no/b yes 10.
    a = ["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10
    b = ["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10
    # p_o = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.4
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_edges() -> None:
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["x", "x"], ["x", "x"]) == 1.0
    assert cohen_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["x"], [])


def test_fleiss_kappa_worked_example() -> None:
    # Fleiss (1971)-style table as in the usual textbook example: 10 items, 14 raters,
    # 5 categories; kappa = 0.210.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    ratings = [[str(j) for j, c in enumerate(row) for _ in range(c)] for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_agrees_with_cohen_shape_checks() -> None:
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([["a", "a"], ["a"]])
