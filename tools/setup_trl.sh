#!/usr/bin/env bash
# Build (once) a venv with the current TRL, for the TRL arm of tools/bench_train.py, and print
# its python.
#
#   bash tools/setup_trl.sh          # prints the environment's python on its last line
#   bash tools/setup_trl.sh --find   # prints it only if already built (else exit 3, builds nothing)
#
# TRL 1.x needs transformers 5, which cannot share a venv with the training stack's 4.48 (the
# training venv holds TRL 0.17.0 instead: requirements-bench.txt). The venv lives outside the
# checkout, keyed by a hash of requirements-trl.txt and this script (like tools/setup_vllm.sh);
# MASKDPO_TRL_VENV chooses the folder, TRL_PYTHON the interpreter that creates it. About 2
# minutes and 1.5 GB the first time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HASH=$(cat "$ROOT/requirements-trl.txt" "$ROOT/tools/setup_trl.sh" | sha256sum | cut -c1-12)
VENV=${MASKDPO_TRL_VENV:-$HOME/.cache/maskdpo-xtuner/trl-$HASH}
PY=${TRL_PYTHON:-python3}

if [ "${1:-}" = --find ]; then
  [ -f "$VENV/.complete" ] || { echo "[setup_trl] not built: $VENV" >&2; exit 3; }
elif [ ! -f "$VENV/.complete" ]; then
  "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10), "TRL 1.x needs Python >= 3.10"' >&2
  echo "[setup_trl] building the TRL environment in $VENV (first run: ~2 minutes, ~1.5 GB)" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel >&2
  "$VENV/bin/pip" install -r "$ROOT/requirements-trl.txt" >&2
  "$VENV/bin/python" -c 'import trl, transformers, torch' >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
