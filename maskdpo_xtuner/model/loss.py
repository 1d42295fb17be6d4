"""The Mask-DPO loss, as pure functions on tensors.

    M_w = sum over tokens t of the chosen response of   w_t * (log pi(t) - log ref(t))
    M_l = sum over tokens t of the rejected response of w_t * (log pi(t) - log ref(t))
    loss = -log sigmoid(beta * (M_w - M_l))                     (loss_type='sigmoid')

With mask_mode='both' (Mask-DPO, paper Eq. 6) w_t is 1 on tokens of *correct* chosen sentences
and of *hallucinated* rejected sentences, 0 elsewhere. The weights are an explicit tensor: a
token's id plays no part (XTuner's DPO drops every label equal to 0, i.e. '!' in Llama-3).

=============  ==================  ==================
mask_mode      chosen keeps        rejected keeps
=============  ==================  ==================
``both``       correct sentences   hallucinated sentences     (Mask-DPO)
``chosen``     correct sentences   every sentence
``rejected``   every sentence      hallucinated sentences
``none``       every sentence      every sentence             (vanilla DPO)
=============  ==================  ==================

Tokens between sentences (separators) and the end-of-turn suffix follow ``separator_tokens``
and ``end_tokens``: 'keep' (default, as the official code) or 'mask'. ``UNLABELLED`` tokens
(response text no sentence covers, such as a markdown header ``**France**``: of unknown truth)
are kept only by ``none``, which looks at no sentence and so counts every response token, as
XTuner's and TRL's DPO do; the masked modes drop them (the dataset builder's
``unlabelled_tokens`` can turn them into separators or refuse them before training).

Rows come in one of two layouts (``layout``): ``'interleaved'`` (XTuner's, the default: chosen,
rejected, chosen, rejected, ...: row 2i is pair i's chosen) or ``'stacked'`` (TRL's: all B
chosen rows, then all B rejected rows: row i is pair i's chosen, row B + i its rejected).
This module needs torch alone (``import maskdpo_xtuner.model.loss`` loads no XTuner).
"""
import torch
import torch.nn.functional as F

from maskdpo_xtuner.labels import (CORRECT, END, HALLUCINATED, MASK_MODES, MIXED, SEPARATOR,
                                   UNLABELLED)
from maskdpo_xtuner.model.logps import token_logps  # noqa: F401  (per-token log-probs, lean)

LAYOUTS = ('interleaved', 'stacked')
LOSS_TYPES = ('sigmoid', 'robust', 'hinge', 'ipo', 'kto_pair', 'sppo_hard', 'nca_pair')


def token_weights(token_class: torch.Tensor, mask_mode: str = 'both',
                  separator_tokens: str = 'keep', end_tokens: str = 'keep',
                  layout: str = 'interleaved') -> torch.Tensor:
    """Per-token weights [2B, T] of rows in ``layout`` (see the module docstring)."""
    if mask_mode not in MASK_MODES:
        raise ValueError(f'mask_mode must be one of {MASK_MODES}, got {mask_mode!r}')
    for name, value in (('separator_tokens', separator_tokens), ('end_tokens', end_tokens)):
        if value not in ('keep', 'mask'):
            raise ValueError(f"{name} must be 'keep' or 'mask', got {value!r}")
    chosen_row = _chosen_rows(token_class.shape[0], layout, token_class.device)[:, None]
    mask_chosen = mask_mode in ('both', 'chosen')      # drop hallucinated text from chosen
    mask_rejected = mask_mode in ('both', 'rejected')  # drop correct text from rejected
    keep = torch.zeros_like(token_class, dtype=torch.bool)
    keep |= (token_class == CORRECT) & (chosen_row | (not mask_rejected))
    keep |= (token_class == HALLUCINATED) & (~chosen_row | (not mask_chosen))
    keep |= (token_class == MIXED) & ((chosen_row & (not mask_chosen))
                                      | (~chosen_row & (not mask_rejected)))
    keep |= (token_class == SEPARATOR) & (separator_tokens == 'keep')
    keep |= (token_class == END) & (end_tokens == 'keep')
    keep |= (token_class == UNLABELLED) & (mask_mode == 'none')  # vanilla DPO: every token
    return keep.float()  # PROMPT tokens are never kept


def _chosen_rows(n: int, layout: str, device=None) -> torch.Tensor:
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    if n % 2:
        raise ValueError(f'{n} rows: a batch holds a chosen and a rejected row per pair')
    rows = torch.arange(n, device=device)
    return rows % 2 == 0 if layout == 'interleaved' else rows < n // 2


def preference_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                    beta: float = 0.1, loss_type: str = 'sigmoid', label_smoothing: float = 0.0):
    """Per-pair losses from (masked) sequence log-probs: XTuner's seven DPO variants."""
    chosen_lr, rejected_lr = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    z = beta * (chosen_lr - rejected_lr)
    if loss_type == 'sigmoid':
        return -F.logsigmoid(z) * (1 - label_smoothing) - F.logsigmoid(-z) * label_smoothing
    if loss_type == 'robust':
        return ((-F.logsigmoid(z) * (1 - label_smoothing) + F.logsigmoid(-z) * label_smoothing)
                / (1 - 2 * label_smoothing))
    if loss_type == 'hinge':
        return torch.relu(1 - z)
    if loss_type == 'ipo':  # inputs are per-token averages here (see MaskDPO.compute_loss)
        return (chosen_lr - rejected_lr - 1 / (2 * beta)) ** 2
    if loss_type == 'kto_pair':  # KL of each half estimated from the other half (HALOs, Eq. 7)
        chosen_kl = chosen_lr.mean().clamp(min=0)
        rejected_kl = rejected_lr.mean().clamp(min=0)
        return torch.cat([1 - torch.sigmoid(beta * (chosen_lr - rejected_kl)),
                          1 - torch.sigmoid(beta * (chosen_kl - rejected_lr))])
    if loss_type == 'sppo_hard':
        return (chosen_lr - 0.5 / beta) ** 2 + (rejected_lr + 0.5 / beta) ** 2
    if loss_type == 'nca_pair':
        cr, rr = beta * chosen_lr, beta * rejected_lr
        return -F.logsigmoid(cr) - 0.5 * F.logsigmoid(-cr) - 0.5 * F.logsigmoid(-rr)
    raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')


def mask_dpo_loss(policy_logps, ref_logps, token_class, beta=0.1, loss_type='sigmoid',
                  label_smoothing=0.0, mask_mode='both', separator_tokens='keep',
                  end_tokens='keep', layout='interleaved'):
    """Loss and logged metrics from per-token log-probs [2B, T-1] and classes [2B, T], rows in
    ``layout``. Logged: rewards (beta x masked log-ratio), their margin and accuracy, the tokens
    counted per chosen / rejected answer (mean over pairs) and the share of response tokens
    the masks leave out."""
    cls = token_class[:, 1:]  # class of the token each log-prob scores
    w = token_weights(cls, mask_mode, separator_tokens, end_tokens, layout)
    policy, ref = (policy_logps * w).sum(-1), (ref_logps * w).sum(-1)
    counted = w.sum(-1)
    if loss_type == 'ipo':  # IPO uses per-token averages
        n = counted.clamp(min=1)
        policy, ref = policy / n, ref / n
    c = _chosen_rows(w.shape[0], layout, w.device)
    losses = preference_loss(policy[c], policy[~c], ref[c], ref[~c],
                             beta, loss_type, label_smoothing)
    chosen_rewards = beta * (policy[c] - ref[c]).detach()
    rejected_rewards = beta * (policy[~c] - ref[~c]).detach()
    response = (cls >= 0).float()
    return {
        'loss': losses.mean(),
        'chosen_rewards': chosen_rewards.mean(),
        'rejected_rewards': rejected_rewards.mean(),
        'reward_acc': (chosen_rewards > rejected_rewards).float().mean(),
        'reward_margin': (chosen_rewards - rejected_rewards).mean(),
        'chosen_tokens': counted[c].mean().detach(),
        'rejected_tokens': counted[~c].mean().detach(),
        'masked_share': 1 - w.sum() / response.sum().clamp(min=1),
    }
