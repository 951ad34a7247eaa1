"""The README's learner example runs as written (so the README stays true)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_learner_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    learner = README.read_text().split("\n## Learner", 1)
    assert len(learner) == 2, "README has no Learner section"
    blocks = re.findall(r"```python\n(.*?)```", learner[1], flags=re.S)
    assert blocks, "README's Learner section has no python example"
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((300, 384))
    np.save(tmp_path / "embeddings.npy", pool / np.linalg.norm(pool, axis=1, keepdims=True))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}

    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102

    result = namespace["result"]
    net = namespace["net"]
    assert result.success  # type: ignore[attr-defined]
    assert net.predict(pool).shape == (300,)  # type: ignore[attr-defined]
