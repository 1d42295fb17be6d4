# The tiny CPU config with packed sequences: whole pairs laid end to end in rows of at most
# max_packed_length tokens, one row per step, every sequence attending only to itself (on CPU a
# block-diagonal causal mask through SDPA; on GPU flash-attn varlen, see the 8B packed config).
#
#   xtuner train configs/maskdpo/tiny_cpu_maskdpo_packed.py --work-dir work_dirs/tiny_cpu_packed
from mmengine.config import read_base
from xtuner.engine.hooks import VarlenAttnArgsToMessageHubHook

from maskdpo_xtuner.dataset import PackedPairs

with read_base():
    from .tiny_cpu_maskdpo import *  # noqa: F401,F403

max_packed_length = 512  # about 3 pairs of the sample data per row

model.use_varlen_attn = True
train_dataloader.batch_size = 1  # one packed row per step
train_dataloader.dataset = dict(type=PackedPairs, dataset=train_dataloader.dataset,
                                max_packed_length=max_packed_length)
train_dataloader.collate_fn.use_varlen_attn = True
custom_hooks.append(dict(type=VarlenAttnArgsToMessageHubHook))  # cu_seqlens to the attention
