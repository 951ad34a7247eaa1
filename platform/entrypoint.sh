#!/bin/sh
# Container entrypoint: wait for the database, migrate (web role only), then run the command.
#   CARVE_ROLE     web (default) runs `migrate`; worker (or anything else) does not
#   DB_WAIT_SECONDS  how long to wait for PostgreSQL before giving up (default 60)
set -eu

if [ "${DB_ENGINE:-sqlite}" = "postgres" ]; then
    # Connect with Django's own settings (host, port, password or DB_PASSWORD_FILE), so
    # "ready" means the server accepts this login, not merely that its port is open.
    python - <<'PY'
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.db import OperationalError, connection

deadline = time.monotonic() + int(os.environ.get("DB_WAIT_SECONDS", "60"))
while True:
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"entrypoint: database not reachable: {exc}")
        print("entrypoint: waiting for the database ...", file=sys.stderr, flush=True)
        time.sleep(1)
    else:
        connection.close()
        break
PY
fi

if [ "${CARVE_ROLE:-web}" = "web" ]; then
    # One web container migrates; scale the web service only after this has run.
    python manage.py migrate --noinput
fi

exec "$@"
