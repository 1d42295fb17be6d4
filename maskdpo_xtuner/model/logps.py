"""Per-token log-probs without materialising the full-vocabulary log-softmax.

XTuner's DPO calls ``log_softmax`` on the whole ``[batch, seq, vocab]`` logits in the model's dtype,
for the policy and the reference (128k columns for Llama-3). Here the log-prob of each label is
its logit minus an fp32 ``logsumexp``, computed only at labelled positions and a chunk of rows at
a time; a hand-written backward rebuilds the softmax chunk by chunk. Values and gradients equal
``log_softmax(-1).gather(...)`` (tests/test_perf.py).
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..labels import IGNORE_INDEX


def token_logps(logits: torch.Tensor, labels: torch.Tensor,
                chunk_tokens: Optional[int] = None) -> torch.Tensor:
    """log p(label_t | tokens before t), shape [B, T-1]; 0 where the label is -100.

    Computed in fp32 for fp32/bf16/fp16 logits and in float64 for float64 logits (tests that
    compare two implementations of one formula run in float64).

    Gathered logit minus an fp32 logsumexp, computed at labelled positions only, a chunk of
    tokens at a time: no log-softmax and no fp32 copy of the whole [B, T, vocab] logits ever
    exists, for the policy or the reference. Gradients equal those of log_softmax + gather.
    """
    labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # position t scores token t + 1
    rows = (labels != IGNORE_INDEX).flatten().nonzero().squeeze(1)
    chunk = chunk_tokens or max(1, 2 ** 25 // logits.shape[-1])  # <= 128 MB of fp32 per chunk
    picked = _LabelLogProb.apply(logits.reshape(-1, logits.shape[-1]), rows,
                                 labels.flatten()[rows], chunk)
    out = torch.zeros(labels.numel(), dtype=picked.dtype, device=logits.device)
    return out.index_put((rows,), picked).view(labels.shape)[:, :-1]


class _LabelLogProb(torch.autograd.Function):
    """``logits[r, label_r] - logsumexp(logits[r])`` for the given rows, in fp32, by chunks.

    Keeps for backward only the logits (model dtype, alive anyway) and one fp32 logsumexp per
    row; backward rebuilds the softmax chunk by chunk: d/dlogits = onehot(label) - softmax.
    """

    @staticmethod
    def forward(ctx, logits, rows, labels, chunk):
        acc = torch.promote_types(logits.dtype, torch.float32)  # fp32, or float64 if given
        lse = torch.empty(len(rows), dtype=acc, device=logits.device)
        out = torch.empty_like(lse)
        for s in range(0, len(rows), chunk):
            c = slice(s, s + chunk)
            x = logits[rows[c]].to(acc)
            lse[c] = torch.logsumexp(x, dim=-1)
            out[c] = x.gather(-1, labels[c, None]).squeeze(-1) - lse[c]
        ctx.save_for_backward(logits, rows, labels, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        logits, rows, labels, lse = ctx.saved_tensors
        grad = torch.zeros_like(logits)
        for s in range(0, len(rows), ctx.chunk):
            c = slice(s, s + ctx.chunk)
            g = grad_out[c, None].to(lse.dtype)
            d = logits[rows[c]].to(lse.dtype)  # a fresh copy (indexing copies): safe to overwrite
            d.sub_(lse[c, None]).exp_().mul_(-g).scatter_add_(-1, labels[c, None], g)
            grad[rows[c]] = d.to(grad.dtype)
        return grad, None, None, None
