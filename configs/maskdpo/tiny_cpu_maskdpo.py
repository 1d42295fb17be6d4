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
from transformers import AutoModelForCausalLM, AutoTokenizer

from maskdpo_xtuner.dataset import build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO

with read_base():
    from .._base_.cpu_setting import *  # noqa: F401,F403

pretrained_model_name_or_path = 'work_dirs/tiny_cpu/model'
data_files = ['data/sample_pairs.jsonl']
max_length = 256
batch_size = 4
global_batch = batch_size * num_gpus
max_epochs = 3
lr = 1e-3
# Reference log-probs: None = the reference runs every step; a file = computed once by
#   python tools/precompute_ref_logps.py configs/maskdpo/tiny_cpu_maskdpo.py
# and read by training, which then never builds the reference (see the 8B config for details).
ref_logps_cache = None

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
    ref_logps_cache=ref_logps_cache,
    chunked_lm_head=True,  # the LM head by chunks: no [batch, length, vocabulary] logits
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    dataset=dict(type=build_maskdpo_dataset, data_files=data_files, tokenizer=tokenizer,
                 max_length=max_length, on_error='raise', ref_logps_cache=ref_logps_cache),
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=maskdpo_collate_fn),
)

optim_wrapper.optimizer.lr = lr
train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

default_hooks.checkpoint.interval = 8
