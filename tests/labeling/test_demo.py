"""`make demo` (python -m labeling.demo): a real run with redis-server, worker and gunicorn."""

from __future__ import annotations

import csv
import http.cookiejar
import io
import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from labeling import demo
from labeling.demo import SAMPLE_CSV, demo_data
from labeling.imports.parse import parse_upload
from tests.support.processes import REPO_ROOT, free_port, wait_for, worker_env


def test_the_sample_csv_is_a_balanced_sentiment_set_that_imports_cleanly() -> None:
    parsed = parse_upload(SAMPLE_CSV.read_bytes(), SAMPLE_CSV.name, ["negative", "positive"])
    golds = [item.gold for item in parsed.items]
    assert len(parsed.items) == 240
    assert (golds.count("negative"), golds.count("positive")) == (120, 120)
    assert (parsed.n_blank, parsed.n_duplicates) == (0, 0)
    assert {item.metadata["topic"] for item in parsed.items} == {
        "movie",
        "book",
        "restaurant",
        "gadget",
        "hotel",
    }


def test_demo_data_prefers_the_users_file(tmp_path: Path) -> None:
    file = tmp_path / "mine.csv"
    file.write_text("text\nhello\n", encoding="utf-8")
    data, name, source = demo_data(str(file))
    assert (data, name) == (b"text\nhello\n", "mine.csv")
    assert source == f"your file {file}"


def test_demo_data_names_a_missing_file() -> None:
    with pytest.raises(RuntimeError, match="DATA=/no/such.csv: no such file"):
        demo_data("/no/such.csv")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ImportError("No module named 'datasets'"), "the datasets library is not installed"),
        (OSError("Name or service not known"), "no network"),
        (ValueError("bad split"), "SST-2 could not be loaded (ValueError: bad split)"),
    ],
)
def test_demo_data_falls_back_to_the_sample_and_says_why(error: Exception, reason: str) -> None:
    def fetch() -> tuple[bytes, str]:
        raise error

    data, name, source = demo_data(None, fetch_sst2=fetch)
    assert (data, name) == (SAMPLE_CSV.read_bytes(), "demo_reviews.csv")
    assert source.startswith("the sample CSV shipped with Carve (")
    assert reason in source


def test_demo_data_uses_sst2_when_it_loads() -> None:
    data, name, source = demo_data(None, fetch_sst2=lambda: (b"text,label\na,positive\n", "s.csv"))
    assert (data, name) == (b"text,label\na,positive\n", "s.csv")
    assert source.startswith("SST-2")


def _login(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    page = opener.open(base + "accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)}
    request = urllib.request.Request(
        base + "accounts/login/",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Referer": base},
    )
    assert opener.open(request, timeout=10).geturl() == base  # redirected to the campaigns
    return opener


def _ignore_sigint() -> None:
    # What a background job of a non-interactive shell inherits: Ctrl-C must still work.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_make_demo_serves_a_campaign_with_finished_embeddings_and_stops_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    data = tmp_path / "reviews.csv"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    for i in range(30):
        writer.writerow([f"demo review {i}", "positive" if i % 2 else "negative"])
    data.write_text(out.getvalue(), encoding="utf-8")
    log = tmp_path / "demo.out"
    env = worker_env(EMBEDDER="fake")
    env.pop("CARVE_DATA_DIR", None)
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labeling.demo",
                "--port",
                str(port),
                "--data",
                str(data),
                "--data-dir",
                str(tmp_path / "var"),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint,
        )
    try:
        wait_for(lambda: "Embeddings ready" in log.read_text(), 180, "the demo", log)
        text = log.read_text()
        base = f"http://127.0.0.1:{port}/"
        assert f"Carve is running at {base}" in text
        assert "Demo data: your file" in text and "30 texts imported" in text
        assert "Embeddings ready: 30 items, 32 dimensions" in text
        creds = json.loads((tmp_path / "var" / "demo-credentials.json").read_text())
        assert re.search(rf"demo-admin / {re.escape(creds['demo-admin'])}", text)

        admin = _login(base, "demo-admin", creds["demo-admin"])
        page = admin.open(base + "campaigns/1/", timeout=10).read().decode()
        assert "Demo: sentiment" in page and 'data-status="done"' in page
        assert "30 / 30 items" in page and "Upload texts" in page
        annotator = _login(base, "demo-annotator", creds["demo-annotator"])
        assert "Demo: sentiment" in annotator.open(base, timeout=10).read().decode()
    finally:
        proc.send_signal(stop_signal)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM stops the demo and what it started
            proc.wait(timeout=60)
            pytest.fail(f"the demo ignored {stop_signal.name}:\n{log.read_text()[-3000:]}")
    assert code == 0
    assert log.read_text().rstrip().endswith("Stopped.")
    with pytest.raises(OSError):  # the web server is gone
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_the_demo_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "labeling.demo",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "var"),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "EMBEDDER": "fake"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"Port {port} is in use; choose another with `make demo PORT=N`." in result.stdout


def test_a_worker_that_exits_is_started_again_and_anything_else_stops_the_demo(
    tmp_path: Path,
) -> None:
    procs = demo.Processes(tmp_path)
    try:
        worker = procs.start(
            "worker", [sys.executable, "-c", "pass"], dict(os.environ), restart=True
        )
        worker.wait(10)
        procs.check()  # started again, not an error
        ((name, again, _),) = procs.children
        assert name == "worker" and again.pid != worker.pid and procs.restarts == {"worker": 1}
        again.wait(10)
        procs.restarts["worker"] = demo.MAX_RESTARTS
        with pytest.raises(demo.DemoError, match="worker exited"):
            procs.check()  # one crash loop too many
        web = procs.start("web", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
        web.wait(10)
        procs.children = [c for c in procs.children if c[0] == "web"]
        with pytest.raises(demo.DemoError, match="web exited with code 3"):
            procs.check()
    finally:
        procs.stop()


@pytest.mark.django_db
def test_the_built_in_data_keeps_one_gold_label_in_ten(campaign: Any) -> None:
    # A fully labeled pool would hide the model's suggestions on every item (gold).
    from labeling.imports.write import import_file

    import_file(campaign, campaign.created_by, SAMPLE_CSV.read_bytes(), SAMPLE_CSV.name)
    assert demo._keep_some_gold(campaign) == 24
    gold = campaign.items.exclude(gold="")
    assert gold.count() == 24 and campaign.items.filter(gold="").count() == 216
    assert set(gold.values_list("gold", flat=True)) <= {"negative", "positive"}
