"""What the API answers, as frozen dataclasses built from its JSON.

Each keeps the fields a script uses by name and the whole answer in ``raw``, so that a field
the server adds later is still reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Job statuses that are still moving (import, embedding and export jobs, model versions).
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Campaign:
    """A campaign (``GET /api/v1/campaigns/{id}/``).

    Attributes
    ----------
    id, name, labels, instructions, created_by, created_at, stopped_at, n_items
        The campaign's fields.
    settings : dict
        Its other settings (learner, overlap, gold rate, annotators, …), as the API names them.
    raw : dict
        The whole answer.
    """

    id: int
    name: str
    labels: list[str]
    instructions: str = ""
    created_by: str = ""
    created_at: str = ""
    stopped_at: str | None = None
    n_items: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Campaign:
        named = (
            "id",
            "name",
            "labels",
            "instructions",
            "created_by",
            "created_at",
            "stopped_at",
            "n_items",
        )
        return cls(
            id=int(data["id"]),
            name=str(data.get("name", "")),
            labels=[str(v) for v in data.get("labels", [])],
            instructions=str(data.get("instructions") or ""),
            created_by=str(data.get("created_by") or ""),
            created_at=str(data.get("created_at") or ""),
            stopped_at=data.get("stopped_at"),
            n_items=int(data.get("n_items") or 0),
            settings={k: v for k, v in data.items() if k not in named},
            raw=data,
        )


@dataclass(frozen=True)
class ImportJob:
    """An import job (``…/imports/{job}/``): ``queued``, ``running``, ``done`` with
    ``result`` (``n_created``, ``n_existing``, …) or ``failed`` with ``errors``/``error``."""

    id: int
    status: str
    url: str
    filename: str = ""
    result: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    error: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_created(self) -> int:
        """Items the import created (0 until it is done)."""
        return int((self.result or {}).get("n_created", 0))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportJob:
        return cls(
            id=int(data["id"]),
            status=str(data["status"]),
            url=str(data.get("url") or ""),
            filename=str(data.get("filename") or ""),
            result=data.get("result"),
            errors=[str(e) for e in data.get("errors") or []],
            error=str(data.get("error") or ""),
            raw=data,
        )


@dataclass(frozen=True)
class EmbeddingStatus:
    """The campaign's embedding job as the metrics report it (``status`` is ``none`` when the
    campaign has no job: no items yet)."""

    status: str
    n_done: int = 0
    n_total: int = 0
    model_name: str = ""
    error: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> EmbeddingStatus:
        if data is None:
            return cls(status="none")
        return cls(
            status=str(data["status"]),
            n_done=int(data.get("n_done") or 0),
            n_total=int(data.get("n_total") or 0),
            model_name=str(data.get("model_name") or ""),
            error=str(data.get("error") or ""),
        )


@dataclass(frozen=True)
class Item:
    """An item leased to the caller by ``next/``."""

    id: int
    text: str
    lease_expires_at: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(
            id=int(data["id"]),
            text=str(data["text"]),
            lease_expires_at=str(data.get("lease_expires_at") or ""),
        )


@dataclass(frozen=True)
class Label:
    """A label as ``labels/`` answers it; ``created`` is False for a repeated submission (the
    first label stands)."""

    id: int
    item: int
    value: str
    comment: str = ""
    created: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Label:
        return cls(
            id=int(data["id"]),
            item=int(data["item"]),
            value=str(data["value"]),
            comment=str(data.get("comment") or ""),
            created=bool(data.get("created", True)),
        )


@dataclass(frozen=True)
class ModelVersion:
    """A model version: ``queued``, ``running``, ``done`` (with ``metrics``) or ``failed``."""

    number: int
    status: str
    n_labels: int = 0
    trigger: str = ""
    chosen: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    embedding_model: str = ""
    error: str = ""
    created_at: str = ""
    finished_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelVersion:
        return cls(
            number=int(data["number"]),
            status=str(data["status"]),
            n_labels=int(data.get("n_labels") or 0),
            trigger=str(data.get("trigger") or ""),
            chosen=str(data.get("chosen") or ""),
            metrics=dict(data.get("metrics") or {}),
            embedding_model=str(data.get("embedding_model") or ""),
            error=str(data.get("error") or ""),
            created_at=str(data.get("created_at") or ""),
            finished_at=data.get("finished_at"),
        )


@dataclass(frozen=True)
class Prediction:
    """One text's prediction: its ``label``, the calibrated ``confidence`` of that label, every
    label's calibrated ``probabilities`` (summing to 1) and the raw ``scores``."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    scores: dict[str, float]
    model_version: int

    @classmethod
    def from_json(cls, data: dict[str, Any], model_version: int) -> Prediction:
        return cls(
            label=str(data["label"]),
            confidence=float(data["confidence"]),
            probabilities={str(k): float(v) for k, v in data["probabilities"].items()},
            scores={str(k): float(v) for k, v in data["scores"].items()},
            model_version=model_version,
        )


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives during a wait or a transfer.

    Attributes
    ----------
    stage : str
        ``import``, ``embedding``, ``training``, ``export`` (a job writing the file) or
        ``download`` (bytes received).
    done : int
        Units done: items, or bytes for ``download``.
    total : int or None
        Units in all, None when unknown (a model version reports no progress).
    status : str
        The job's status (``queued``, ``running``, ``done``), or ``receiving``.
    """

    stage: str
    done: int
    total: int | None
    status: str = ""
