"""gunicorn settings for the Carve web container (gunicorn -c platform/gunicorn.conf.py)."""

from __future__ import annotations

import os

bind = f"0.0.0.0:{int(os.environ.get('PORT', '8000'))}"
# Sync workers; heavy work runs in Celery, so a request never computes for long.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# A worker silent for this long is killed and restarted.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Heartbeat files in memory: overlay filesystems can stall them and trigger false timeouts.
worker_tmp_dir = "/dev/shm"
# Recycle workers now and then to bound slow memory growth.
max_requests = 1000
max_requests_jitter = 100
accesslog = "-"
errorlog = "-"
# No runtime control socket (gunicornc): $HOME is read-only for the container's user.
control_socket_disable = True
