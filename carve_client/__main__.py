"""``python -m carve_client``: the ``carve`` command."""

from __future__ import annotations

from carve_client.cli import main

main()
