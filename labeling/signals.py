"""The campaign events other parts of the platform react to (webhooks, docs/platform.md,
"Webhooks"). Senders pass ``campaign_id`` and the keyword arguments named below; each is sent
after the transaction that made the event true has committed (``transaction.on_commit``).
"""

from __future__ import annotations

from django.dispatch import Signal

#: Labels were stored: ``campaign_id``, ``item_ids`` (list[int]), ``n_labels`` (int).
items_labeled = Signal()
#: A model version finished training: ``campaign_id``, ``model_version_id``.
model_trained = Signal()
#: The stop rule first says more labels are projected to gain under a point: ``campaign_id``,
#: ``n_labels``, ``estimate`` (dict, as LearnerSnapshot.estimate).
stop_suggested = Signal()
#: An export job finished: ``campaign_id``, ``export_job_id``.
export_ready = Signal()
