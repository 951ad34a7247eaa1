"""Campaigns and their items: the database is the source of truth for every label."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

DEFAULT_LABELS = ["negative", "positive"]
MIN_LABELS, MAX_LABELS = 2, 20


def default_labels() -> list[str]:
    return list(DEFAULT_LABELS)


def validate_label_set(value: object) -> None:
    """2..20 distinct, non-blank labels (compared ignoring case and surrounding spaces)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("The label set must be a list of strings.")
    cleaned = [v.strip() for v in value]
    if any(not v for v in cleaned):
        raise ValidationError("Labels cannot be blank.")
    if not MIN_LABELS <= len(cleaned) <= MAX_LABELS:
        raise ValidationError(
            f"A campaign needs {MIN_LABELS} to {MAX_LABELS} labels, got {len(cleaned)}."
        )
    lowered = [v.lower() for v in cleaned]
    if len(set(lowered)) != len(lowered):
        raise ValidationError("Labels must be distinct (ignoring case).")


def text_key(text: str) -> str:
    """Fixed-length key of a text, so uniqueness never indexes a long text column."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Campaign(models.Model):
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    labels = models.JSONField(default=default_labels, validators=[validate_label_set])
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="campaigns_created"
    )
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="campaigns"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Upload(models.Model):
    """One accepted dataset file and what the import made of it."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    text_column = models.CharField(max_length=200)
    gold_column = models.CharField(max_length=200, blank=True)
    n_rows = models.PositiveIntegerField()
    n_created = models.PositiveIntegerField()
    n_blank = models.PositiveIntegerField()
    n_duplicates = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.filename} ({self.n_created} items)"


class Item(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    upload = models.ForeignKey(Upload, on_delete=models.PROTECT, related_name="items")
    text = models.TextField()
    text_sha256 = models.CharField(max_length=64, editable=False)
    gold = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Row order of the pool: the embedding matrix's row for this item.
    position = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "text_sha256"], name="item_text_once"),
            models.UniqueConstraint(fields=["campaign", "position"], name="item_position_once"),
        ]
        ordering = ["campaign", "position"]

    def __str__(self) -> str:
        return self.text[:60]
