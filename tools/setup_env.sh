#!/usr/bin/env bash
# Build (once) the pinned environment this project runs in, then this checkout's own layer on it.
#
#   bash tools/setup_env.sh          # prints this checkout's python on its last line
#   source .venv/bin/activate        # then: a shell with xtuner, maskdpo-xtuner, pytest, ...
#
# Two parts:
# 1. The shared environment (~9 GB): requirements.txt, -override, -test (and -gpu with a GPU),
#    outside the checkout, keyed by a hash of the requirement files and this script, so a
#    second checkout (or CI) reuses it and a change of pins builds a fresh one. No checkout is
#    installed into it. MASKDPO_VENV chooses its folder.
# 2. This checkout's layer, CHECKOUT/.venv (a few MB, rebuilt in seconds): a venv that sees the
#    shared packages and has this checkout installed (editable) and the shared console scripts
#    (xtuner, torchrun, pytest, ...) pointed at its own python. Each checkout thus runs its
#    own code, whichever checkout set up last: `xtuner train`, tools/*.py and
#    `python -m xtuner.tools.train` all import the maskdpo_xtuner of the checkout whose
#    .venv/bin/python (or activated .venv) runs them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GPU=$(nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)  # flash-attn only with a GPU
HASH=$( (cat "$ROOT/requirements.txt" "$ROOT/requirements-override.txt" \
        "$ROOT/requirements-test.txt" "$ROOT/requirements-gpu.txt" "$ROOT/tools/setup_env.sh"; \
        echo "$GPU") | sha256sum | cut -c1-12)
VENV=${MASKDPO_VENV:-$HOME/.cache/maskdpo-xtuner/venv-$HASH}
PY=${PYTHON:-python3}

if [ ! -f "$VENV/.complete" ]; then
  "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10), "Python >= 3.10 is needed"' >&2
  echo "[setup] building the environment in $VENV (first run: several minutes, ~9 GB)" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel >&2
  "$VENV/bin/pip" install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt" >&2
  "$VENV/bin/pip" install --no-deps -r "$ROOT/requirements-override.txt" >&2
  if [ "$GPU" = gpu ]; then
    "$VENV/bin/pip" install --no-build-isolation -r "$ROOT/requirements-gpu.txt" >&2
  else
    echo "[setup] no GPU (nvidia-smi failed): flash-attn (requirements-gpu.txt) not installed" >&2
  fi
  touch "$VENV/.complete"
fi

# ---- this checkout's layer
LAYER="$ROOT/.venv"
SHARED_SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -x "$LAYER/bin/python" ] || [ "$(cat "$LAYER/shared-venv" 2>/dev/null)" != "$VENV" ]; then
  rm -rf "$LAYER"
  "$VENV/bin/python" -m venv --without-pip "$LAYER" >&2
  echo "$VENV" > "$LAYER/shared-venv"
fi
SITE=$("$LAYER/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The shared packages come after this layer's own (so a checkout installed into the shared
# environment by an older version of this script is shadowed by this checkout's install).
echo "import site; site.addsitedir('$SHARED_SITE')" > "$SITE/_maskdpo_shared_env.pth"
"$LAYER/bin/python" -m pip install -q --no-deps --no-build-isolation --no-warn-script-location \
    -e "$ROOT" >&2
# the shared console scripts, run by this layer's python
for f in "$VENV"/bin/*; do
  name=$(basename "$f")
  case "$name" in python*|activate*|Activate*|maskdpo-xtuner) continue ;; esac
  if head -c 200 "$f" 2>/dev/null | head -n 1 | grep -q "^#!$VENV/bin/python"; then
    sed "1s|^#!$VENV/bin/python[0-9.]*|#!$LAYER/bin/python|" "$f" > "$LAYER/bin/$name"
    chmod +x "$LAYER/bin/$name"
  elif [ ! -e "$LAYER/bin/$name" ]; then
    ln -s "$f" "$LAYER/bin/$name"
  fi
done
echo "$LAYER/bin/python"
