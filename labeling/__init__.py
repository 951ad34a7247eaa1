"""The labeling app: campaigns, items, labels, annotation views, API and training tasks."""

from __future__ import annotations
