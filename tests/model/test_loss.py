"""The loss against an independent computation from the paper's definition (Eq. 5-6)."""
import math

import pytest
import torch
import torch.nn.functional as F

from maskdpo_xtuner.labels import (CORRECT, END, HALLUCINATED, MIXED, PROMPT, SEPARATOR,
                                   UNLABELLED)
from maskdpo_xtuner.model.loss import (LOSS_TYPES, MASK_MODES, mask_dpo_loss, token_logps,
                                       token_weights)

CLASSES = [PROMPT, CORRECT, HALLUCINATED, SEPARATOR, END, MIXED, UNLABELLED]


def random_batch(pairs=3, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    # float64: compared with a sum in Python floats, so both sides carry the same precision
    policy = torch.randn(2 * pairs, length - 1, generator=g, dtype=torch.float64)
    ref = torch.randn(2 * pairs, length - 1, generator=g, dtype=torch.float64)
    cls = torch.tensor(CLASSES)[torch.randint(len(CLASSES), (2 * pairs, length), generator=g)]
    return policy, ref, cls


def kept_by_definition(cls, chosen, mode, sep='keep', end='keep'):
    """Is a token of this class in the sum? Written from the paper, one case at a time."""
    if cls == PROMPT:
        return False
    if cls == SEPARATOR:
        return sep == 'keep'
    if cls == END:
        return end == 'keep'
    if cls == UNLABELLED:  # text outside every sentence: only vanilla DPO, which reads no
        return mode == 'none'  # sentence, counts it
    if chosen:   # M_w sums over correct sentences only (when the chosen mask is on)
        masked = mode in ('both', 'chosen') and cls in (HALLUCINATED, MIXED)
    else:        # M_l sums over hallucinated sentences only (when the rejected mask is on)
        masked = mode in ('both', 'rejected') and cls in (CORRECT, MIXED)
    return not masked


def loss_by_definition(policy, ref, cls, beta, mode, sep='keep', end='keep'):
    losses = []
    for p in range(policy.shape[0] // 2):
        m = {}
        for side, row in (('w', 2 * p), ('l', 2 * p + 1)):
            total = 0.0
            for t in range(policy.shape[1]):
                if kept_by_definition(int(cls[row, t + 1]), side == 'w', mode, sep, end):
                    total += float(policy[row, t] - ref[row, t])
            m[side] = total
        losses.append(-math.log(1 / (1 + math.exp(-beta * (m['w'] - m['l'])))))
    return sum(losses) / len(losses)


@pytest.mark.parametrize('mode', MASK_MODES)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_loss_matches_definition(mode, seed):
    policy, ref, cls = random_batch(seed=seed)
    out = mask_dpo_loss(policy, ref, cls, beta=0.3, mask_mode=mode)
    assert out['loss'].item() == pytest.approx(loss_by_definition(policy, ref, cls, 0.3, mode),
                                               rel=1e-12)


@pytest.mark.parametrize('sep,end', [('mask', 'keep'), ('keep', 'mask'), ('mask', 'mask')])
def test_separator_and_end_policies_match_definition(sep, end):
    policy, ref, cls = random_batch(seed=5)
    out = mask_dpo_loss(policy, ref, cls, beta=0.1, separator_tokens=sep, end_tokens=end)
    expected = loss_by_definition(policy, ref, cls, 0.1, 'both', sep, end)
    assert out['loss'].item() == pytest.approx(expected, rel=1e-12)


def test_mask_modes_differ_on_mixed_data():
    policy, ref, cls = random_batch(seed=3)
    values = {m: mask_dpo_loss(policy, ref, cls, mask_mode=m)['loss'].item() for m in MASK_MODES}
    assert len({round(v, 6) for v in values.values()}) == 4


def test_all_correct_chosen_all_hallucinated_rejected_equals_vanilla():
    policy, ref, cls = random_batch(seed=4)
    cls = cls.clone()
    cls[0::2][cls[0::2] >= 0] = CORRECT
    cls[1::2][cls[1::2] >= 0] = HALLUCINATED
    both = mask_dpo_loss(policy, ref, cls, mask_mode='both')['loss']
    none = mask_dpo_loss(policy, ref, cls, mask_mode='none')['loss']
    assert both.item() == none.item()  # the same tokens kept: the same sums, bit for bit


@pytest.mark.parametrize('mode', MASK_MODES)
def test_gradients_are_zero_exactly_at_masked_positions(mode):
    policy, ref, cls = random_batch(seed=6)
    policy.requires_grad_(True)
    mask_dpo_loss(policy, ref, cls, mask_mode=mode)['loss'].backward()
    kept = token_weights(cls[:, 1:], mode).bool()
    assert torch.all(policy.grad[~kept] == 0)
    assert torch.all(policy.grad[kept] != 0)


def test_token_logps_equals_log_softmax_gather():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, 50, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 50, (4, 9), generator=g)
    labels[:, :3] = -100
    labels[0, 5] = 0  # id 0 is a real token
    naive = logits[:, :-1].log_softmax(-1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])
    naive = naive.squeeze(-1) * (labels[:, 1:] != -100)
    torch.testing.assert_close(token_logps(logits, labels), naive, rtol=1e-12, atol=1e-12)
    assert token_logps(logits, labels)[0, 4] != 0  # the id-0 label is scored


def test_metrics_are_logged():
    policy, ref, cls = random_batch(seed=7)
    out = mask_dpo_loss(policy, ref, cls)
    assert set(out) == {'loss', 'chosen_rewards', 'rejected_rewards', 'reward_acc',
                        'reward_margin', 'masked_share', 'chosen_tokens', 'rejected_tokens'}
    response = (cls[:, 1:] >= 0).sum()
    kept = token_weights(cls[:, 1:], 'both').sum()
    assert out['masked_share'].item() == pytest.approx(1 - kept.item() / response.item())


def test_bad_mode_is_refused():
    policy, ref, cls = random_batch()
    with pytest.raises(ValueError, match='mask_mode'):
        mask_dpo_loss(policy, ref, cls, mask_mode='sentences')
    with pytest.raises(ValueError, match='loss_type'):
        mask_dpo_loss(policy, ref, cls, loss_type='dpo')


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_every_loss_type_is_finite_and_differentiable(loss_type):
    policy, ref, cls = random_batch(seed=8)
    policy.requires_grad_(True)
    out = mask_dpo_loss(policy, ref, cls, loss_type=loss_type, label_smoothing=0.1
                        if loss_type in ('sigmoid', 'robust') else 0.0)
    out['loss'].backward()
    assert torch.isfinite(out['loss']) and policy.grad.abs().sum() > 0


def test_sigmoid_loss_at_zero_margin_is_log2():
    policy, ref, cls = random_batch(seed=9)
    out = mask_dpo_loss(ref.clone(), ref, cls)
    assert out['loss'].item() == pytest.approx(math.log(2))
    assert F.logsigmoid(torch.tensor(0.0)).item() == pytest.approx(-math.log(2))


# ---------------------------------------------------------------- layouts and the light import
@pytest.mark.parametrize('mode', MASK_MODES)
def test_stacked_layout_equals_interleaved(mode):
    """TRL's layout (all chosen rows, then all rejected) gives the same loss and metrics as
    XTuner's interleaved one on the same pairs."""
    policy, ref, cls = random_batch(pairs=4, seed=7)
    order = list(range(0, 8, 2)) + list(range(1, 8, 2))  # interleaved -> stacked
    inter = mask_dpo_loss(policy, ref, cls, mask_mode=mode)
    stacked = mask_dpo_loss(policy[order], ref[order], cls[order], mask_mode=mode,
                            layout='stacked')
    for k in inter:
        assert stacked[k].item() == pytest.approx(inter[k].item(), rel=1e-12), k
    # and reading a stacked batch as interleaved is a different (wrong) pairing
    wrong = mask_dpo_loss(policy[order], ref[order], cls[order], mask_mode=mode)
    assert wrong['loss'].item() != pytest.approx(inter['loss'].item(), rel=1e-6)


def test_counted_tokens_per_side():
    cls = torch.tensor([[PROMPT, CORRECT, CORRECT, HALLUCINATED],    # chosen: 2 correct
                        [PROMPT, CORRECT, HALLUCINATED, HALLUCINATED]])  # rejected: 2 halluc.
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    out = mask_dpo_loss(zeros, zeros, cls, mask_mode='both')
    assert out['chosen_tokens'].item() == 2 and out['rejected_tokens'].item() == 2
    out = mask_dpo_loss(zeros, zeros, cls, mask_mode='none')
    assert out['chosen_tokens'].item() == 3 and out['rejected_tokens'].item() == 3


def test_bad_layout_and_odd_rows_are_refused():
    policy, ref, cls = random_batch()
    with pytest.raises(ValueError, match='layout'):
        mask_dpo_loss(policy, ref, cls, layout='trl')
    with pytest.raises(ValueError, match='rows'):
        mask_dpo_loss(policy[:3], ref[:3], cls[:3])


def _doc_example():
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(root, 'docs', 'loss.md'), encoding='utf-8').read()
    return re.search(r'## In ten lines.*?```python\n(.*?)```', text, re.S).group(1)


def test_the_docs_example_runs_with_torch_alone(tmp_path):
    """docs/loss.md's example, run as written in a fresh interpreter: it trains nothing of
    XTuner, mmengine, DeepSpeed or transformers into memory, and its numbers are the loss's."""
    import json
    import subprocess
    import sys
    code = _doc_example()
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 15
    probe = (code + '\nimport sys, json\nheavy = [m for m in ("xtuner", "mmengine", "deepspeed", '
             '"transformers", "peft") if m in sys.modules]\n'
             'print(json.dumps({"heavy": heavy, "chosen": out["chosen_tokens"].item(), '
             '"rejected": out["rejected_tokens"].item(), "grad": float(logits.grad.abs().sum())}))')
    proc = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['heavy'] == []
    assert result['chosen'] == 5 and result['rejected'] == 2  # as the doc says
    assert result['grad'] > 0
