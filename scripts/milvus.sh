#!/usr/bin/env bash
# A Milvus server on 127.0.0.1 for ragtune's milvus:// store, from the installed milvus-lite
# (`python -m milvus_lite server`, pure Python, gRPC): several processes (or machines through a
# tunnel) can share one index, which a milvus://./file.db cannot (one process holds its lock).
#
#   scripts/milvus.sh start [PORT]    # start (idempotent); prints the store URI
#   scripts/milvus.sh status [PORT]   # exit 0 and print the URI when running, 1 when not
#   scripts/milvus.sh stop [PORT]
#
# Environment:
#   RAGTUNE_MILVUS_DIR   data, log and pid folder   (default /tmp/ragtune-milvus; one subfolder per port)
#   RAGTUNE_MILVUS_PORT  TCP port on 127.0.0.1      (default 19531; the PORT argument wins)
#   RAGTUNE_PYTHON       python that has milvus_lite (default: .venv/bin/python of this repo, else python3)
#
# No authentication: a development/test server bound to 127.0.0.1 only. For production use a
# Milvus standalone or distributed server (docs/scale.md).
set -euo pipefail

PORT="${2:-${RAGTUNE_MILVUS_PORT:-19531}}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "milvus.sh: PORT must be a number, got '$PORT'" >&2; exit 2; }
DIR="${RAGTUNE_MILVUS_DIR:-/tmp/ragtune-milvus}/$PORT"
PID="$DIR/server.pid"
LOG="$DIR/server.log"
URI="milvus://127.0.0.1:$PORT"
START_TIMEOUT_S=60
SERVE='import signal, sys
def _stop(*_): raise KeyboardInterrupt
signal.signal(signal.SIGTERM, _stop)
from milvus_lite.cmdline import main
sys.exit(main(sys.argv[1:]))'

die() { echo "milvus.sh: $*" >&2; exit 1; }

find_python() {
    local repo
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    PY="${RAGTUNE_PYTHON:-}"
    if [[ -z "$PY" ]]; then
        if [[ -x "$repo/.venv/bin/python" ]]; then PY="$repo/.venv/bin/python"; else PY="python3"; fi
    fi
    "$PY" -c 'import milvus_lite.adapter.grpc.server' 2>/dev/null || \
        die "milvus-lite (with its server) not found: pip install 'ragtune[milvus]' (python: $PY), or set RAGTUNE_PYTHON"
}

pid_alive() { [[ -f "$PID" ]] && kill -0 "$(cat "$PID")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
running() { pid_alive && port_open; }

start() {
    if running; then echo "$URI"; return 0; fi
    if pid_alive; then die "server pid $(cat "$PID") is alive but port $PORT does not answer, see $LOG"; fi
    port_open && die "port $PORT is taken by another program: pick another PORT"
    find_python
    mkdir -p "$DIR"
    # Own session, so it outlives this shell. The server shuts down cleanly (drains requests, closes
    # the data folder) on KeyboardInterrupt only, and a background job ignores SIGINT: map SIGTERM to it.
    setsid "$PY" -u -c "$SERVE" server --data-dir "$DIR/data" --host 127.0.0.1 --port "$PORT" \
        >"$LOG" 2>&1 </dev/null &
    echo $! >"$PID"
    local waited=0
    until port_open; do
        if ! pid_alive; then rm -f "$PID"; die "the server exited, see $LOG: $(tail -n 3 "$LOG" | tr '\n' ' ')"; fi
        if (( waited >= START_TIMEOUT_S * 5 )); then die "no answer on port $PORT after ${START_TIMEOUT_S}s, see $LOG"; fi
        sleep 0.2
        waited=$((waited + 1))
    done
    echo "$URI"
}

stop() {
    if ! pid_alive; then echo "not running ($DIR)" >&2; rm -f "$PID"; return 0; fi
    local pid
    pid="$(cat "$PID")"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi  # the write-ahead log keeps what was acknowledged
    rm -f "$PID"
    echo "stopped ($DIR)" >&2
}

status() {
    if running; then echo "$URI"; else echo "not running ($DIR)" >&2; return 1; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status [PORT]" >&2; exit 2 ;;
esac
