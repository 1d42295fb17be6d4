# Mask-DPO on SmolLM2-135M-Instruct on a CPU: the paper's 8B config with only the model, the
# per-device batch / accumulation and the CPU's needs changed. The training step of
# tools/real_run.py (real countries, exact labels, docs/real_model.md).
#
#   python tools/build_smollm2.py                 # prints MODEL, the Hugging Face folder
#   python tools/train.py configs/maskdpo/smollm2_cpu_maskdpo.py --model MODEL \
#       --work-dir work_dirs/smollm2 --cfg-options train_dataloader.dataset.data_files=PAIRS.jsonl
#   xtuner convert pth_to_hf configs/maskdpo/smollm2_cpu_maskdpo.py \
#       work_dirs/smollm2/iter_N.pth work_dirs/smollm2/hf --safe-serialization --cfg-options \
#       pretrained_model_name_or_path=MODEL tokenizer.pretrained_model_name_or_path=MODEL ...
#   (or: xtuner train configs/maskdpo/smollm2_cpu_maskdpo.py --cfg-options with the model-path
#    keys of maskdpo_xtuner.train.model_path_keys; tools/real_run.py does all of it)
#
# Unchanged from the paper: sigmoid DPO, beta 0.1, Mask-DPO masks (both), lr 5e-6, AdamW
# (0.9, 0.999), no weight decay, grad-norm clip 1, cosine, 3 epochs, max_length 1024, the
# explicit frozen reference. Changed:
# - model: MODEL (every path key; tools/train.py --model);
# - per-device batch 1 pair x 8 accumulated = 8 pairs per step on one process (the paper:
#   8 pairs x 8 GPUs = 64); the number of steps follows from the pairs: 3 epochs x pairs / 8;
# - CPU needs (configs/_base_/cpu_setting.py): a plain OptimWrapper (AMP refuses a CPU), gloo,
#   a warm-up of 10% (a 3% warm-up of a few dozen steps rounds to zero), logging every step;
# - fp32 weights: without AMP or DeepSpeed there is no fp32 master copy, and AdamW steps of
#   lr 5e-6 on bf16 weights (8 bits of mantissa) round to nothing;
# - no activation checkpointing (answers of ~200 tokens; memory is not the limit on a CPU).
import torch
from mmengine.config import read_base

with read_base():
    from .llama3_1_8b_instruct_maskdpo_full import *  # noqa: F401,F403
    from .._base_.cpu_setting import *  # noqa: F401,F403

pretrained_model_name_or_path = 'work_dirs/smollm2/model'  # tools/build_smollm2.py's folder
tokenizer.pretrained_model_name_or_path = pretrained_model_name_or_path
model.llm.pretrained_model_name_or_path = pretrained_model_name_or_path
model.ref_llm.pretrained_model_name_or_path = pretrained_model_name_or_path
train_dataloader.dataset.tokenizer.pretrained_model_name_or_path = pretrained_model_name_or_path
model.llm.torch_dtype = torch.float32
model.ref_llm.torch_dtype = torch.float32
model.use_activation_checkpointing = False

data_files = ['work_dirs/smollm2/pairs.jsonl']
batch_size = 1
accumulative_counts = 8
global_batch = batch_size * accumulative_counts * num_gpus
del train_dataset  # the dataloader's copy below is the one used
train_dataloader.batch_size = batch_size
train_dataloader.dataset.data_files = data_files
optim_wrapper.accumulative_counts = accumulative_counts
default_hooks.checkpoint.interval = 100000  # the final checkpoint is enough
