"""Tables, plots, the verdict lines and ``docs/benchmarks.md`` from the runs' rows."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

TABLE_BUDGETS = (10, 50, 100, 200, 300, 400, 500)
CARVE = "carve"


def _curves(rows: list[dict[str, Any]], split: str) -> dict[str, dict[str, dict[int, list[float]]]]:
    """dataset -> strategy -> labels -> accuracies over seeds."""
    out: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in rows:
        if r["split"] == split:
            out[r["dataset"]][r["strategy"]][int(r["labels"])].append(float(r["accuracy"]))
    return out


def eval_split(rows: list[dict[str, Any]], dataset: str) -> str:
    return (
        "test"
        if any(r["split"] == "test" for r in rows if r["dataset"] == dataset)
        else "validation"
    )


def verdict(
    rows: list[dict[str, Any]], min_budget: int = 50, row: str = CARVE
) -> tuple[list[str], int, int]:
    """Per dataset and budget >= min_budget: Carve's mean test accuracy (the strategy ``row``)
    vs the best baseline."""
    lines, wins, cells = [], 0, 0
    for dataset in sorted({r["dataset"] for r in rows}):
        curves = _curves(rows, eval_split(rows, dataset))[dataset]
        if row not in curves:
            continue
        baselines = [s for s in curves if not s.startswith(CARVE) and not is_noisy(s)]
        for n in sorted(curves[row]):
            if n < min_budget:
                continue
            carve = float(np.mean(curves[row][n]))
            best, name = max((float(np.mean(curves[s][n])), s) for s in baselines if n in curves[s])
            cells += 1
            wins += carve >= best
            lines.append(
                f"{dataset} budget={n}: carve={carve:.4f} best_baseline={best:.4f} ({name})"
            )
    return lines, wins, cells


#: Carve rows the verdict is printed for: the shipped default (automatic delta), the fixed
#: default delta and hard cuts.
VERDICT_ROWS = (CARVE, "carve-soft", "carve-hard")


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``<row> wins <k> of <m> dataset-budget cells`` and the per-dataset mean differences, for
    each row of :data:`VERDICT_ROWS` the run has."""
    out = []
    present = {r["strategy"] for r in rows}
    for row in VERDICT_ROWS:
        if row not in present:
            continue
        _, wins, cells = verdict(rows, row=row)
        out.append(f"{row} wins {wins} of {cells} dataset-budget cells")
        out.extend(mean_differences(rows, row=row))
    return out


def mean_differences(
    rows: list[dict[str, Any]], min_budget: int = 50, row: str = CARVE
) -> list[str]:
    """Per dataset: the mean over budgets >= min_budget of ``row``'s accuracy minus the best
    baseline's at each budget (mean of seeds), in percentage points."""
    out = []
    for dataset in sorted({r["dataset"] for r in rows}):
        curves = _curves(rows, eval_split(rows, dataset))[dataset]
        if row not in curves:
            continue
        baselines = [s for s in curves if not s.startswith(CARVE) and not is_noisy(s)]
        diffs = [
            float(np.mean(curves[row][n]))
            - max(float(np.mean(curves[s][n])) for s in baselines if n in curves[s])
            for n in sorted(curves[row])
            if n >= min_budget and any(n in curves[s] for s in baselines)
        ]
        if diffs:
            out.append(
                f"{dataset}: {row} - best baseline, mean over {len(diffs)} budgets >= "
                f"{min_budget}: {100 * np.mean(diffs):+.2f} pp"
            )
    return out


def is_noisy(strategy: str) -> bool:
    """Rows of the noisy-label runs (``...-flip<percent>``): not part of the verdict."""
    return "-flip" in strategy


def noise_section(rows: list[dict[str, Any]]) -> str:
    """Noisy-label runs: accuracy (clean evaluation split) and Carve's suspect precision."""
    noisy = [r for r in rows if is_noisy(r["strategy"])]
    if not noisy:
        return ""
    out = [
        "## Noisy labels\n",
        "A share of the pool's labels changed to another class before the run (the same items "
        "for every strategy of a seed); accuracy on the clean evaluation split, mean over "
        "seeds. *Suspect precision*: the share of flipped labels among Carve's top-k suspects, "
        'k = the number of flipped labels it was given (docs/learner.md, "Suspect '
        'labels"); the base rate is the flip share.\n',
    ]
    for dataset in sorted({r["dataset"] for r in noisy}):
        split = eval_split(rows, dataset)
        curves = _curves(rows, split)[dataset]
        names = sorted(s for s in curves if is_noisy(s) or s in ("carve", "entropy-logreg"))
        budgets = [b for b in TABLE_BUDGETS if b >= 50 and any(b in curves[s] for s in names)]
        out.append(f"**{dataset}** ({split})\n")
        out.append(
            "| strategy | " + " | ".join(str(b) for b in budgets) + " | suspect precision (last) |"
        )
        out.append("|---|" + "---:|" * (len(budgets) + 1))
        for s in names:
            accs = [f"{np.mean(curves[s][b]):.3f}" if b in curves[s] else "–" for b in budgets]
            last = max(curves[s])
            given = [
                float(r.get("suspect_precision") or "nan")
                for r in noisy
                if r["strategy"] == s and r["split"] == split and int(r["labels"]) == last
            ]
            prec = [p for p in given if not math.isnan(p)]
            p = f"{np.mean(prec):.2f}" if prec else "–"
            out.append(f"| {s} | " + " | ".join(accs) + f" | {p} |")
        out.append("")
    return "\n".join(out)


SERVED = ("centre", "convex", "ensemble")


def served_section(rows: list[dict[str, Any]]) -> str:
    """The served-model comparison of the default row: centre, convex fit and ensemble."""
    scored = [
        r
        for r in rows
        if r["strategy"] == CARVE and str(r.get("acc_convex") or "") not in ("", "nan")
    ]
    if not scored:
        return ""
    out = [
        "## The served model\n",
        "Carve's default row at a few label counts, on the same labels: the analytic centre "
        '(what the rows above score), the convex fit `fit_network` (docs/learner.md, "Final '
        "model\") and an ensemble averaging the two models' probabilities, each model's "
        "outputs first divided by their standard deviation on the evaluation split (a "
        "temperature from unlabeled data, no held-out labels). Mean over seeds; the platform "
        "chooses between centre and convex fit on held-out gold labels.\n",
        "| dataset | split | labels | centre | convex | ensemble |",
        "|---|---|---:|---:|---:|---:|",
    ]
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in scored:
        cells.setdefault((r["dataset"], r["split"], int(r["labels"])), []).append(r)
    for (dataset, split, n), group in sorted(cells.items()):
        accs = [np.mean([float(r[f"acc_{k}"]) for r in group]) for k in SERVED]
        out.append(f"| {dataset} | {split} | {n} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")
    out.append("")
    return "\n".join(out)


def labels_to_reach(acc_by_n: dict[int, list[float]], target: float) -> int | None:
    for n in sorted(acc_by_n):
        if np.mean(acc_by_n[n]) >= target:
            return n
    return None


def plot(
    rows: list[dict[str, Any]], ceil: dict[str, float], out_dir: Path, stem: str
) -> list[Path]:
    """Learning curves (mean ± std over seeds) per dataset, PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "carve"  # stable ids: a rerun gives the same file
    import matplotlib.pyplot as plt

    paths = []
    for dataset in sorted({r["dataset"] for r in rows}):
        split = eval_split(rows, dataset)
        curves = _curves(rows, split)[dataset]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
        for ax, model in zip(axes, ("logreg", "mlp"), strict=True):
            names = [
                s
                for s in sorted(curves)
                if (s.endswith(model) or s.startswith(CARVE)) and not is_noisy(s)
            ]
            for s in names:
                ns = sorted(curves[s])
                mean = np.array([np.mean(curves[s][n]) for n in ns])
                std = np.array([np.std(curves[s][n]) for n in ns])
                style = "-" if s.startswith(CARVE) else "--"
                width = 2.2 if s == CARVE else 1.2
                (line,) = ax.plot(ns, mean, style, lw=width, label=s)
                ax.fill_between(ns, mean - std, mean + std, color=line.get_color(), alpha=0.12)
            if dataset in ceil:
                ax.axhline(ceil[dataset], color="k", lw=0.8, ls=":", label="full-pool ceiling")
            ax.set_title(f"{dataset} ({split}): baselines with {model}")
            ax.set_xlabel("labels")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        axes[0].set_ylabel("accuracy")
        fig.tight_layout()
        for ext in ("png", "svg"):
            path = out_dir / f"{stem}-{dataset}.{ext}"
            fig.savefig(path, dpi=110, metadata={"Date": None} if ext == "svg" else None)
            paths.append(path)
        plt.close(fig)
    return paths


def _fmt(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.3f}"


def markdown(
    rows: list[dict[str, Any]],
    ceil_rows: list[dict[str, Any]],
    header: str,
    image_prefix: str,
    extra: str = "",
) -> str:
    """The generated report: accuracy tables, labels to 95/98% of the ceiling, round times."""
    out = [header]
    lines, wins, cells = verdict(rows)
    out.append(
        f"**carve wins {wins} of {cells} dataset-budget cells** (budget ≥ 50, mean of seeds).\n"
    )
    datasets = sorted({r["dataset"] for r in rows})
    for dataset in datasets:
        out.append(f"## {dataset}\n")
        splits = sorted({r["split"] for r in rows if r["dataset"] == dataset}, reverse=False)
        ceil = {
            (c["model"], c["split"]): float(c["accuracy"])
            for c in ceil_rows
            if c["dataset"] == dataset
        }
        main_split = eval_split(rows, dataset)
        out.append(
            "Full-pool ceilings: "
            + ", ".join(f"{m} {s} {a:.4f}" for (m, s), a in sorted(ceil.items()))
            + ".\n"
        )
        for split in splits:
            curves = _curves(rows, split)[dataset]
            budgets = [b for b in TABLE_BUDGETS if any(b in c for c in curves.values())]
            out.append(f"Accuracy on **{split}** (mean ± std over seeds):\n")
            out.append("| strategy | " + " | ".join(str(b) for b in budgets) + " |")
            out.append("|---|" + "---:|" * len(budgets))
            for s in sorted(curves, key=lambda s: (not s.startswith(CARVE), s)):
                if is_noisy(s):
                    continue  # in the noisy-label section
                cells_txt = []
                for b in budgets:
                    acc = curves[s].get(b, [])
                    cells_txt.append(f"{np.mean(acc):.3f} ± {np.std(acc):.3f}" if acc else "–")
                name = f"**{s}**" if s == CARVE else s
                out.append(f"| {name} | " + " | ".join(cells_txt) + " |")
            out.append("")
        best_ceiling = max(
            (a for (m, s), a in ceil.items() if s == main_split), default=float("nan")
        )
        curves = _curves(rows, main_split)[dataset]
        times = _round_times(rows, dataset)
        out.append(
            f"Labels to reach 95% / 98% of the best full-pool ceiling ({best_ceiling:.4f}, "
            f"{main_split}), and the wall time of a round (model update + next query, seconds, "
            "mean over rounds; and at the last round):\n"
        )
        out.append("| strategy | to 95% | to 98% | s/round (mean) | s/round (last) |")
        out.append("|---|---:|---:|---:|---:|")
        for s in sorted(curves, key=lambda s: (not s.startswith(CARVE), s)):
            if is_noisy(s):
                continue  # the noisy-label runs have their own section
            reach = []
            for frac in (0.95, 0.98):
                n = labels_to_reach(curves[s], frac * best_ceiling)
                reach.append(str(n) if n is not None else f">{max(curves[s])}")
            mean_t, last_t = times.get(s, (float("nan"), float("nan")))
            out.append(f"| {s} | {reach[0]} | {reach[1]} | {_fmt(mean_t)} | {_fmt(last_t)} |")
        out.append("")
        out.append(f"![{dataset} learning curves]({image_prefix}-{dataset}.svg)\n")
    out.append(noise_section(rows))
    out.append(served_section(rows))
    out.append(extra)
    out.append("## Verdict lines\n\n```")
    out.extend(lines)
    out.extend(summary_lines(rows))
    out.append("```\n")
    return "\n".join(out)


def _round_times(rows: list[dict[str, Any]], dataset: str) -> dict[str, tuple[float, float]]:
    per: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    split = eval_split(rows, dataset)
    for r in rows:
        if r["dataset"] == dataset and r["split"] == split and not math.isnan(float(r["query_s"])):
            per[r["strategy"]][int(r["labels"])].append(float(r["fit_s"]) + float(r["query_s"]))
    out = {}
    for s, by_n in per.items():
        means = [float(np.mean(v)) for v in by_n.values()]
        out[s] = (float(np.mean(means)), float(np.mean(by_n[max(by_n)])))
    return out


def best_ceilings(ceil_rows: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, float]:
    """Best full-pool accuracy per dataset on the split the verdict uses."""
    out: dict[str, float] = {}
    for c in ceil_rows:
        if c["split"] == eval_split(rows, c["dataset"]):
            out[c["dataset"]] = max(out.get(c["dataset"], 0.0), float(c["accuracy"]))
    return out


def header(quick: bool, meta: dict[str, Any]) -> str:
    """The report's opening: how the run was made (``meta`` as written by ``bench.al``)."""
    seeds, budget, scale = meta["seeds"], meta["budget"], float(meta["scale"])
    kind = "`make bench-al QUICK=1`, a quick run" if quick else "`make bench-al`, the full run"
    import learner

    cfg = learner.LearnerConfig.recommended(384)
    settings = (
        f"`LearnerConfig.recommended(384)` (P={cfg.n_gates}, {cfg.projection.value} to "
        f"{cfg.n_components} dimensions, {cfg.gate_init.value} gates, R={cfg.radius:g}, "
        f"delta {'cross-validated per run' if cfg.auto_delta else f'= {cfg.delta:g}'})"
    )
    cut = f" (each part cut to {scale:.0%} in this quick run)" if scale < 1 else ""
    runs = meta.get("parts", {})
    parts = (
        " (run in parts: " + "; ".join(f"{k} {v} min" for k, v in runs.items()) + ")"
        if len(runs) > 1
        else ""
    )
    return f"""# Real-data active-learning benchmark

Generated by {kind}; do not edit by hand. {meta["machine"]}, one
BLAS thread per process, {meta["jobs"]} processes, {meta["minutes"]} min in all{parts}.

Protocol: embeddings from `{meta["model"]}` (384-d, normalised). SST-2: pool of 10,000 train
items, scored on validation and test; MR: fixed 80/20 split; IMDB: 5,000 train reviews as the
pool, 5,000 test reviews; AG News (4 topic classes): train (5,700) as the pool, test
(1,900){cut}.
Start from 5 labels per class (random), then batches of 10 up to {budget}; {seeds} seeds;
every label counts. Baseline strategies run with logistic regression (`-logreg`, C=1; `-logregcv`,
C chosen by stratified 5-fold cross-validation on the labels every round) and a
one-hidden-layer ReLU MLP trained from gradients by L-BFGS (`-mlp`, 64 units); random, entropy,
breaking ties, core-set, k-means and CAL are small-text's, BADGE is ours (see
`bench/al/strategies.py`). `carve` is Carve's learner with {settings}: the analytic centre of
the soft version space (docs/learner.md, "Soft version space") answers and its distance rule
picks the batch; `carve-soft` is the same with delta fixed at {learner.LearnerConfig().delta:g}
(ramped in over the first 100 labels), `carve-hard` with hard cuts (delta = 0);
`carve_extremes` is the reference code's rule
(most positive and most negative centre predictions; binary only). Ceilings: the
baseline models trained on the whole pool.
"""


def tuning_section(path: Path) -> str:
    """The tuning sweep's table (``python -m bench.al.tune``), when it has been run."""
    if not path.exists():
        return ""
    from bench._common import read_rows

    rows = read_rows(path)
    out = [
        "## Tuning the learner's settings (tuning splits only)\n",
        "Written by `python -m bench.al.tune`: Carve's accuracy on the tuning splits (SST-2 "
        "validation; a held-out 20% of MR's and of AG News's training parts) for each setting, "
        "mean over seeds. "
        "No test split was looked at.\n",
    ]
    for dataset in sorted({r["dataset"] for r in rows}):
        curves = _curves(rows, "validation")[dataset]
        budgets = [b for b in (50, 100, 200, 300, 500) if any(b in c for c in curves.values())]
        out.append(f"**{dataset}**\n")
        out.append(
            "| setting | " + " | ".join(str(b) for b in budgets) + " | mean ≥ 50 | s/round |"
        )
        out.append("|---|" + "---:|" * (len(budgets) + 2))
        times = _round_times(rows, dataset)
        for s in sorted(curves):
            means = [float(np.mean(v)) for n, v in curves[s].items() if n >= 50]
            cells = [f"{np.mean(curves[s][b]):.3f}" if b in curves[s] else "–" for b in budgets]
            t = times.get(s, (float("nan"),))[0]
            out.append(f"| {s} | " + " | ".join(cells) + f" | {np.mean(means):.4f} | {_fmt(t)} |")
        out.append("")
    return "\n".join(out)
