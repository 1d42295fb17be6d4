"""Two repairs to XTuner 0.2.0's flash-attn dispatch (``xtuner/model/modules/dispatch/``) under
transformers 4.48, applied by ``MaskDPO`` (and ``build_reference``) once its models are built.

1. Packed rows attended across sequences. For a packed batch XTuner's Llama/Mistral/Qwen2
   attention forwards put the boundaries in ``cu_seq_lens_q/k`` and ``max_length_q/k`` but pop
   ``position_ids``; transformers' ``_flash_attention_forward`` takes its varlen branch only when
   ``position_ids`` is given, so it called ``flash_attn_func`` over the whole row and every
   sequence saw the ones before it. ``varlen_flash_attention`` (registered as transformers'
   ``flash_attention_2`` attention function, which XTuner looks up on every call) gives back the
   per-sequence positions whenever boundaries come without them, and transformers then calls
   ``flash_attn_varlen_func`` with those boundaries.
2. Single-process launches crashed: the same forwards call ``torch.distributed.get_rank()`` on
   every step, which raises "Default process group has not been initialized" when no process
   group exists (plain ``xtuner train`` on one GPU). Their ``dist`` becomes ``_RankSafeDist``:
   torch.distributed with mmengine's ``get_rank`` (0 without a process group).
"""
import sys

import torch
import torch.distributed
from mmengine.dist import get_rank as _mmengine_get_rank
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

_DISPATCH_PACKAGE = 'xtuner.model.modules.dispatch.'


class _RankSafeDist:
    """``torch.distributed`` whose ``get_rank`` answers 0 when no process group exists."""

    def __getattr__(self, name):
        return getattr(torch.distributed, name)

    @staticmethod
    def get_rank(group=None):
        return _mmengine_get_rank(group)


def positions_from_boundaries(cu_seqlens):
    """cu_seqlens [n + 1] -> position ids [1, L]: 0, 1, ... restarting at every boundary."""
    cu = cu_seqlens.long()
    lengths = cu[1:] - cu[:-1]
    start = torch.repeat_interleave(cu[:-1], lengths)
    return (torch.arange(int(cu[-1]), device=cu.device) - start)[None]


def _wrap(flash_attention):
    def varlen_flash_attention(module, query, key, value, attention_mask, **kwargs):
        cu_seqlens = kwargs.get('cu_seq_lens_q')
        if cu_seqlens is not None and kwargs.get('position_ids') is None:
            kwargs['position_ids'] = positions_from_boundaries(cu_seqlens)
        return flash_attention(module, query, key, value, attention_mask, **kwargs)
    varlen_flash_attention.wrapped = flash_attention
    return varlen_flash_attention


def repair_xtuner_flash_dispatch():
    """Apply both repairs (idempotent). Call after the models are built: XTuner imports its
    dispatch modules while building them."""
    current = ALL_ATTENTION_FUNCTIONS['flash_attention_2']
    if not hasattr(current, 'wrapped'):
        ALL_ATTENTION_FUNCTIONS['flash_attention_2'] = _wrap(current)
    for name, module in list(sys.modules.items()):
        if name.startswith(_DISPATCH_PACKAGE) and getattr(module, 'dist', None) is torch.distributed:
            module.dist = _RankSafeDist()
