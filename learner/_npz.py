"""The ``.npz`` reading shared by the learner's two file formats (a learner state, an exported
network): no pickle, a JSON header with a format name and version, and every sign of a damaged
or foreign file turned into a ``ValueError``."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def load_or_value_error(loader: Callable[[bytes], T], data: bytes, what: str) -> T:
    """Run ``loader(data)``; any sign of a damaged or foreign file becomes a ValueError."""
    try:
        return loader(data)
    except ValueError:
        raise
    except (KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"not a valid {what}: {exc}") from None


def read_header(z: Any, key: str, fmt: str, newest: int, what: str) -> dict[str, Any]:
    """The JSON header ``key`` of an opened npz, checked for format ``fmt`` and a version no
    newer than ``newest``; errors name ``what`` (e.g. "Carve learner state")."""
    if key not in z.files:
        raise ValueError(f"not a {what}: no {key}")
    header: dict[str, Any] = json.loads(str(z[key]))
    if header.get("format") != fmt:
        raise ValueError(f"not a {what}")
    if int(header.get("version", -1)) > newest:
        raise ValueError(f"{what} version {header['version']} is newer than this library")
    return header


def open_npz(data: bytes, what: str) -> Any:
    """np.load on bytes without pickle; any unreadable input is a ValueError naming ``what``."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"not {what}: {exc}") from None
