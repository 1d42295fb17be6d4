# Vanilla DPO baseline for Mask-DPO: same model, data, tokens and schedule; no sentence masks
# (the paper's "w/o mask" row, Table 2).
#
#   NPROC_PER_NODE=8 xtuner train configs/maskdpo/llama3_1_8b_instruct_dpo_full.py \
#       --deepspeed deepspeed_zero3
from mmengine.config import read_base

with read_base():
    from .llama3_1_8b_instruct_maskdpo_full import *  # noqa: F401,F403

model.mask_mode = 'none'
