"""make bench-center: the structured analytic centre against cvxpy, then alone at scale.

Polytopes: d = 64 (plus a bias), P = 32 gates, labels from a random teacher network (a ReLU
network with 16 hidden units on random unit vectors). For L in {100, 500} the same version
space goes to our solver (cold start, best of 3 runs) and to cvxpy with Clarabel and SCS (one
run each; SCS gets eps 1e-6 and a time limit equal to Clarabel's time, since it can only be
"best" by being faster). Printed:

    speedup L=100: <x>        cvxpy's best time / ours
    speedup L=500: <x>
    max objective gap: <g>    max over L of |phi_ours - phi_cvxpy| / |phi_cvxpy| (Clarabel)

The same comparison runs on the soft version space (docs/learner.md, "Soft version space":
delta = ``learner.config.DEFAULT_DELTA``) of the same points with 15% of the labels flipped,
which is what the platform solves (lines ``soft speedup L=...``). Then ours alone at
L in {2000, 5000}, hard and soft: cold, and warm (the centre of the first L labels is the
start after one more label is added). Then depth 3 and 4 (the learner's default gates per
layer) at L in {100, 500}, cold and warm, next to depth 2 on the same points (and Clarabel at
L = 100). Figures go to bench/out/center.csv.
"""

from __future__ import annotations

from bench._common import machine, pin_blas_threads, write_csv

THREADS = pin_blas_threads()

import argparse  # noqa: E402
import time  # noqa: E402

import cvxpy as cp  # noqa: E402
import numpy as np  # noqa: E402

import learner  # noqa: E402
from learner.center import CenterResult, analytic_center  # noqa: E402
from learner.config import DEFAULT_DELTA, Task  # noqa: E402
from learner.reference import reference_center  # noqa: E402
from learner.version_space import VersionSpace, add_labels, empty_version_space  # noqa: E402

D = 64
P = 32


#: Share of labels flipped in the soft problems (noisy labels, as on real data).
FLIP = 0.15


def teacher_version_space(
    n_labels: int, seed: int = 0, depth: int = 2, soft: bool = False
) -> VersionSpace:
    """Labels of a random 16-unit ReLU network on random unit vectors (plus a bias 1).

    ``depth`` 3 or 4 uses the learner's default gates per layer for that depth (drawn by
    :func:`learner.sample_gates`, bias unit included) on the same points and labels. ``soft``
    flips :data:`FLIP` of the labels (a seeded choice) and softens the cuts by the default
    delta.
    """
    rng = np.random.default_rng(seed)
    gates = rng.standard_normal((P, D + 1))
    X = rng.standard_normal((n_labels, D))
    X = np.hstack([X / np.linalg.norm(X, axis=1, keepdims=True), np.ones((n_labels, 1))])
    W1 = rng.standard_normal((16, D + 1))
    w2 = rng.standard_normal(16)
    score = np.maximum(X @ W1.T, 0.0) @ w2
    y = (score > np.median(score)).astype(float)
    delta = 0.0
    if soft:
        flip = np.random.default_rng(seed + 2).random(n_labels) < FLIP
        y = np.where(flip, 1.0 - y, y)
        delta = DEFAULT_DELTA
    if depth == 2:
        vs = empty_version_space(gates, Task.BINARY, 2, 1.0, 0.1, delta=delta)
        return add_labels(vs, X, y)
    config = learner.LearnerConfig(depth=depth, seed=seed)
    fm = learner.FeatureMap(mean=np.zeros(D), components=None, bias=True)
    deep = learner.sample_gates(config, fm, np.random.default_rng(seed + 1))
    vs = empty_version_space(
        deep.weights, Task.BINARY, 2, 1.0, 0.1, upper_weights=deep.upper, delta=delta
    )
    return add_labels(vs, X, y)


def timed_centre(vs: VersionSpace, start: np.ndarray | None = None, repeats: int = 3):
    best = np.inf
    result: CenterResult | None = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = analytic_center(vs, start=start)
        best = min(best, time.perf_counter() - t0)
    assert result is not None
    if not result.success:
        raise RuntimeError(f"centre failed: {result.status.value}: {result.message}")
    return result, best


def describe(result: CenterResult) -> str:
    return (
        f"{result.nit} Newton steps ({result.phase1_nit} in phase I), "
        f"{result.n_factorizations} factorizations, {result.n_cg} CG iterations"
    )


def compare(n_labels: int, rows: list[dict], soft: bool = False) -> tuple[float, float]:
    vs = teacher_version_space(n_labels, soft=soft)
    kind = "soft" if soft else "hard"
    ours, t_ours = timed_centre(vs)
    clarabel = reference_center(vs, cp.CLARABEL)
    scs = reference_center(
        vs, cp.SCS, eps_abs=1e-6, eps_rel=1e-6, time_limit_secs=max(clarabel.seconds, 1.0)
    )
    candidates = [r for r in (clarabel, scs) if r.success]
    if not candidates:
        raise RuntimeError(f"cvxpy failed: Clarabel {clarabel.status}, SCS {scs.status}")
    fastest = min(candidates, key=lambda r: r.seconds)
    # inf: Clarabel's point leaves a slack non-positive (outside the barrier's domain).
    signed = (clarabel.objective - ours.objective) / abs(ours.objective)
    gap = abs(signed)
    # Our own certificate: phi - phi* <= lambda^2 / 2 near the centre (self-concordance).
    bound = ours.decrement**2 / 2 / abs(ours.objective)
    speedup = fastest.seconds / t_ours
    print(
        f"{kind} L={n_labels}: ours {t_ours:.3f} s ({describe(ours)}); "
        f"Clarabel {clarabel.seconds:.1f} s ({clarabel.status}); "
        f"SCS {scs.seconds:.1f} s ({scs.status}); relative objective gap {signed:+.1e} "
        f"(+: Clarabel's point is less central; ours is within {bound:.0e} of the optimum "
        "by its Newton decrement)"
    )
    for name, res in (("clarabel", clarabel), ("scs", scs)):
        rows.append(
            {
                "labels": n_labels,
                "cuts": kind,
                "solver": name,
                "start": "cold",
                "seconds": res.seconds,
                "objective": res.objective,
                "status": res.status,
            }
        )
    rows.append(
        {
            "labels": n_labels,
            "cuts": kind,
            "solver": "carve",
            "start": "cold",
            "seconds": t_ours,
            "objective": ours.objective,
            "status": ours.status.value,
        }
    )
    return speedup, gap


def alone(n_labels: int, rows: list[dict], soft: bool = False) -> float:
    """Cold and warm centre at ``n_labels``; returns the warm time."""
    vs = teacher_version_space(n_labels + 1, soft=soft)
    kind = "soft" if soft else "hard"
    first = vs.subset(np.arange(n_labels))
    cold, t_cold = timed_centre(first, repeats=1)
    warm, t_warm = timed_centre(vs, start=cold.x, repeats=3)
    print(f"{kind} L={n_labels}: cold {t_cold:.2f} s ({describe(cold)})")
    print(f"{kind} L={n_labels}: warm {t_warm:.2f} s after one new label ({describe(warm)})")
    for start, t, res in (("cold", t_cold, cold), ("warm", t_warm, warm)):
        rows.append(
            {
                "labels": n_labels,
                "cuts": kind,
                "solver": "carve",
                "start": start,
                "seconds": t,
                "objective": res.objective,
                "status": res.status.value,
            }
        )
    return t_warm


def deeper(n_labels: int, depth: int, rows: list[dict], with_cvxpy: bool) -> float:
    """Cold and warm centre at ``depth`` next to depth 2 on the same points and labels."""
    base, t_base = timed_centre(teacher_version_space(n_labels))
    vs = teacher_version_space(n_labels + 1, depth=depth)
    first = vs.subset(np.arange(n_labels))
    cold, t_cold = timed_centre(first)
    warm, t_warm = timed_centre(vs, start=cold.x)
    base_vs = teacher_version_space(n_labels + 1)
    _, t_base_warm = timed_centre(base_vs, start=base.x)
    sizes = "x".join(str(p) for p in vs.layer_sizes)
    line = (
        f"depth {depth} ({sizes} gates, G={vs.n_gates}, {vs.n_structural} D3 rows per label) "
        f"L={n_labels}: cold {t_cold:.3f} s vs depth 2 {t_base:.3f} s ({t_cold / t_base:.1f}x); "
        f"warm {t_warm:.3f} s vs {t_base_warm:.3f} s ({t_warm / t_base_warm:.1f}x); "
        f"{describe(cold)}"
    )
    if with_cvxpy:
        clarabel = reference_center(first, cp.CLARABEL)
        gap = (clarabel.objective - cold.objective) / abs(clarabel.objective)
        line += f"; Clarabel {clarabel.seconds:.1f} s ({clarabel.status}), gap {gap:+.1e}"
        rows.append(
            {
                "labels": n_labels,
                "solver": f"clarabel-depth{depth}",
                "start": "cold",
                "seconds": clarabel.seconds,
                "objective": clarabel.objective,
                "status": clarabel.status,
            }
        )
    print(line)
    for start, t, res in (("cold", t_cold, cold), ("warm", t_warm, warm)):
        rows.append(
            {
                "labels": n_labels,
                "solver": f"carve-depth{depth}",
                "start": start,
                "seconds": t,
                "objective": res.objective,
                "status": res.status.value,
            }
        )
    return t_cold / t_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L=100 only (smoke run)")
    args = parser.parse_args()
    print(f"# {machine()}, BLAS threads={THREADS}; d={D}+bias, P={P}")
    rows: list[dict] = []
    speedups: dict[tuple[str, int], float] = {}
    gaps: dict[str, list[float]] = {"hard": [], "soft": []}
    warm: dict[tuple[str, int], float] = {}
    for kind in ("hard", "soft"):
        for n in (100,) if args.quick else (100, 500):
            speedups[(kind, n)], gap = compare(n, rows, soft=kind == "soft")
            gaps[kind].append(gap)
    if not args.quick:
        for kind in ("hard", "soft"):
            for n in (2000, 5000):
                warm[(kind, n)] = alone(n, rows, soft=kind == "soft")
    ratios = {}
    for depth in (3,) if args.quick else (3, 4):
        for n in (100,) if args.quick else (100, 500):
            ratios[(depth, n)] = deeper(n, depth, rows, with_cvxpy=n == 100)
    path = write_csv("center.csv", rows)
    print(f"figures written to {path}")
    for (kind, n), s in speedups.items():
        print(f"{'' if kind == 'hard' else 'soft '}speedup L={n}: {s:.0f}x")
    for kind, g in gaps.items():
        finite = [x for x in g if np.isfinite(x)]
        outside = len(g) - len(finite)
        note = f" ({outside} Clarabel point(s) outside the barrier's domain)" if outside else ""
        best = f"{max(finite):.1e}" if finite else "n/a"
        print(f"{'' if kind == 'hard' else 'soft '}max objective gap: {best}{note}")
    for (kind, n), t in warm.items():
        print(f"{kind} warm recentre L={n}: {t:.2f} s")
    for (depth, n), ratio in ratios.items():
        print(f"depth {depth} / depth 2 cold time L={n}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
