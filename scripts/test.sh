#!/usr/bin/env bash
# Set up everything and run the default test suite (what CI runs).
#
#   bash scripts/test.sh                 # all default tests
#   bash scripts/test.sh -k contract -rA # any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/pg.sh start >/dev/null           # PostgreSQL + pgvector on 127.0.0.1 for the store tests
trap 'bash scripts/pg.sh stop >/dev/null 2>&1 || true' EXIT
.venv/bin/python -m pytest -p no:cacheprovider "$@"
