# Mask-DPO on Llama-3.1-8B-Instruct with packed sequences (flash-attn 2 varlen), 8 GPUs.
#
#   NPROC_PER_NODE=8 xtuner train configs/maskdpo/llama3_1_8b_instruct_maskdpo_packed.py \
#       --deepspeed deepspeed_zero3
#
# Whole pairs are laid end to end in rows of at most max_packed_length tokens (PackedPairs), one
# row per GPU per step, so no compute goes to padding. XTuner's varlen attention keeps every
# sequence to itself: VarlenAttnArgsToMessageHubHook hands each row's boundaries (cu_seqlens) to
# the flash-attn forward XTuner dispatches for use_varlen_attn=True. Needs flash-attn 2 (without
# it MaskDPO falls back to a block-diagonal mask, correct but O(L^2) memory).
#
# Not the paper's batch: a step holds as many pairs as fit in 8 rows (about 64 pairs of 1k
# tokens with the 16k rows below, fewer when pairs are long), and the loss is the mean over each
# row's pairs. Use the unpacked config to reproduce the paper exactly.
from mmengine.config import read_base
from xtuner.engine.hooks import VarlenAttnArgsToMessageHubHook

from maskdpo_xtuner.dataset import PackedPairs

with read_base():
    from .llama3_1_8b_instruct_maskdpo_full import *  # noqa: F401,F403

max_packed_length = 16384  # tokens per row: ~8 pairs of 2 x 1024 tokens

model.use_varlen_attn = True
train_dataloader.batch_size = 1
train_dataloader.dataset = dict(type=PackedPairs, dataset=train_dataset,
                                max_packed_length=max_packed_length)
train_dataloader.collate_fn.use_varlen_attn = True
custom_hooks.append(dict(type=VarlenAttnArgsToMessageHubHook))
