"""learner/ is a pure numerical library: importing it must not pull in the web stack."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "celery", "labeling", "config")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_importing_learner_does_not_import_django() -> None:
    result = _run("import learner, sys; print('django' in sys.modules)")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_no_learner_module_imports_the_web_stack() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, json, pkgutil, sys
        import learner
        names = [m.name for m in pkgutil.walk_packages(learner.__path__, prefix="learner.")]
        for name in names:
            importlib.import_module(name)
        leaked = sorted({{m.partition(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
        print(json.dumps({{"modules": names, "leaked": leaked}}))
        """
    )
    result = _run(code)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"], "learner/ has no submodules to check"
    assert report["leaked"] == [], f"learner imported {report['leaked']}"
