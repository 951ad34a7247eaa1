#!/bin/sh
# Run a command against a throwaway PostgreSQL cluster: initdb in a temporary directory,
# start it on a free loopback port, export DATABASE_URL, run "$@", then stop and delete it.
#   scripts/with-postgres.sh .venv/bin/python -m pytest tests/labeling
# Uses Debian's postgresql package (installed with apt-get when missing and running as root).
set -eu

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL is not installed; run: sudo apt-get install -y postgresql" >&2
        exit 1
    fi
    echo "Installing PostgreSQL (apt-get install postgresql)..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# PostgreSQL refuses to run as root: use the postgres account the package created.
if [ "$(id -u)" = 0 ]; then as_pg="runuser -u postgres --"; else as_pg=""; fi

dir=$(mktemp -d /tmp/carve-pg.XXXXXX)
chmod 755 "$dir"
[ -n "$as_pg" ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
    $as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

$as_pg "$pgbin/initdb" -D "$dir/data" -U carve -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
$as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (throwaway)" >&2

DATABASE_URL="postgres://carve@127.0.0.1:$port/carve" "$@"
