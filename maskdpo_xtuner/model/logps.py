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

from ..dataset.tokenize import IGNORE_INDEX


def token_logps(logits: torch.Tensor, labels: torch.Tensor,
                chunk_tokens: Optional[int] = None) -> torch.Tensor:
    """log p(label_t | tokens before t) in fp32, shape [B, T-1]; 0 where the label is -100.

    Gathered logit minus an fp32 logsumexp, computed at labelled positions only, a chunk of
    tokens at a time: no log-softmax and no fp32 copy of the whole [B, T, vocab] logits ever
    exists, for the policy or the reference. Gradients equal those of log_softmax + gather.
    """
    labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # position t scores token t + 1
    rows = (labels != IGNORE_INDEX).flatten().nonzero().squeeze(1)
    chunk = chunk_tokens or max(1, 2 ** 25 // logits.shape[-1])  # <= 128 MB of fp32 per chunk
    picked = _LabelLogProb.apply(logits.reshape(-1, logits.shape[-1]), rows,
                                 labels.flatten()[rows], chunk)
    out = torch.zeros(labels.numel(), dtype=torch.float32, device=logits.device)
    return out.index_put((rows,), picked).view(labels.shape)[:, :-1]


class _LabelLogProb(torch.autograd.Function):
    """``logits[r, label_r] - logsumexp(logits[r])`` for the given rows, in fp32, by chunks.

    Keeps for backward only the logits (model dtype, alive anyway) and one fp32 logsumexp per
    row; backward rebuilds the softmax chunk by chunk: d/dlogits = onehot(label) - softmax.
    """

    @staticmethod
    def forward(ctx, logits, rows, labels, chunk):
        lse = torch.empty(len(rows), dtype=torch.float32, device=logits.device)
        out = torch.empty_like(lse)
        for s in range(0, len(rows), chunk):
            c = slice(s, s + chunk)
            x = logits[rows[c]].float()
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
            g = grad_out[c, None].float()
            d = logits[rows[c]].float()  # a fresh copy (indexing copies): safe to overwrite
            d.sub_(lse[c, None]).exp_().mul_(-g).scatter_add_(-1, labels[c, None], g)
            grad[rows[c]] = d.to(grad.dtype)
        return grad, None, None, None
