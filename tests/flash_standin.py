"""Exact CPU stand-ins for flash-attn 2, so XTuner's flash dispatch and transformers' flash
attention path run in the CPU suite.

``install(monkeypatch)`` registers a fake ``flash_attn`` package (``flash_attn_func``,
``flash_attn_varlen_func``, ``__version__``) in ``sys.modules``, points transformers'
``modeling_flash_attention_utils`` at it, and answers yes to the "is flash-attn 2 available"
checks of transformers and XTuner (``SUPPORT_FLASH2``), so a model loaded with
``attn_implementation='flash_attention_2'`` gets XTuner's dispatched attention forwards. The
functions compute softmax(q k^T * scale) v in float64 (causal: bottom-right aligned, as flash-attn
>= 2.1), one sequence at a time for the varlen one, and record every call in ``CALLS`` as
(function name, query shape) so a test can tell which path ran. Anything they do not implement
(dropout, sliding windows, softcap, ALiBi) raises.
"""
import math
import sys
import types

import torch

CALLS = []
VERSION = '2.7.4'


def _unsupported(dropout_p, window_size, softcap, alibi_slopes):
    if dropout_p:
        raise NotImplementedError(f'stand-in flash-attn: dropout_p={dropout_p}')
    if tuple(window_size) != (-1, -1) or softcap or alibi_slopes is not None:
        raise NotImplementedError('stand-in flash-attn: sliding windows, softcap and ALiBi')


def _attend(q, k, v, scale, causal):
    """q [Sq, H, D], k and v [Sk, Hk, D] (H a multiple of Hk) -> [Sq, H, D] in q's dtype."""
    heads, kv_heads = q.shape[1], k.shape[1]
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    scores = torch.einsum('qhd,khd->hqk', q.double(), k.double()) * scale
    if causal:
        sq, sk = q.shape[0], k.shape[0]
        allowed = torch.ones(sq, sk, dtype=torch.bool).tril(diagonal=sk - sq)
        scores = scores.masked_fill(~allowed, float('-inf'))
    out = torch.einsum('hqk,khd->qhd', scores.softmax(-1), v.double())
    return out.to(q.dtype)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False,
                    window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                    return_attn_probs=False):
    """q [B, Sq, H, D], k and v [B, Sk, Hk, D]: every row one sequence."""
    _unsupported(dropout_p, window_size, softcap, alibi_slopes)
    CALLS.append(('flash_attn_func', tuple(q.shape)))
    scale = softmax_scale or 1 / math.sqrt(q.shape[-1])
    return torch.stack([_attend(q[b], k[b], v[b], scale, causal) for b in range(q.shape[0])])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                           softcap=0.0, alibi_slopes=None, deterministic=False,
                           return_attn_probs=False, block_table=None):
    """q [total_q, H, D], k and v [total_k, Hk, D]: sequence i is rows cu[i]:cu[i + 1]."""
    _unsupported(dropout_p, window_size, softcap, alibi_slopes)
    CALLS.append(('flash_attn_varlen_func', tuple(q.shape)))
    scale = softmax_scale or 1 / math.sqrt(q.shape[-1])
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    assert len(cq) == len(ck) and cq[-1] == q.shape[0] and ck[-1] == k.shape[0], (cq, ck)
    assert max_seqlen_q >= max(b - a for a, b in zip(cq, cq[1:])), 'max_seqlen_q too small'
    parts = [_attend(q[a:b], k[c:d], v[c:d], scale, causal)
             for a, b, c, d in zip(cq, cq[1:], ck, ck[1:])]
    return torch.cat(parts)


def install(monkeypatch):
    """Install the stand-ins for one test (``monkeypatch`` undoes all of it); clears ``CALLS``."""
    import transformers.integrations.flash_attention as hf_flash
    import transformers.modeling_flash_attention_utils as hf_fa_utils
    import transformers.modeling_utils as hf_modeling
    import transformers.utils as hf_utils
    import transformers.utils.import_utils as hf_import_utils
    import xtuner.model.modules.dispatch as xtuner_dispatch
    import xtuner.model.sft as xtuner_sft

    CALLS.clear()
    package = types.ModuleType('flash_attn')
    package.__version__ = VERSION
    package.flash_attn_func = flash_attn_func
    package.flash_attn_varlen_func = flash_attn_varlen_func
    monkeypatch.setitem(sys.modules, 'flash_attn', package)

    monkeypatch.setattr(hf_fa_utils, 'flash_attn_func', flash_attn_func, raising=False)
    monkeypatch.setattr(hf_fa_utils, 'flash_attn_varlen_func', flash_attn_varlen_func,
                        raising=False)
    monkeypatch.setattr(hf_fa_utils, '_flash_supports_window_size', True, raising=False)
    monkeypatch.setattr(hf_fa_utils, 'flash_241', False)  # no `deterministic` argument
    monkeypatch.setattr(hf_flash, '_use_top_left_mask', False)  # flash-attn >= 2.1
    for module in (hf_utils, hf_import_utils, hf_modeling):
        monkeypatch.setattr(module, 'is_flash_attn_2_available', lambda: True)

    def enable_flash(cls, config, *args, **kwargs):  # its only other check is "a GPU exists"
        config._attn_implementation = 'flash_attention_2'
        return config
    monkeypatch.setattr(hf_modeling.PreTrainedModel, '_check_and_enable_flash_attn_2',
                        classmethod(enable_flash))
    monkeypatch.setattr(xtuner_dispatch, 'SUPPORT_FLASH2', True)
    monkeypatch.setattr(xtuner_sft, 'SUPPORT_FLASH2', True)
