"""Tolerances of the analytic-centre solver: :class:`CenterOptions`.

Kept apart from :mod:`learner.center` so that phase I (:mod:`learner._phase1`) and the conflict
search (:mod:`learner._conflicts`) can take the options without importing the module that runs
them. Import it from :mod:`learner.center` or :mod:`learner`, which re-export it.
"""

from __future__ import annotations

from dataclasses import dataclass

from learner._barrier import HessianPath


@dataclass(frozen=True)
class CenterOptions:
    """Tolerances of the centre solver.

    Parameters
    ----------
    tol : float
        Phase II stops when half the squared Newton decrement, lambda^2 / 2 (an estimate of
        the barrier-objective gap), is at most ``tol * max(1, |phi|)``: a relative gap.
    max_iter : int
        Newton steps allowed in phase II.
    phase1_max_iter : int
        Newton steps allowed in each phase-I run (all barrier rounds together).
    mu : float
        Factor by which phase I increases its barrier parameter between centrings.
    margin_tol : float
        A polytope whose largest normalised margin (distance from theta to the nearest
        half-space divided by R) is below this has "no interior" for our purposes.
    max_conflicts : int
        At most this many conflict groups are named by the search in one call (labels no
        network can express and contradicting duplicates are set aside first, outside this
        budget).
    max_conflict_size : int
        Largest conflict group the search tries to name.
    path : HessianPath
        Label-space or gate-space Woodbury; AUTO picks the cheaper one.
    """

    tol: float = 1e-10
    max_iter: int = 200
    phase1_max_iter: int = 400
    mu: float = 100.0
    margin_tol: float = 1e-5
    max_conflicts: int = 32
    max_conflict_size: int = 64
    path: HessianPath = HessianPath.AUTO

    def __post_init__(self) -> None:
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {self.tol}")
        if self.max_iter < 1 or self.phase1_max_iter < 1:
            raise ValueError("max_iter and phase1_max_iter must be >= 1")
        if not self.mu > 1:
            raise ValueError(f"mu must be > 1, got {self.mu}")
        if not 0 < self.margin_tol < 1:
            raise ValueError(f"margin_tol must be in (0, 1), got {self.margin_tol}")
        if self.max_conflicts < 0 or self.max_conflict_size < 1:
            raise ValueError("max_conflicts must be >= 0 and max_conflict_size >= 1")
