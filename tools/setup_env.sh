#!/usr/bin/env bash
# Build (once) the pinned environment this project runs in, then install this checkout into it.
#
#   bash tools/setup_env.sh          # prints the environment's python on its last line
#
# The environment lives outside the checkout, keyed by a hash of the requirement files and this
# script, so a second checkout (or CI) reuses it and any change to the pins builds a fresh one.
# Set MASKDPO_VENV to choose the folder yourself.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GPU=$(nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)  # flash-attn only with a GPU
HASH=$( (cat "$ROOT/requirements.txt" "$ROOT/requirements-override.txt" "$ROOT/tools/setup_env.sh" \
        "$ROOT/requirements-gpu.txt"; echo "$GPU") | sha256sum | cut -c1-12)
VENV=${MASKDPO_VENV:-$HOME/.cache/maskdpo-xtuner/venv-$HASH}
PY=${PYTHON:-python3}

if [ ! -f "$VENV/.complete" ]; then
  "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10), "Python >= 3.10 is needed"' >&2
  echo "[setup] building the environment in $VENV (first run: several minutes, ~9 GB)" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel >&2
  "$VENV/bin/pip" install -r "$ROOT/requirements.txt" >&2
  "$VENV/bin/pip" install --no-deps -r "$ROOT/requirements-override.txt" >&2
  if [ "$GPU" = gpu ]; then
    "$VENV/bin/pip" install --no-build-isolation -r "$ROOT/requirements-gpu.txt" >&2
  else
    echo "[setup] no GPU (nvidia-smi failed): flash-attn (requirements-gpu.txt) not installed" >&2
  fi
  touch "$VENV/.complete"
fi
# Editable install of this checkout (no dependencies: they are all above). Takes a second.
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" >&2
echo "$VENV/bin/python"
