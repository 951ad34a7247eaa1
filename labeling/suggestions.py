"""The model's suggestion on the labeling card (docs/platform.md, "Suggestions").

The learner stores, for every queued item, the centre network's predicted class, its
calibrated probability (docs/learner.md, "Calibration") and why the item was queued
(``LearnerSnapshot.suggestions``, written by :mod:`labeling.campaign_learner`). Items outside
the queue fall back to the served model version's prediction (``Item.predicted``,
``Item.confidence``, written when a version finishes). ``Campaign.show_suggestions`` decides
where it is shown: never, everywhere, or (the default) everywhere except gold and evaluation
items, which measure the annotators and the model and must not be anchored.
"""

from __future__ import annotations

from dataclasses import dataclass

from labeling.models import Campaign, Item, LearnerSnapshot

#: What each reason code of :mod:`learner.suggest` means to an annotator.
REASONS = {
    "unsure": "the model is unsure",
    "new": "new region of the data",
    "informative": "the model wants to check its guess",
    "learning": "the model is still learning",
    "model": "from the latest trained model",
}


@dataclass(frozen=True)
class Suggestion:
    """What the card shows: "Model suggests: <label> · <percent>%", and why."""

    label: str
    percent: int | None  # calibrated probability of ``label``, in percent (None: not yet)
    reason: str  # a key of REASONS
    explanation: str  # the reason in plain words

    @property
    def text(self) -> str:
        """The whole suggestion in one line, for screen readers and tests."""
        share = f" · {self.percent}%" if self.percent is not None else ""
        return f"Model suggests: {self.label}{share} ({self.explanation})"


def shown_on(campaign: Campaign, item: Item) -> bool:
    """Whether ``campaign.show_suggestions`` allows a suggestion on ``item``."""
    mode = campaign.show_suggestions
    if mode == Campaign.Suggestions.OFF:
        return False
    if mode == Campaign.Suggestions.ALL:
        return True
    return not item.gold and not item.evaluation


def for_item(campaign: Campaign, item: Item, snapshot: LearnerSnapshot | None) -> Suggestion | None:
    """The suggestion to show on ``item``'s card, or None (not allowed here, or none known)."""
    if not shown_on(campaign, item):
        return None
    labels = campaign.labels
    stored = (snapshot.suggestions or {}).get(str(item.pk)) if snapshot is not None else None
    if isinstance(stored, list) and len(stored) == 3 and 0 <= int(stored[0]) < len(labels):
        cls, probability, reason = int(stored[0]), stored[1], str(stored[2])
    elif item.predicted is not None and item.predicted < len(labels):
        cls, probability, reason = item.predicted, item.confidence, "model"
    else:
        return None
    percent = None if probability is None else round(100 * float(probability))
    explanation = REASONS.get(reason, REASONS["informative"])
    if reason == "unsure" and percent is not None:
        explanation = f"{explanation}: {percent}% {labels[cls]}"
    return Suggestion(labels[cls], percent, reason, explanation)


def for_served(campaign: Campaign, item: Item) -> Suggestion | None:
    """:func:`for_item` with the campaign's stored learner (one query, only when allowed)."""
    if not shown_on(campaign, item):
        return None
    snapshot = LearnerSnapshot.objects.filter(campaign=campaign).only("suggestions").first()
    return for_item(campaign, item, snapshot)
