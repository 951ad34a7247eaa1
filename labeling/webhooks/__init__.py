"""Per-campaign webhooks (docs/platform.md, "Webhooks").

- :mod:`labeling.webhooks.subscriptions`: the event names, checking a URL, creating a webhook
  with its secret.
- :mod:`labeling.webhooks.delivery`: delivery rows (item.labeled ones coalesced), the signed
  POST a worker sends, retries with backoff, and the sweep that re-sends what looks stuck.
- :mod:`labeling.webhooks.receivers`: the campaign events of :mod:`labeling.signals` turned
  into deliveries (connected when the app loads).
- :mod:`labeling.webhooks.views`: the campaign's Webhooks page.
"""
