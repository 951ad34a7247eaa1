"""python -m bench.al.tune: Carve's settings compared on the tuning splits only.

SST-2: the 10,000-item pool, scored on validation. MR and AG News: the training part (the
benchmark's pool) split 80/20 again; the held-out 20% scores. The test splits are never
scored. Writes
``bench/out/bench-al-tune.csv``; ``python -m bench.al`` puts its table in the report.
"""

from __future__ import annotations

from bench._common import pin_blas_threads, read_rows, write_rows

THREADS = pin_blas_threads()

import argparse  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.al import __main__ as al  # noqa: E402
from bench.al.data import Dataset, Embedder, Part, load  # noqa: E402
from bench.al.run import Job  # noqa: E402

#: label -> (overrides of LearnerConfig.recommended(384), served model). Radius is left
#: out: every cut is homogeneous, so the ball only scales the centre and no prediction
#: depends on it.
SETTINGS: dict[str, tuple[dict[str, object], str]] = {
    "soft auto-delta (default)": ({}, "center"),
    "soft delta=0.005": ({"auto_delta": False}, "center"),
    "hard delta=0": ({"delta": 0.0, "auto_delta": False}, "center"),
    "soft delta=0.0025": ({"delta": 0.0025, "auto_delta": False}, "center"),
    "soft delta=0.01": ({"delta": 0.01, "auto_delta": False}, "center"),
    "soft explore=0.2": ({"explore": 0.2}, "center"),
    "soft diversity=2": ({"diversity": 2.0}, "center"),
    "P32 raw384": ({"projection": "none", "n_components": None}, "center"),
    "P32 pca32": ({"projection": "pca", "n_components": 32}, "center"),
    "P32 pca64": ({"projection": "pca", "n_components": 64}, "center"),
    "P32 pca128": ({"projection": "pca", "n_components": 128}, "center"),
    "P16 pca64": ({"n_gates": 16, "projection": "pca", "n_components": 64}, "center"),
    "P64 pca64": ({"n_gates": 64, "projection": "pca", "n_components": 64}, "center"),
    "P32 pca64 data-gates": (
        {"projection": "pca", "n_components": 64, "gate_init": "data"},
        "center",
    ),
    "P32 pca64 convex-fit": ({"projection": "pca", "n_components": 64}, "convex"),
    "P32 pca64 no-diversity": ({"diversity": 0.0}, "center"),
    "P32 pca64 margin-query": ({"query_strategy": "margin"}, "center"),
    "P32 pca64 serve-logreg": ({}, "logreg"),
    "P32 pca64 extremes-query": ({}, "center"),
}

#: Settings run with another query rule than Carve's default.
STRATEGY = {"P32 pca64 extremes-query": "carve_extremes"}


def tuning_data(name: str, data_dir: Path, cache_dir: Path) -> Dataset:
    full = load(name, data_dir, cache_dir, Embedder())
    if name == "sst2":
        return Dataset("sst2-val", full.pool, {"validation": full.evals["validation"]})
    # MR, AG News: hold out a fixed 20% of the training part; the test split is not used.
    rows = np.random.default_rng(7).permutation(len(full.pool.y))
    cut = int(0.8 * len(rows))

    def part(idx: np.ndarray) -> Part:
        return Part([full.pool.texts[i] for i in idx], full.pool.y[idx], full.pool.X[idx])

    return Dataset(f"{name}-train", part(rows[:cut]), {"validation": part(rows[cut:])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--append", action="store_true", help="add to the existing CSV")
    parser.add_argument("--datasets", default="sst2,mr,agnews")
    parser.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the reference baselines (keep those of the existing CSV with --append)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    data_dir = Path(os.environ.get("DATA_DIR", al.ROOT.parent / "shared" / "data"))
    cache_dir = Path(os.environ.get("CACHE_DIR", al.default_cache()))
    for name in args.datasets.split(","):
        d = tuning_data(name, data_dir, cache_dir)
        al.DATA[d.name] = d
    jobs = []
    for label in filter(None, args.settings.split(",")):
        overrides, served = SETTINGS[label]
        for seed in range(args.seeds):
            for dataset in al.DATA:
                jobs.append(
                    Job(
                        dataset,
                        STRATEGY.get(label, "carve"),
                        "carve",
                        seed,
                        args.budget,
                        10,
                        overrides,
                        served,
                        label,
                    )
                )
    for seed in range(0 if args.no_baselines else args.seeds):  # reference points
        for dataset in al.DATA:
            for strategy, model in (
                ("random", "logreg"),
                ("entropy", "logreg"),
                ("entropy", "logregcv"),
            ):
                jobs.append(Job(dataset, strategy, model, seed, args.budget))
    rows = al.run_all(jobs, args.jobs)
    path = al.ROOT / "bench" / "out" / "bench-al-tune.csv"
    if args.append and path.exists():
        old = read_rows(path)
        new_names = {r["strategy"] for r in rows}
        rows = [r for r in old if r["strategy"] not in new_names] + rows
    write_rows(path, rows)
    from bench.al.report import tuning_section

    print(tuning_section(path))


if __name__ == "__main__":
    main()
