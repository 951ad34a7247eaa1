#!/bin/sh
# Container entrypoint: wait for the database, migrate (web role only), then run the command.
#   CARVE_ROLE       web (default): wait for the database, then `migrate`
#                    worker: wait for the database only
#                    flower: neither (it talks to the broker, never to the database)
#   DB_WAIT_SECONDS  how long to wait for the database before giving up (default 60)
set -eu

role="${CARVE_ROLE:-web}"
wait_seconds="${DB_WAIT_SECONDS:-60}"
case "$wait_seconds" in
    '' | *[!0-9]*)
        echo "entrypoint: DB_WAIT_SECONDS must be a whole number of seconds, got '$wait_seconds'" >&2
        exit 2
        ;;
esac

if [ "$role" != "flower" ]; then
    # Connect through Django's own settings (DATABASE_URL or DATABASE_URL_FILE), so "ready"
    # means the server accepts this login, not merely that its port is open. With SQLite this
    # returns at once. A settings error (unparsable DATABASE_URL, ...) stops here, not retried.
    DB_WAIT_SECONDS="$wait_seconds" python - <<'PY'
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.db import OperationalError, connection

deadline = time.monotonic() + int(os.environ["DB_WAIT_SECONDS"])
attempt = 0
while True:
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"entrypoint: database not reachable: {exc}")
        if attempt % 5 == 0:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"entrypoint: waiting for the database ({reason}) ...", file=sys.stderr, flush=True)
        attempt += 1
        time.sleep(1)
    else:
        connection.close()
        break
PY
fi

if [ "$role" = "web" ]; then
    # One web container migrates; scale the web service only after this has run.
    python manage.py migrate --noinput
fi

exec "$@"
