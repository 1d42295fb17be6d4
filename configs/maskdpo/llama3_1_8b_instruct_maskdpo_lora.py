# Mask-DPO on Llama-3.1-8B-Instruct with LoRA on a single GPU (e.g. one 80 GB A100/H100).
#
#   xtuner train configs/maskdpo/llama3_1_8b_instruct_maskdpo_lora.py
#   xtuner convert pth_to_hf configs/maskdpo/llama3_1_8b_instruct_maskdpo_lora.py \
#       work_dirs/llama3_1_8b_instruct_maskdpo_lora/iter_XXX.pth work_dirs/lora_adapter \
#       --safe-serialization                               # the adapter only
#   maskdpo-xtuner merge meta-llama/Llama-3.1-8B-Instruct work_dirs/lora_adapter \
#       work_dirs/lora_merged                              # base + adapter, bf16 safetensors
#   (XTuner's `xtuner convert merge BASE ADAPTER OUT --safe-serialization` does the same in fp16)
#
# The reference model is the base model with the adapter switched off, so only one copy of the
# weights is in memory. Global batch stays 64 pairs: 2 per step x 32 accumulation steps.
# The learning rate is not the paper's (the paper trains all weights): LoRA usually needs a
# larger one; 5e-5 is our default, not a tuned value.
import torch
from mmengine.config import read_base
from peft import LoraConfig

with read_base():
    from .llama3_1_8b_instruct_maskdpo_full import *  # noqa: F401,F403

num_gpus = 1
batch_size = 2
accumulative_counts = 32
global_batch = batch_size * accumulative_counts * num_gpus  # 64
lr = 5e-5

model.ref_llm = None
model.llm.torch_dtype = torch.bfloat16  # the frozen base stays bf16 (MaskDPO._prepare_for_lora)
model.lora = dict(type=LoraConfig, r=64, lora_alpha=16, lora_dropout=0.05, bias='none',
                  task_type='CAUSAL_LM')
train_dataloader.batch_size = batch_size
optim_wrapper.accumulative_counts = accumulative_counts
optim_wrapper.optimizer.lr = lr
