# Mask-DPO on a tiny random Llama on CPU: the smoke test of the whole training path (seconds).
#
#   python tools/build_tiny_model.py --out work_dirs/tiny_cpu/model
#   xtuner train configs/maskdpo/tiny_cpu_maskdpo.py --work-dir work_dirs/tiny_cpu
#   xtuner convert pth_to_hf configs/maskdpo/tiny_cpu_maskdpo.py \
#       work_dirs/tiny_cpu/iter_24.pth work_dirs/tiny_cpu/hf --fp32
#
# Same model class, data path and schedule shape as the 8B configs; CPU-only changes: plain
# OptimWrapper (AMP refuses CPU), no activation checkpointing, a warm-up of 2+ iterations (a
# warm-up rounded to one iteration never ramps), gloo, and a learning rate for a random model.
import torch
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer

from maskdpo_xtuner.dataset import build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO

with read_base():
    from .._base_.paper_setting import *  # noqa: F401,F403

pretrained_model_name_or_path = 'work_dirs/tiny_cpu/model'
data_files = ['data/sample_pairs.jsonl']
max_length = 256
num_gpus = 1
batch_size = 4
accumulative_counts = 1
global_batch = batch_size * accumulative_counts * num_gpus
max_epochs = 3
lr = 1e-3
warmup_ratio = 0.1

tokenizer = dict(type=AutoTokenizer.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 padding_side='right')

model = dict(
    type=MaskDPO,
    mask_mode=mask_mode,
    separator_tokens='keep',
    end_tokens='keep',
    loss_type=dpo_loss_type,
    beta=loss_beta,
    label_smoothing=label_smoothing,
    use_varlen_attn=False,
    use_activation_checkpointing=False,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path,
             torch_dtype=torch.float32),
    ref_llm=None,  # a frozen copy of the policy
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    dataset=dict(type=build_maskdpo_dataset, data_files=data_files, tokenizer=tokenizer,
                 max_length=max_length, on_error='raise'),
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=maskdpo_collate_fn),
)

optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts)

param_scheduler = [
    dict(type=LinearLR, start_factor=0.1, by_epoch=True, begin=0,
         end=warmup_ratio * max_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

default_hooks.logger.interval = 1
default_hooks.checkpoint.interval = 8
env_cfg.dist_cfg.backend = 'gloo'
