#!/usr/bin/env bash
# The main job on the embedded default store: install, ingest data/sample, answer a question,
# then open the chat UI (Ctrl-C to stop it; DEMO_UI=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ingest data/sample
.venv/bin/python -m rag stats
.venv/bin/python -m rag ask "How much does the Acme Widget weigh?"
if [ "${DEMO_UI:-1}" = 1 ] && [ -f ui/app.py ]; then
  exec .venv/bin/python -m streamlit run ui/app.py --server.address 127.0.0.1 --server.headless true
fi
