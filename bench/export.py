"""Time the label export (docs/platform.md, "Label export") in every format on N items,
and the worker side of an export job (docs/platform.md, "Export jobs").

    .venv/bin/python -m bench.export --n 100000
    .venv/bin/python -m bench.export --quick     # 5,000 items, a few cases: under a minute

Builds a SQLite database in a temporary folder (migrations, then one campaign of N items
with three metadata values, a prediction on every item, labels by 20 annotators on a fifth
of the items, two on a quarter of those, and decisions on 500), then exports it once per
format, each in a fresh process (``--measure``): rows/s and the process's peak RSS (VmHWM)
against its RSS before the export, with Django and pyarrow loaded. The job cases run
``labeling.exports.jobs.run_export_job`` as a worker does: the file written to a temporary
file, then stored in the database in CARVE_EXPORT_PART_BYTES parts, the job marked done.
Writes bench/out/export.csv (bench/out/export-quick.csv with --quick). Results in
docs/platform.md, "Label export" and "Export jobs".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (format, rows, items) exported, each in its own process.
CASES = [
    ("csv", "labels", "labeled"),
    ("csv", "items", "all"),
    ("jsonl", "items", "all"),
    ("labelstudio", "items", "all"),
    ("parquet", "items", "all"),
    ("hf", "items", "all"),
]
#: (format, rows, items) run as an export job (the worker's side), each in its own process.
JOB_CASES = [
    ("csv", "items", "all"),
    ("jsonl", "items", "all"),
    ("parquet", "items", "all"),
]
#: --quick: a few cases on a small campaign.
QUICK_N = 5000
QUICK_CASES = [("csv", "labels", "labeled")]
QUICK_JOB_CASES = [("csv", "items", "all"), ("parquet", "items", "all")]


def _setup(folder: Path) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("SECRET_KEY", "bench-only-key")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
    os.environ["CARVE_DATA_DIR"] = str(folder / "data")
    import django

    django.setup()


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build(n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from labeling.models import Campaign, Decision, Item, Label, ModelVersion, Upload, text_key

    call_command("migrate", verbosity=0)
    rng = random.Random(0)
    users = get_user_model().objects
    boss = users.create_user("boss", is_staff=True)
    people = [users.create_user(f"a{i}") for i in range(20)]
    campaign = Campaign.objects.create(name="bench", created_by=boss)
    campaign.annotators.add(*people)
    upload = Upload.objects.create(
        campaign=campaign, filename="bench.csv", uploaded_by=boss, text_column="text",
        n_rows=n, n_created=n, n_blank=0, n_duplicates=0,
    )  # fmt: skip
    words = ["good", "bad", "film", "plot", "actor", "scene", "music", "slow", "great"]
    batch: list[Item] = []
    for i in range(n):
        text = " ".join(rng.choices(words, k=12)) + f" #{i}"
        batch.append(
            Item(
                campaign=campaign, upload=upload, text=text, text_sha256=text_key(text),
                gold=rng.choice(["positive", "negative"]) if i % 10 == 0 else "",
                metadata={"genre": rng.choice(["drama", "comedy"]), "year": 1950 + i % 70,
                          "source": f"site-{i % 13}"},
                position=i, evaluation=i % 1000 == 1, confidence=rng.random(),
                predicted=rng.randrange(2),
            )
        )  # fmt: skip
        if len(batch) == 5000:
            Item.objects.bulk_create(batch)
            batch = []
    Item.objects.bulk_create(batch)
    ids = list(Item.objects.filter(campaign=campaign).values_list("pk", flat=True))
    labeled = ids[: n // 5]
    labels: list[Label] = []
    for k, pk in enumerate(labeled):
        who = rng.sample(people, 2 if k % 4 == 0 else 1)
        for person in who:
            value = rng.choice(["positive", "negative"])
            labels.append(Label(item_id=pk, annotator=person, value=value, comment="ok"))
    Label.objects.bulk_create(labels, batch_size=5000)
    Decision.objects.bulk_create(
        [Decision(item_id=pk, value="positive", decided_by=boss) for pk in labeled[:2000:4]]
    )
    ModelVersion.objects.create(campaign=campaign, number=1, status="done")
    print(f"built: {n} items, {len(labels)} labels", flush=True)


def measure(kind: str, rows: str, items: str, folder: Path) -> dict[str, object]:
    import pyarrow  # noqa: F401  (loaded before the baseline: each format's growth is its own)

    from labeling.exports import arrow, formats
    from labeling.exports import rows as export_rows
    from labeling.models import Campaign

    campaign = Campaign.objects.get()
    base = _status("VmRSS")
    t0 = time.perf_counter()
    plan = export_rows.plan(campaign, labeled_only=items == "labeled")
    out = folder / "data" / f"export.{kind}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("csv", "jsonl", "labelstudio"):
        text = {
            "csv": lambda: formats.as_csv(plan, rows),
            "jsonl": lambda: formats.as_jsonl(plan, rows),
            "labelstudio": lambda: formats.as_labelstudio(plan),
        }[kind]()
        first = None
        with out.open("w", encoding="utf-8") as fh:
            for piece in text:
                if first is None:
                    first = time.perf_counter() - t0
                fh.write(piece)
    elif kind == "parquet":
        arrow.write_parquet(plan, out, rows)
    else:
        arrow.write_hf_folder(plan, folder / "data" / "hf", rows)
        arrow.zip_folder(folder / "data" / "hf", out, "hf")
    seconds = time.perf_counter() - t0
    n_rows = _count(kind, rows, out, folder)
    return {
        "format": kind,
        "rows": rows,
        "items": items,
        "n_rows": n_rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(n_rows / seconds),
        "bytes": out.stat().st_size,
        "rss_before_mib": round(base / 1024, 1),
        "peak_rss_mib": round(_status("VmHWM") / 1024, 1),
        "peak_growth_mib": round((_status("VmHWM") - base) / 1024, 1),
    }


def measure_job(kind: str, rows: str, items: str) -> dict[str, object]:
    """One export job run as a worker runs it, from the claim to the DONE row."""
    import pyarrow  # noqa: F401  (as in measure: the job's growth is its own)

    from labeling.exports import formats
    from labeling.exports import jobs as export_jobs
    from labeling.models import Campaign, ExportJob

    campaign = Campaign.objects.get()
    # The row as start_export makes it, without sending a message (no broker here).
    job = ExportJob.objects.create(
        campaign=campaign, format=kind, rows=rows, items=items,
        filename=formats.export_filename(campaign.pk, kind),
        content_type=formats.EXPORT_FORMATS[kind][0],
    )  # fmt: skip
    base = _status("VmRSS")
    t0 = time.perf_counter()
    outcome = export_jobs.run_export_job(job.pk, "bench")
    seconds = time.perf_counter() - t0
    job.refresh_from_db()
    assert outcome.value == "done", (outcome, job.error)
    return {
        "format": f"job:{kind}",
        "rows": rows,
        "items": items,
        "n_rows": job.n_rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(job.n_rows / seconds),
        "bytes": job.size_bytes,
        "parts": job.parts.count(),
        "rss_before_mib": round(base / 1024, 1),
        "peak_rss_mib": round(_status("VmHWM") / 1024, 1),
        "peak_growth_mib": round((_status("VmHWM") - base) / 1024, 1),
    }


def _count(kind: str, rows: str, out: Path, folder: Path) -> int:
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(out).metadata.num_rows)
    if kind == "hf":
        import pyarrow as pa

        with pa.memory_map(str(folder / "data" / "hf" / "data-00000-of-00001.arrow")) as src:
            return int(pa.ipc.open_stream(src).read_all().num_rows)
    if kind == "labelstudio":
        with out.open(encoding="utf-8") as fh:
            return sum(1 for line in fh if line.startswith("{"))
    with out.open(encoding="utf-8", newline="") as fh:
        if kind == "csv":
            import csv

            return sum(1 for _ in csv.reader(fh)) - 1
        return sum(1 for _ in fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_N:,} items, few cases")
    parser.add_argument("--measure", nargs=4, metavar=("FORMAT", "ROWS", "ITEMS", "FOLDER"))
    parser.add_argument("--job", action="store_true", help="with --measure: as an export job")
    args = parser.parse_args()
    if args.measure:
        kind, rows, items, folder = args.measure
        _setup(Path(folder))
        result = (
            measure_job(kind, rows, items) if args.job else measure(kind, rows, items, Path(folder))
        )
        print(json.dumps(result), flush=True)
        return
    n = QUICK_N if args.quick else args.n
    cases = [(case, False) for case in (QUICK_CASES if args.quick else CASES)]
    cases += [(case, True) for case in (QUICK_JOB_CASES if args.quick else JOB_CASES)]
    from bench._common import machine, write_csv

    with tempfile.TemporaryDirectory(prefix="carve-bench-export-") as tmp:
        folder = Path(tmp)
        _setup(folder)
        build(n)
        results = []
        for (kind, rows, items), job in cases:
            done = subprocess.run(
                [sys.executable, "-m", "bench.export", "--measure", kind, rows, items, tmp]
                + (["--job"] if job else []),
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["n_items"] = n
            result["machine"] = machine()
            print(result, flush=True)
            results.append(result)
        print("wrote", write_csv("export-quick.csv" if args.quick else "export.csv", results))


if __name__ == "__main__":
    main()
