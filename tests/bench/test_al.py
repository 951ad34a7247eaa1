"""The real-data benchmark's pieces, on synthetic data (no ../shared/data needed)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.al import report
from bench.al.data import SPECS, Dataset, Part, cached_embeddings, read_csv, select
from bench.al.models import Baseline, CarveModel
from bench.al.run import Job, initial_labels, run
from bench.al.strategies import BASELINE_STRATEGIES, CARVE_STRATEGIES, kmeans_pp

# small-text 1.4 warns about its own deprecated internals and changed defaults.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:small_text.*"),
    pytest.mark.filterwarnings("ignore:Default distance metric:UserWarning"),
]


class CountingEmbedder:
    """Deterministic stand-in for the transformer: a vector from each text's characters."""

    model = "fake/model"

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)


def test_read_csv_maps_labels_strips_br_and_reads_gzip(tmp_path: Path) -> None:
    body = 'text,label\n"good<br />film",positive\n"bad, bad",negative\n'
    plain = tmp_path / "a.csv"
    plain.write_text(body, encoding="utf-8")
    packed = tmp_path / "a.csv.gz"
    packed.write_bytes(gzip.compress(body.encode()))
    for path in (plain, packed):
        texts, y = read_csv(path)
        assert texts == ["good film", "bad, bad"]
        assert y.tolist() == [1, 0]


def test_read_csv_rejects_a_foreign_header(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("sentence,label\nx,positive\n")
    with pytest.raises(ValueError, match="expected header text,label"):
        read_csv(path)


def test_selection_is_fixed_and_the_mr_split_is_a_partition() -> None:
    pool, test = SPECS["mr"]["pool"], SPECS["mr"]["test"]
    a, b = select(pool, 1000), select(test, 1000)
    assert np.array_equal(a, select(pool, 1000))
    assert len(a) == 800 and len(b) == 200
    assert len(np.intersect1d(a, b)) == 0
    assert len(select(SPECS["sst2"]["pool"], 20_000)) == 10_000


def test_cache_reuses_rows_and_embeds_only_what_changed(tmp_path: Path) -> None:
    embed = CountingEmbedder()
    texts = [f"text {i}" for i in range(10)]
    first = cached_embeddings(texts[:6], "k", tmp_path, embed)  # type: ignore[arg-type]
    assert embed.embedded == texts[:6]
    again = cached_embeddings(texts[:4], "k", tmp_path, embed)  # type: ignore[arg-type]
    assert embed.embedded == texts[:6], "a shorter prefix must come from the cache"
    np.testing.assert_array_equal(again, first[:4])
    longer = cached_embeddings(texts, "k", tmp_path, embed)  # type: ignore[arg-type]
    assert embed.embedded == texts, "only the missing tail is embedded"
    assert longer.shape == (10, 3) and longer.dtype == np.float32
    changed = [*texts[:3], "edited", *texts[4:]]
    out = cached_embeddings(changed, "k", tmp_path, embed)  # type: ignore[arg-type]
    assert embed.embedded[10:] == changed[3:], "rows from the first changed text are redone"
    np.testing.assert_array_equal(out, CountingEmbedder()(changed))


def test_kmeans_pp_picks_distinct_rows_starting_from_the_largest() -> None:
    rng = np.random.default_rng(0)
    G = rng.normal(size=(50, 4))
    G[17] *= 10
    G[30:] = G[0]  # many duplicates of row 0: D² sampling never picks a zero-distance copy
    picks = kmeans_pp(G, 12, rng)
    assert picks[0] == 17
    assert len(set(picks.tolist())) == 12
    assert sum(int(np.allclose(G[p], G[0])) for p in picks) <= 1


def test_badge_gradient_embedding_is_the_last_layer_loss_gradient() -> None:
    from small_text.data.datasets import SklearnDataset

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    y = (X[:, 0] > 0).astype(np.int64)
    model = Baseline("logreg", 0)
    model.fit(SklearnDataset(X, y, target_labels=np.arange(2)))
    G = model.gradient_embedding(X[:3])
    assert G.shape == (3, 2 * 6)
    p = model.proba(X[:3])
    for i in range(3):
        h = np.append(X[i], 1.0)
        expected = np.concatenate([(p[i, k] - (k == p[i].argmax())) * h for k in range(2)])
        np.testing.assert_allclose(G[i], expected)


def blobs(n: int, seed: int) -> Part:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 6)) * 0.6
    X[:, 0] += np.where(y == 1, 1.5, -1.5)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Part([f"t{i}" for i in range(n)], y.astype(np.int64), X.astype(np.float32))


TINY = Dataset("tiny", blobs(150, 0), {"test": blobs(80, 1)})


@pytest.mark.parametrize(
    ("strategy", "model"),
    [(s, m) for s in BASELINE_STRATEGIES for m in ("logreg", "mlp")]
    + [(s, "logregcv") for s in ("entropy", "breaking_ties")]
    + [(s, "carve") for s in CARVE_STRATEGIES],
)
def test_every_strategy_runs_the_protocol(strategy: str, model: str) -> None:
    job = Job("tiny", strategy, model, seed=3, budget=24, step=6)
    rows = run(job, TINY)
    assert [r["labels"] for r in rows] == [6, 12, 18, 24]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert all(r["fit_s"] >= 0 for r in rows)
    assert np.isnan(rows[-1]["query_s"]) and not np.isnan(rows[0]["query_s"])
    if strategy in ("random", "carve"):
        assert rows[-1]["accuracy"] >= 0.8, "separable blobs: 24 labels must do better than this"


def test_cv_logistic_regression_chooses_c_on_the_labels() -> None:
    from bench.al.models import CV_GRID, CVLogisticRegression

    part = blobs(60, 4)
    model = CVLogisticRegression(max_iter=1000).fit(part.X, part.y)
    assert model.C in CV_GRID
    assert np.mean(model.predict(part.X) == part.y) >= 0.9
    one_each = CVLogisticRegression().fit(part.X[:2], np.array([0, 1]))
    assert one_each.C == 1.0  # a class with one label: no folds, C stays 1


def blobs3(n: int, seed: int) -> Part:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    X = centres[y] + rng.normal(size=(n, 4)) * 0.5
    return Part([f"t{i}" for i in range(n)], y.astype(np.int64), X.astype(np.float32))


@pytest.mark.parametrize(("strategy", "model"), [("carve", "carve"), ("entropy", "logregcv")])
def test_a_multi_class_dataset_runs_the_protocol(strategy: str, model: str) -> None:
    data = Dataset("tiny3", blobs3(150, 0), {"test": blobs3(90, 1)})
    rows = run(Job("tiny3", strategy, model, seed=1, budget=27, step=6), data)
    assert [r["labels"] for r in rows] == [9, 15, 21, 27]  # 3 per class to start
    assert rows[-1]["accuracy"] >= 0.8


def test_flipped_labels_are_seeded_and_change_the_class() -> None:
    from bench.al.run import flipped_labels

    y = np.arange(200) % 3
    noisy, mask = flipped_labels(y, 0.15, seed=1, n_classes=3)
    assert mask.sum() == 30 and np.all(noisy[mask] != y[mask]) and np.all(noisy[~mask] == y[~mask])
    again, mask2 = flipped_labels(y, 0.15, seed=1, n_classes=3)
    assert np.array_equal(again, noisy) and np.array_equal(mask, mask2)


def test_a_noisy_carve_run_reports_how_many_flips_it_was_given_and_its_suspect_precision() -> None:
    job = Job(
        "tiny", "carve", "carve", seed=3, budget=120, step=30, label="carve-flip15", flip=0.15
    )
    rows = run(job, TINY)
    last = rows[-1]
    assert last["strategy"] == "carve-flip15" and last["labels"] == 120
    assert 5 <= last["flipped"] <= 35  # ~15% of 120
    # Separable blobs: the flipped labels are what the soft centre gets wrong.
    assert last["suspect_precision"] >= 0.5
    clean = run(Job("tiny", "entropy", "logreg", seed=3, budget=60, step=30), TINY)
    assert clean[-1]["flipped"] == 0 and np.isnan(clean[-1]["suspect_precision"])


def test_carve_model_adds_only_new_labels_and_the_run_is_reproducible() -> None:
    job = Job("tiny", "carve", "carve", seed=2, budget=18, step=6)
    first = [(r["labels"], r["accuracy"]) for r in run(job, TINY)]
    assert first == [(r["labels"], r["accuracy"]) for r in run(job, TINY)]
    import learner

    m = CarveModel(learner.LearnerConfig(seed=0))
    m.start(TINY.pool.X)
    m.fit(TINY.pool.X[:6], TINY.pool.y[:6])
    m.fit(TINY.pool.X[:10], TINY.pool.y[:10])
    assert m.state is not None and m.state.n_labels == 10
    assert m.statuses == ["optimal", "optimal"]


def test_initial_labels_take_per_class_items() -> None:
    y = np.array([0] * 20 + [1] * 20)
    idx = initial_labels(y, 5, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 10 and np.bincount(y[idx]).tolist() == [5, 5]


def rows_for(strategy: str, accs: dict[int, list[float]]) -> list[dict[str, object]]:
    return [
        {
            "dataset": "d",
            "strategy": strategy,
            "seed": s,
            "labels": n,
            "split": "test",
            "accuracy": a,
            "fit_s": 0.1,
            "query_s": 0.2,
        }
        for n, vals in accs.items()
        for s, a in enumerate(vals)
    ]


def test_verdict_counts_cells_against_the_best_baseline() -> None:
    rows = (
        rows_for("carve", {10: [0.9, 0.9], 50: [0.8, 0.8], 60: [0.7, 0.9]})
        + rows_for("random-logreg", {10: [0.5, 0.5], 50: [0.7, 0.7], 60: [0.85, 0.85]})
        + rows_for("entropy-mlp", {10: [0.5, 0.5], 50: [0.79, 0.79], 60: [0.6, 0.6]})
    )
    lines, wins, cells = report.verdict(rows)
    assert (wins, cells) == (1, 2)
    # Noisy-label rows are no baselines; the mean difference is over the verdict's budgets.
    noisy = rows + rows_for("entropy-logreg-flip15", {50: [0.95, 0.95], 60: [0.95, 0.95]})
    assert report.verdict(noisy)[1:] == (1, 2)
    assert report.mean_differences(rows) == [
        "d: carve - best baseline, mean over 2 budgets >= 50: -2.00 pp"
    ]
    assert report.summary_lines(rows)[0] == "carve wins 1 of 2 dataset-budget cells"
    assert lines == [
        "d budget=50: carve=0.8000 best_baseline=0.7900 (entropy-mlp)",
        "d budget=60: carve=0.8000 best_baseline=0.8500 (random-logreg)",
    ]
    assert report.labels_to_reach({10: [0.5], 50: [0.8], 60: [0.9]}, 0.79) == 50
    assert report.labels_to_reach({10: [0.5]}, 0.79) is None
    doc = report.markdown(
        rows, [{"dataset": "d", "model": "logreg", "split": "test", "accuracy": 0.9}], "# T\n", "p"
    )
    assert "carve wins 1 of 2 dataset-budget cells" in doc
    assert "| **carve** | 0.900 ± 0.000 | 0.800 ± 0.000 |" in doc


@pytest.mark.parametrize(
    ("settings", "served"),
    [({"diversity": 0.0, "query_strategy": "margin"}, "center"), ({}, "logreg")],
)
def test_carve_variants_of_the_tuning_sweep_run(settings: dict[str, object], served: str) -> None:
    job = Job("tiny", "carve", "carve", seed=1, budget=18, step=6, settings=settings, served=served)
    rows = run(job, TINY)
    assert [r["labels"] for r in rows] == [6, 12, 18]
    assert rows[-1]["accuracy"] >= 0.8


def test_query_settings_reach_the_learner_and_not_the_config() -> None:
    from bench.al.run import make_model

    job = Job("tiny", "carve", "carve", 0, settings={"n_gates": 8, "diversity": 0.0})
    model = make_model(job, 6)
    assert isinstance(model, CarveModel)
    assert model.config.n_gates == 8 and model.query_kw == {"diversity": 0.0}


def test_publish_writes_report_and_plots_from_the_csv_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from bench.al import __main__ as al
    from bench.al.run import ceilings

    rows = []
    for strategy, model in (("carve", "carve"), ("random", "logreg"), ("entropy", "mlp")):
        rows += run(Job("tiny", strategy, model, seed=0, budget=60, step=10), TINY)
    al.write_rows(tmp_path / "bench-al-quick.csv", rows)
    al.write_rows(tmp_path / "bench-al-quick-ceilings.csv", ceilings(TINY))
    meta = {
        "seeds": 1,
        "budget": 60,
        "scale": 0.3,
        "jobs": 1,
        "model": "m",
        "minutes": 0.1,
        "machine": "test",
    }
    (tmp_path / "bench-al-quick-meta.json").write_text(json.dumps(meta))
    al.publish(tmp_path, "bench-al-quick", True, al.read_rows(tmp_path / "bench-al-quick.csv"))
    out = capsys.readouterr().out
    assert "tiny budget=50: carve=" in out and "tiny budget=60: carve=" in out
    assert "carve wins" in out and "of 2 dataset-budget cells" in out
    doc = (tmp_path / "bench-al-quick.md").read_text()
    assert "## tiny" in doc and "| random-logreg |" in doc and "cut to 30%" in doc
    for ext in ("png", "svg"):
        assert (tmp_path / f"bench-al-quick-tiny.{ext}").stat().st_size > 1000


def test_the_noise_section_lists_the_flip_rows_with_their_suspect_precision() -> None:
    rows = rows_for("carve", {50: [0.8, 0.8]}) + rows_for("carve-flip15", {50: [0.7, 0.74]})
    for r in rows:
        r["suspect_precision"] = 0.6 if r["strategy"] == "carve-flip15" else float("nan")
    text = report.noise_section(rows)
    assert "| carve-flip15 | 0.720 | 0.60 |" in text
    assert "| carve | 0.800 | – |" in text
    assert report.noise_section(rows_for("carve", {50: [0.8]})) == ""


def test_rows_with_different_keys_are_written_with_every_column(tmp_path: Path) -> None:
    from bench._common import read_rows, write_rows

    path = write_rows(tmp_path / "r.csv", [{"a": 1}, {"a": 2, "b": 3}])
    assert read_rows(path) == [{"a": "1", "b": ""}, {"a": "2", "b": "3"}]


def test_fast_entropy_scores_like_small_texts_per_row_entropy() -> None:
    from scipy.stats import entropy

    from bench.al.strategies import FastPredictionEntropy

    class Fixed:
        def predict_proba(self, data: np.ndarray) -> np.ndarray:
            return data

    proba = np.random.default_rng(0).dirichlet(np.ones(4), size=300)
    proba[0] = [1.0, 0.0, 0.0, 0.0]  # a zero probability counts as 0 log 0 = 0
    want = np.apply_along_axis(lambda p: entropy(p), 1, proba)
    got = FastPredictionEntropy().get_confidence(Fixed(), proba, None, None, None)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_compare_served_run_scores_centre_convex_and_ensemble_at_the_checkpoints() -> None:
    from bench.al import run as run_mod

    job = Job("tiny", "carve", "carve", seed=1, budget=100, step=10, compare_served=True)
    rows = run(job, TINY)
    scored = [r for r in rows if "acc_convex" in r]
    assert [r["labels"] for r in scored] == [n for n in run_mod.SERVED_AT if n <= 100]
    last = scored[-1]
    assert last["acc_centre"] == last["accuracy"]  # the rows score the centre
    assert min(last["acc_convex"], last["acc_ensemble"]) >= 0.8  # separable blobs
    text = report.served_section(rows)
    assert f"| tiny | test | 100 | {last['acc_centre']:.3f} | {last['acc_convex']:.3f} |" in text
    assert report.served_section(rows_for("carve", {50: [0.8]})) == ""
    # Only the default row's comparison is reported.
    assert report.served_section([{**r, "strategy": "carve-soft"} for r in rows]) == ""


def _last_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[dict],
    ceilings: list[dict],
    load: Any,
    ceiling_of: Any,
) -> Any:
    """A fake previous full run in ``tmp_path`` (rows, ceilings, meta) and bench.al patched to
    rerun rows on tiny data without embedding or publishing; returns bench.al.__main__."""
    import json

    from bench.al import __main__ as al

    al.write_rows(tmp_path / "bench-al.csv", rows)
    al.write_rows(tmp_path / "bench-al-ceilings.csv", ceilings)
    meta = {"seeds": 1, "budget": 20, "scale": 1.0, "jobs": 1, "model": "m", "minutes": 1.0}
    (tmp_path / "bench-al-meta.json").write_text(json.dumps({**meta, "machine": "t"}))
    monkeypatch.setattr(al, "load", load)
    monkeypatch.setattr(al, "ceilings", ceiling_of)
    monkeypatch.setattr(al, "publish", lambda *a: None)
    monkeypatch.setattr(al, "Embedder", lambda model: None)
    return al


def test_rows_rerun_replaces_only_the_named_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import sys

    old = rows_for("carve", {50: [0.5]}) + rows_for("random-logreg", {50: [0.6]})
    for r in old:
        r["dataset"], r["split"] = "tiny", "test"
    al = _last_run(tmp_path, monkeypatch, old, [], lambda *a, **k: TINY, lambda d: [])
    argv = ["bench.al", "--datasets", "tiny", "--seeds", "1", "--budget", "20", "--jobs", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path), "--rows", "carve"])
    al.main()
    rows = al.read_rows(tmp_path / "bench-al.csv")
    assert {r["strategy"] for r in rows} == {"carve", "random-logreg"}
    assert [r["accuracy"] for r in rows if r["strategy"] == "random-logreg"] == ["0.6"]
    assert [int(r["labels"]) for r in rows if r["strategy"] == "carve"] == [10, 20]
    meta = json.loads((tmp_path / "bench-al-meta.json").read_text())
    assert meta["parts"] == {"tiny rows carve": meta["minutes"]}
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path), "--rows", "nope"])
    with pytest.raises(SystemExit, match="no such row nope"):
        al.main()


def test_rows_rerun_keeps_one_ceiling_per_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A row that runs on only some of --datasets (the binary-only reference rule) must not
    # append new ceilings for the others next to their old ones.
    import sys

    tiny2 = Dataset("tiny2", blobs(150, 2), {"test": blobs(80, 3)})
    old = []
    for ds in ("tiny", "tiny2"):
        for r in rows_for("carve", {50: [0.5]}) + rows_for("carve_extremes", {50: [0.6]}):
            r["dataset"], r["split"] = ds, "test"
            old.append(r)
    ceil = [
        {"dataset": d, "model": "logreg", "split": "test", "accuracy": 0.9}
        for d in ("tiny", "tiny2")
    ]
    al = _last_run(
        tmp_path,
        monkeypatch,
        old,
        ceil,
        lambda name, *a, **k: TINY if name == "tiny" else tiny2,
        lambda d: [{"dataset": d.name, "model": "logreg", "split": "test", "accuracy": 0.8}],
    )
    monkeypatch.setattr(al, "MULTICLASS", frozenset({"tiny2"}))  # no carve_extremes row there
    argv = ["bench.al", "--datasets", "tiny,tiny2", "--seeds", "1", "--budget", "20", "--jobs", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path), "--rows", "carve_extremes"])
    al.main()
    ceilings = al.read_rows(tmp_path / "bench-al-ceilings.csv")
    assert sorted((c["dataset"], c["accuracy"]) for c in ceilings) == [
        ("tiny", "0.8"),
        ("tiny2", "0.9"),
    ]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path), "--rows", ","])
    with pytest.raises(SystemExit, match="at least one row"):
        al.main()
