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
L in {2000, 10000}, hard and soft: cold, and warm (the centre of the first L labels is the
start after 10 more labels are added). Then depth 3 and 4 (the learner's default gates per
layer) at L in {100, 500}, cold and warm, next to depth 2 on the same points (and Clarabel at
L = 100).

Multi-class (docs/learner.md, "Analytic centre", multi-class cuts): soft version spaces
(default delta, 15% of the labels flipped to another class) of a random K-output teacher on the
same kind of points, K in {2, 3, 4, 6, 10} at L = 1000: the cold centre (one run) and the warm
recentre after 10 new labels (best of 3), the exponent of time in K (least squares on log-log),
and at K = 4 the same solves with the generic products over all L (K - 1) cuts (the code
before the per-class capacitance), side by side. Last, this machine's dgemm rate and the Newton
solver's achieved rate on the K = 4 solves, from a model of its flop count (factorizations and
CG iterations as counted by the solver). The full run ends with the issue's targets ("K=4
L=1000 warm < 1 s", ...), each with the figure this run measured and "met" or "missed by <x>".
Figures go to bench/out/center.csv.
"""

from __future__ import annotations

from bench._common import machine, pin_blas_threads, write_csv

THREADS = pin_blas_threads()

import argparse  # noqa: E402
import time  # noqa: E402

import cvxpy as cp  # noqa: E402
import numpy as np  # noqa: E402

import learner  # noqa: E402
from learner import _barrier  # noqa: E402
from learner.center import CenterResult, analytic_center  # noqa: E402
from learner.config import DEFAULT_DELTA, Task  # noqa: E402
from learner.reference import reference_center  # noqa: E402
from learner.version_space import VersionSpace, add_labels, empty_version_space  # noqa: E402

D = 64
P = 32


#: Share of labels flipped in the soft problems (noisy labels, as on real data).
FLIP = 0.15
#: Classes of the multi-class scan (the exponent of time in K is fitted over them).
CLASSES = (2, 3, 4, 6, 10)
#: Labels of the multi-class scan, and the labels added before the warm recentre.
MULTI_LABELS = 1000
NEW_LABELS = 10
#: Labels of the binary runs without cvxpy (cold, and warm after NEW_LABELS more).
BINARY_LABELS = (2000, 10_000)


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
        f"{result.n_factorizations} factorizations, {result.n_block} block preconditioners, "
        f"{result.n_cg} CG iterations"
    )


def compare(n_labels: int, rows: list[dict], soft: bool = False) -> tuple[float, float, float]:
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
    return speedup, gap, signed


def alone(n_labels: int, rows: list[dict], soft: bool = False) -> tuple[float, float]:
    """Cold centre at ``n_labels`` (one run) and warm recentre after :data:`NEW_LABELS` more
    (best of 3); returns both times."""
    vs = teacher_version_space(n_labels + NEW_LABELS, soft=soft)
    kind = "soft" if soft else "hard"
    first = vs.subset(np.arange(n_labels))
    cold, t_cold = timed_centre(first, repeats=1)
    warm, t_warm = timed_centre(vs, start=cold.x, repeats=3)
    print(f"{kind} L={n_labels}: cold {t_cold:.2f} s ({describe(cold)})")
    print(
        f"{kind} L={n_labels}: warm {t_warm:.2f} s after {NEW_LABELS} new labels ({describe(warm)})"
    )
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
    return t_cold, t_warm


def deeper(
    n_labels: int, depth: int, rows: list[dict], with_cvxpy: bool
) -> tuple[float, float, float]:
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
    return t_cold / t_base, t_cold, t_warm


def multiclass_version_space(n_labels: int, n_classes: int, seed: int = 0) -> VersionSpace:
    """Soft version space of a random ``n_classes``-output teacher (binary for 2).

    Points as in :func:`teacher_version_space`; labels are the argmax of a 16-unit ReLU network
    with ``n_classes`` outputs, :data:`FLIP` of them moved to another class (seeded), and the
    cuts softened by the default delta.
    """
    rng = np.random.default_rng(seed)
    gates = rng.standard_normal((P, D + 1))
    X = rng.standard_normal((n_labels, D))
    X = np.hstack([X / np.linalg.norm(X, axis=1, keepdims=True), np.ones((n_labels, 1))])
    W1 = rng.standard_normal((16, D + 1))
    W2 = rng.standard_normal((16, n_classes))
    y = np.argmax(np.maximum(X @ W1.T, 0.0) @ W2, axis=1)
    noise = np.random.default_rng(seed + 2)
    flip = noise.random(n_labels) < FLIP
    y = np.where(flip, (y + noise.integers(1, n_classes, n_labels)) % n_classes, y)
    task = Task.BINARY if n_classes == 2 else Task.MULTICLASS
    vs = empty_version_space(gates, task, n_classes, 1.0, 0.1, delta=DEFAULT_DELTA)
    return add_labels(vs, X, y.astype(float))


def multiclass(
    n_labels: int, n_classes: int, rows: list[dict], *, generic: bool = False
) -> tuple[float, float, CenterResult, CenterResult]:
    """Cold centre at ``n_labels`` (one run) and warm recentre after :data:`NEW_LABELS` more
    (best of 3, or of 1 with ``generic``). ``generic`` runs the generic products over every
    cut instead of the per-class capacitance."""
    vs = multiclass_version_space(n_labels + NEW_LABELS, n_classes)
    first = vs.subset(np.arange(n_labels))
    saved = _barrier._CLASS_CUTS
    _barrier._CLASS_CUTS = not generic
    try:
        cold, t_cold = timed_centre(first, repeats=1)
        warm, t_warm = timed_centre(vs, start=cold.x, repeats=1 if generic else 3)
    finally:
        _barrier._CLASS_CUTS = saved
    kind = "generic" if generic else "per-class"
    print(
        f"K={n_classes} L={n_labels} ({kind}): cold {t_cold:.2f} s ({describe(cold)}); "
        f"warm {t_warm:.2f} s after {NEW_LABELS} new labels ({describe(warm)})"
    )
    for start, t, res in (("cold", t_cold, cold), ("warm", t_warm, warm)):
        rows.append(
            {
                "labels": n_labels,
                "cuts": "soft",
                "classes": n_classes,
                "solver": "carve" if not generic else "carve-generic",
                "start": start,
                "seconds": t,
                "objective": res.objective,
                "status": res.status.value,
            }
        )
    return t_cold, t_warm, cold, warm


def dgemm_rate(n: int = 2000) -> float:
    """This machine's float64 matrix-product rate in flop/s (best of 3, n x n times n x n)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def newton_flops(vs: VersionSpace, result: CenterResult) -> float:
    """A model of the flops of one solve (depth 2): per factorization the B_j and their
    inverses, the capacitance (per class for multi-class cuts, else E E^T) and its Cholesky
    factor; per block preconditioner (eq. BJ) the B_j (upper triangles) and their inverses; per
    CG iteration a Hessian product and a block solve, plus A, A^T, a second block solve and two
    triangular solves when a factorization preconditions; per Newton step the gradient and the
    slack updates."""
    L, r = vs.n_labels, vs.n_features
    K, Pg = vs.n_outputs, vs.n_gates
    J, G = 2 * K * Pg, K * Pg
    Q = L * (vs.cuts_per_label)
    factor = 2 * J * L * r * r + 2.5 * J * r**3 + Q**3 / 3
    if vs.task is Task.MULTICLASS:
        factor += K * (2 * L * r * Pg * r + L * L * Pg * r)
    else:
        factor += 2 * Q * r * G * r + Q * Q * G * r
    block = J * L * r * (r + 1) + J * r**3
    cg = 4 * L * r * J + 2 * J * r * r
    if result.n_factorizations:
        cg += 2 * J * r * r + 4 * Q * r * G / max(1, K - 1) + 2 * Q * Q
    step = 6 * L * r * J
    return (
        result.n_factorizations * factor
        + result.n_block * block
        + result.n_cg * cg
        + result.nit * step
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L=100 only (smoke run)")
    parser.add_argument(
        "--multiclass-only", action="store_true", help="only the multi-class scan and rates"
    )
    args = parser.parse_args()
    print(f"# {machine()}, BLAS threads={THREADS}; d={D}+bias, P={P}")
    rows: list[dict] = []
    fig: dict[str, float] = {}
    if args.multiclass_only:
        for line in multiclass_report(rows, fig, quick=args.quick):
            print(line)
        print(f"figures written to {write_csv('center-multiclass.csv', rows)}")
        return
    speedups: dict[tuple[str, int], float] = {}
    gaps: dict[str, list[float]] = {"hard": [], "soft": []}
    signed: dict[str, list[float]] = {"hard": [], "soft": []}
    alone_times: dict[tuple[str, int], tuple[float, float]] = {}
    for kind in ("hard", "soft"):
        for n in (100,) if args.quick else (100, 500):
            speedups[(kind, n)], gap, sign = compare(n, rows, soft=kind == "soft")
            gaps[kind].append(gap)
            signed[kind].append(sign)
    if not args.quick:
        for kind in ("hard", "soft"):
            for n in BINARY_LABELS:
                alone_times[(kind, n)] = alone(n, rows, soft=kind == "soft")
    ratios = {}
    deep_times = {}
    for depth in (3,) if args.quick else (3, 4):
        for n in (100,) if args.quick else (100, 500):
            ratios[(depth, n)], *times = deeper(n, depth, rows, with_cvxpy=n == 100)
            deep_times[(depth, n)] = tuple(times)
    multi = multiclass_report(rows, fig, quick=args.quick)
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
    for (kind, n), (t_cold, t_warm) in alone_times.items():
        print(f"{kind} L={n}: cold {t_cold:.2f} s, warm recentre {t_warm:.2f} s")
    for (depth, n), ratio in ratios.items():
        print(f"depth {depth} / depth 2 cold time L={n}: {ratio:.1f}x")
    for line in multi:
        print(line)
    if args.quick:
        return
    # The targets, each next to what this run measured.
    soft2k, soft10k = alone_times[("soft", 2000)], alone_times[("soft", 10000)]
    d4 = deep_times[(4, 500)]
    ahead = min(min(signed["hard"]), min(signed["soft"]))
    checks = [
        ("K=4 L=1000 warm < 1 s", fig["warm4"], 1.0),
        ("K=4 L=1000 cold < 5 s", fig["cold4"], 5.0),
        ("K=10 L=1000 warm < 1 s", fig["warm10"], 1.0),
        ("K=10 L=1000 cold < 5 s", fig["cold10"], 5.0),
        ("warm time ~ K^a with a <= 1", fig["slope_warm"], 1.0),
        ("cold time ~ K^a with a <= 1", fig["slope_cold"], 1.0),
        ("binary (soft) L=2000 warm < 0.3 s", soft2k[1], 0.3),
        ("binary (soft) L=10000 warm < 1 s", soft10k[1], 1.0),
        ("binary (soft) L=10000 cold < 10 s", soft10k[0], 10.0),
        ("depth 4 L=500 cold < 2 s", d4[0], 2.0),
        ("depth 4 L=500 warm < 0.5 s", d4[1], 0.5),
    ]
    print("targets (measured in this run):")
    for name, value, limit in checks:
        verdict = "met" if value < limit else f"missed by {value / limit:.2f}x"
        print(f"  {name}: {value:.2f} ({verdict})")
    s500 = min(speedups[("hard", 500)], speedups[("soft", 500)])
    verdict = "met" if s500 >= 300 else f"missed by {300 / s500:.2f}x"
    print(
        f"  centre vs cvxpy >= 300x at L=500: {s500:.0f}x (the lower of hard and soft; {verdict})"
    )
    side = "never" if ahead >= 0 else "once"
    print(
        f"  our point {side} the less central one (smallest signed gap {ahead:+.1e}; "
        "+: cvxpy's point is less central)"
    )
    warm_rate, cold_rate = fig["rate_warm"], fig["rate_cold"]
    print(f"  Newton rate K=4 L=1000: {warm_rate:.0%} (warm), {cold_rate:.0%} (cold) of dgemm")


def multiclass_report(rows: list[dict], fig: dict[str, float], quick: bool = False) -> list[str]:
    """The multi-class scan (module docstring); returns the summary lines."""
    n = 100 if quick else MULTI_LABELS
    classes = (2, 3, 4) if quick else CLASSES
    results = {K: multiclass(n, K, rows) for K in classes}
    times = {K: (res[0], res[1]) for K, res in results.items()}
    t_cold4, t_warm4, cold4, warm4 = results[4]
    fig["cold4"], fig["warm4"] = t_cold4, t_warm4
    if 10 in times:
        fig["cold10"], fig["warm10"] = times[10]
    g_cold, g_warm, g_cold_res, g_warm_res = multiclass(n, 4, rows, generic=True)
    gap = max(
        abs(a.objective - b.objective) / abs(b.objective)
        for a, b in ((cold4, g_cold_res), (warm4, g_warm_res))
    )
    logk = np.log(np.array(classes, dtype=float))
    lines = []
    for label, idx in (("warm", 1), ("cold", 0)):
        logt = np.log([times[K][idx] for K in classes])
        slope = float(np.polyfit(logk, logt, 1)[0])
        fig[f"slope_{label}"] = slope
        series = ", ".join(f"K={K} {times[K][idx]:.2f} s" for K in classes)
        # Binary (K = 2) has one output; every other K has K outputs (2 K P blocks).
        multi = [i for i, K in enumerate(classes) if K > 2]
        slope3 = float(np.polyfit(logk[multi], logt[multi], 1)[0])
        lines.append(
            f"multi-class {label} L={n}: {series}; time ~ K^{slope:.2f} "
            f"(K^{slope3:.2f} over K >= 3, K outputs each)"
        )
    lines.append(
        f"multi-class K=4 L={n}: per-class vs generic products: cold {t_cold4:.2f} s vs "
        f"{g_cold:.2f} s ({g_cold / t_cold4:.1f}x), warm {t_warm4:.2f} s vs {g_warm:.2f} s "
        f"({g_warm / t_warm4:.1f}x); relative objective difference {gap:.1e}"
    )
    rate = dgemm_rate()
    vs = multiclass_version_space(n + NEW_LABELS, 4)
    first = vs.subset(np.arange(n))
    for label, res, t, space in (("cold", cold4, t_cold4, first), ("warm", warm4, t_warm4, vs)):
        achieved = newton_flops(space, res) / t
        fig[f"rate_{label}"] = achieved / rate
        lines.append(
            f"Newton rate K=4 L={n} {label}: {achieved / 1e9:.1f} GFLOP/s (flop model) = "
            f"{achieved / rate:.0%} of this machine's dgemm rate {rate / 1e9:.1f} GFLOP/s"
        )
    return lines


if __name__ == "__main__":
    main()
