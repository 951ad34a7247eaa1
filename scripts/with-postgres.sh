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

# The server listens only on a Unix socket in this private directory (mode 700): with trust
# authentication, no other local user can reach it.
dir=$(mktemp -d /tmp/carve-pg.XXXXXX)
chmod 700 "$dir"
if [ -n "$as_pg" ]; then chown postgres "$dir"; fi
port=5432  # names the socket file only; nothing listens on TCP

cleanup() {
    $as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

$as_pg "$pgbin/initdb" -D "$dir/data" -U carve -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
$as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses= -c fsync=off -c full_page_writes=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
# The database DATABASE_URL names (tests create test_carve next to it; benchmarks use it).
$as_pg "$pgbin/createdb" -h "$dir" -p "$port" -U carve carve
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on socket $dir (throwaway)" >&2

# The host part of the URL is the socket directory, percent-encoded.
host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$dir")
# How a fault test stops and starts this server (tests/labeling/test_faults.py).
export CARVE_TEST_PG_CTL="$as_pg $pgbin/pg_ctl -D $dir/data -l $dir/server.log -w -t 60"
export CARVE_TEST_PG_OPTIONS="-p $port -k $dir -c listen_addresses= -c fsync=off -c full_page_writes=off"
DATABASE_URL="postgres://carve@$host:$port/carve" "$@"
