"""`make bench-scale`'s pieces, and its smoke run (``--quick``) on the real stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import scale
from bench._common import read_rows
from labeling.imports.parse import ImportLimits, parse_upload

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_texts_are_distinct_deterministic_and_drawn_from_the_pool() -> None:
    pool = ["a fine film", "a dull film"]
    texts = list(scale.make_texts(500, pool, seed=3))
    assert texts == list(scale.make_texts(500, pool, seed=3))
    assert len(set(texts)) == 500
    assert all(t.rsplit(" #", 1)[0] in pool for t in texts)
    assert texts[7].endswith(" #7")
    generated = list(scale.make_texts(50, [], seed=0, start=100))
    assert generated[0].endswith(" #100") and len(set(generated)) == 50


def test_the_source_texts_come_from_the_shared_data_or_nothing(tmp_path: Path) -> None:
    assert scale.source_texts(tmp_path) == []
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.csv").write_text('text,label\n"good, really",positive\n ,x\n')
    assert scale.source_texts(tmp_path) == ["good, really"]


def test_a_generated_file_imports_every_text_as_it_is() -> None:
    texts = list(scale.make_texts(300, ['say "hi", then\nleave', "plain"], seed=1))
    parsed = parse_upload(scale.csv_file(iter(texts)), "part.csv", scale.LABELS, ImportLimits())
    assert [item.text for item in parsed.items] == texts
    assert (parsed.n_blank, parsed.n_duplicates) == (0, 0)


def test_peak_rss_of_this_process_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = scale.process_tree(os.getpid())
        assert os.getpid() in tree and child.pid in tree
        scale.reset_peak([os.getpid()])
        assert scale.peak_mb([os.getpid()]) >= scale.status_kb(os.getpid(), "VmRSS") / 1024 / 2
        assert scale.status_kb(2**22 + 7, "VmHWM") == 0  # no such process
    finally:
        child.kill()
        child.wait()


def test_figures_are_checked_against_their_targets(capsys: pytest.CaptureFixture[str]) -> None:
    figures = scale.Figures()
    figures.add(10, "import_items_per_s", 25_000.0, "items/s")
    figures.add(10, "next_item_p95_ms", 150.0, "ms")
    figures.add(10, "page_total_ms[dashboard]", 20.0, "ms")
    figures.add(10, "page_ttfb_ms[export_csv]", 900.0, "ms")
    figures.add(10, "db_total_mb", 3.0, "MiB")
    met = {r["figure"]: r["met"] for r in figures.rows}
    assert met == {
        "import_items_per_s": "met",
        "next_item_p95_ms": "MISSED",
        "page_total_ms[dashboard]": "met",
        "page_ttfb_ms[export_csv]": "",
        "db_total_mb": "",
    }
    assert [r["figure"] for r in figures.missed()] == ["next_item_p95_ms"]
    assert "next_item_p95_ms" in capsys.readouterr().out


def test_size_deltas_keep_what_grew() -> None:
    before = {"(database)": 10 << 20, "labeling_item": 1 << 20, "labeling_label": 0}
    after = {"(database)": 30 << 20, "labeling_item": 1 << 20, "labeling_label": 5 << 20}
    assert scale._size_deltas(before, after) == {
        "(database)": (10 << 20, 30 << 20),
        "labeling_label": (0, 5 << 20),
    }


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_the_quick_run_measures_every_figure(tmp_path: Path) -> None:
    """The whole benchmark at N = 5,000 on its own stack (SQLite, or PostgreSQL when
    DATABASE_URL names it): every phase runs and writes its figures. Whether the targets are
    met is the benchmark's report (exit status 1), not this test's business."""
    out = tmp_path / "scale.csv"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    run = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick", "--csv", str(out)],
        cwd=REPO_ROOT,
        env={**env, "OPENBLAS_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    figures = {row["figure"] for row in read_rows(out)}
    for name in (
        "import_items_per_s",
        "import_worker_peak_rss_mb",
        "embed_fake_items_per_s",
        "embed_resume_after_kill_s",
        "update_wall_s",
        "update_peak_rss_mb",
        "update_rebuild_wall_s",
        "next_item_p95_ms",
        "page_total_ms[dashboard]",
        "page_total_ms[metrics]",
        "page_total_ms[items_last_page]",
        "export_rows_per_s",
        "db_total_mb",
    ):
        assert name in figures, name
