"""Per-token log-probs without the full-vocabulary log-softmax, and without the logits.

XTuner's DPO calls ``log_softmax`` on the whole ``[batch, seq, vocab]`` logits in the model's dtype,
for the policy and the reference (128k columns for Llama-3). Here the log-prob of each label is
its logit minus an fp32 ``logsumexp``, computed only at labelled positions and a chunk of rows at
a time; a hand-written backward rebuilds the softmax chunk by chunk. Two entry points, one formula:

* ``token_logps(logits, labels)``: from logits the model already built (no fp32 copy of them).
* ``head_logps(hidden, weight, labels)``: from the last hidden state and the LM head's weight, so
  the logits are never built. A chunk's logits ``hidden[rows] @ weight.T`` are made, reduced to a
  logsumexp and the label's logit, and freed; backward makes them again, chunk by chunk, for both
  gradients (hidden state and head weight). Neither the logits nor their gradient ever exist
  whole: memory is one chunk, and the head's products run at labelled positions only (one extra
  product per chunk, the recomputation, is the price). It runs as the head module's forward, so
  ZeRO-3 gathers the partitioned head weight for each pass, as for any layer.

``lm_logps(llm, data, labels)`` runs a causal LM (Hugging Face, or peft around one) the second
way: its decoder without the head, then ``head_logps``. Values and gradients equal
``log_softmax(-1).gather(...)`` (tests/model/test_logps.py, in float64).
"""
from typing import Optional

import torch
import torch.nn.functional as F

from maskdpo_xtuner.labels import IGNORE_INDEX

CHUNK_ELEMENTS = 2 ** 25  # logits per chunk: <= 128 MB of fp32


def token_logps(logits: torch.Tensor, labels: torch.Tensor,
                chunk_tokens: Optional[int] = None) -> torch.Tensor:
    """log p(label_t | tokens before t), shape [B, T-1]; 0 where the label is -100.

    Computed in fp32 for fp32/bf16/fp16 logits and in float64 for float64 logits (tests that
    compare two implementations of one formula run in float64).

    Gathered logit minus an fp32 logsumexp, computed at labelled positions only, a chunk of
    tokens at a time: no log-softmax and no fp32 copy of the whole [B, T, vocab] logits ever
    exists, for the policy or the reference. Gradients equal those of log_softmax + gather.
    """
    shifted, rows = _labelled(labels)
    picked = _LabelLogProb.apply(logits.reshape(-1, logits.shape[-1]), rows,
                                 shifted.flatten()[rows], chunk_tokens or _rows(logits.shape[-1]))
    return _unflatten(picked, rows, shifted)


def head_logps(hidden: torch.Tensor, head: torch.nn.Linear, labels: torch.Tensor,
               chunk_tokens: Optional[int] = None) -> torch.Tensor:
    """``token_logps(head(hidden), labels)`` without the logits: hidden [B, T, H], ``head`` the
    bias-free LM head (``nn.Linear``, weight [vocab, H]). Precision as ``token_logps``; the
    head-weight gradient is accumulated in the weight's dtype, one rounding per chunk.

    The chunked product runs as the head module's own forward, so that hooks on the module see
    it as they see ``head(hidden)``: ZeRO-3 gathers the partitioned weight before the forward and
    again before its backward, and releases it after each, as for any other layer.
    """
    if 'forward' in vars(head):
        raise ValueError(f'{type(head).__name__}.forward is replaced on this instance (a device '
                         'map or offload hook?): set chunked_lm_head=False')
    shifted, rows = _labelled(labels)
    chunk = chunk_tokens or _rows(head.out_features)

    def scored_forward(h, picked_labels):
        return _HeadLogProb.apply(h, head.weight, picked_labels, chunk)

    head.forward = scored_forward  # for this one call; the class's forward stays
    try:
        picked = head(hidden.reshape(-1, hidden.shape[-1])[rows], shifted.flatten()[rows])
    finally:
        del head.forward
    return _unflatten(picked, rows, shifted)


def _rows(vocab):
    return max(1, CHUNK_ELEMENTS // vocab)


def _labelled(labels):
    """Labels shifted so that position t scores token t + 1, and the flat indices of the scored."""
    shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    return shifted, (shifted != IGNORE_INDEX).flatten().nonzero().squeeze(1)


def _unflatten(picked, rows, shifted):
    out = torch.zeros(shifted.numel(), dtype=picked.dtype, device=picked.device)
    return out.index_put((rows,), picked).view(shifted.shape)[:, :-1]


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
            lse[c], out[c] = _label_logprob(logits[rows[c]].to(acc), labels[c])
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
            d = logits[rows[c]].to(lse.dtype)  # a fresh copy (indexing copies): safe to overwrite
            grad[rows[c]] = _softmax_grad(d, lse[c], labels[c], grad_out[c]).to(grad.dtype)
        return grad, None, None, None


def _label_logprob(x, labels):
    """(logsumexp of each row of the chunk's logits, the label's log-prob)."""
    lse = torch.logsumexp(x, dim=-1)
    return lse, x.gather(-1, labels[:, None]).squeeze(-1) - lse


class _HeadLogProb(torch.autograd.Function):
    """``(h @ W.T)[r, label_r] - logsumexp((h @ W.T)[r])`` for hidden rows h [N, H], by chunks.

    Keeps for backward the labelled hidden rows (H per row, not vocab) and one logsumexp per
    row. Backward recomputes each chunk's logits, turns them into d/dlogits in place and
    contracts it at once: d/dh = d @ W, d/dW += d.T @ h. The weight's gradient is skipped when
    it is frozen (LoRA).
    """

    @staticmethod
    def forward(ctx, h, weight, labels, chunk):
        acc = torch.promote_types(h.dtype, torch.float32)
        lse = torch.empty(len(h), dtype=acc, device=h.device)
        out = torch.empty_like(lse)
        for s in range(0, len(h), chunk):
            c = slice(s, s + chunk)
            lse[c], out[c] = _label_logprob((h[c] @ weight.T).to(acc), labels[c])
        ctx.save_for_backward(h, weight, labels, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        h, weight, labels, lse = ctx.saved_tensors
        want_h, want_w = ctx.needs_input_grad[:2]
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.zeros_like(weight) if want_w else None
        for s in range(0, len(h), ctx.chunk):
            c = slice(s, s + ctx.chunk)
            d = (h[c] @ weight.T).to(lse.dtype)  # a fresh product: safe to overwrite
            d = _softmax_grad(d, lse[c], labels[c], grad_out[c]).to(h.dtype)
            if want_h:
                grad_h[c] = d @ weight
            if want_w:
                grad_w.addmm_(d.T, h[c])
        return grad_h, grad_w, None, None


def _softmax_grad(logits, lse, labels, grad_out):
    """d out / d logits times the incoming gradient, in place: g * (onehot(label) - softmax)."""
    g = grad_out[:, None].to(lse.dtype)
    return logits.sub_(lse[:, None]).exp_().mul_(-g).scatter_add_(-1, labels[:, None], g)


# ---------------------------------------------------------------------------- a whole model
LOGIT_TRANSFORMS = ('final_logit_softcapping', 'logit_scale', 'logits_scaling', 'output_mult')


def lm_logps(llm, data: dict, labels: torch.Tensor, chunked_lm_head: bool = True):
    """Per-token log-probs [B, T-1] of a causal LM on a batch (``data``: the forward's inputs).

    ``chunked_lm_head``: run the decoder alone and apply the LM head by chunks of labelled
    positions (``head_logps``); else the model's own forward, whose [B, T, vocab] logits go to
    ``token_logps``. Same values; with peft the adapter state (on, or off inside
    ``disable_adapter()``) applies either way, as does activation checkpointing.
    """
    if not chunked_lm_head:
        return token_logps(llm(**data).logits, labels)
    decoder, head = split_head(llm)
    hidden = decoder(**data, use_cache=False, return_dict=True).last_hidden_state
    return head_logps(hidden, head, labels)


def split_head(llm):
    """(decoder, LM head) of a Hugging Face causal LM, or of the one inside a peft model, after
    checking that its logits are exactly ``head(decoder(...))``."""
    base = llm.get_base_model() if hasattr(llm, 'get_base_model') else llm  # peft
    decoder = base.get_decoder() if hasattr(base, 'get_decoder') else None
    head = base.get_output_embeddings()
    name = type(base).__name__
    if decoder is None or head is None:
        raise ValueError(f'chunked_lm_head=True needs a causal LM with get_decoder() and '
                         f'get_output_embeddings(); {name} lacks one: set chunked_lm_head=False')
    if type(head) is not torch.nn.Linear or head.bias is not None:
        raise ValueError(f'chunked_lm_head=True needs a bias-free torch.nn.Linear LM head; '
                         f'{name} has {type(head).__name__} (an adapter on lm_head?): set '
                         'chunked_lm_head=False or leave lm_head out of the adapter')
    for key in LOGIT_TRANSFORMS:
        if getattr(base.config, key, None) not in (None, 1, 1.0):
            raise ValueError(f'chunked_lm_head=True computes logits as lm_head(hidden), but '
                             f'{name}.config.{key}={getattr(base.config, key)} changes them: '
                             'set chunked_lm_head=False')
    return decoder, head
