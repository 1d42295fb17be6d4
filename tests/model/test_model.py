"""MaskDPO as an XTuner model: same losses as XTuner's DPO where they should agree, and the
token-id-0 defect fixed where they should not."""
import pytest
import torch
from mmengine.config import ConfigDict
from transformers import AutoModelForCausalLM
from xtuner.model.dpo import DPO

from maskdpo_xtuner.dataset import maskdpo_collate_fn, tokenize_pair, validate_record
from maskdpo_xtuner.model import MaskDPO
from maskdpo_xtuner.labels import UNLABELLED
from maskdpo_xtuner.model.loss import LOSS_TYPES
from maskdpo_xtuner.offline.tiny import build_tiny_llama


def record(chosen, rejected, c_types, r_types, c_sents=None, r_sents=None):
    return {'prompt': [{'role': 'user', 'content': 'Who was Ada?'}],
            'chosen': [{'role': 'assistant', 'content': chosen}],
            'rejected': [{'role': 'assistant', 'content': rejected}],
            'chosen_item': {'sents': c_sents or [chosen], 'type': c_types},
            'rejected_item': {'sents': r_sents or [rejected], 'type': r_types}}


def batch(tokenizer, records):
    items = [tokenize_pair(tokenizer, validate_record(r), 128) for r in records]
    return maskdpo_collate_fn(items)['data']


def hf(path, dtype=torch.float64):
    """The config dict XTuner expects for a model (it reads attributes, so a ConfigDict).

    float64 by default: these tests claim "the same formula", and in fp32 two correct
    implementations of a reward (beta x a difference of two ~-190-nat sums) differ by ~1e-5
    relative, by an amount that depends on the CPU's kernels. In float64 they agree to 1e-12."""
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                      pretrained_model_name_or_path=path, torch_dtype=dtype)


@pytest.fixture(scope='module')
def llm(bpe_tokenizer, tmp_path_factory):
    """(reference dir, policy dir): the policy is the reference plus noise, so rewards differ."""
    ref_dir = str(tmp_path_factory.mktemp('ref'))
    model = build_tiny_llama(bpe_tokenizer, ref_dir, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pol_dir = str(tmp_path_factory.mktemp('policy'))
    model.save_pretrained(pol_dir)
    bpe_tokenizer.save_pretrained(pol_dir)
    return ref_dir, pol_dir


def both_models(llm, loss_type, **kw):
    ref_dir, pol_dir = llm
    ours = MaskDPO(hf(pol_dir), ref_llm=hf(ref_dir), loss_type=loss_type,
                   use_activation_checkpointing=False, **kw)
    xt = _xtuner_dpo(pol_dir, ref_dir, loss_type)
    return ours, xt


def _xtuner_dpo(pol_dir, ref_dir, loss_type):
    """XTuner's stock DPO (its CPU crash patched the same way, nothing else changed)."""
    from maskdpo_xtuner.model.maskdpo import _prepare_attn_cpu_safe

    class CpuDPO(DPO):
        _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)

    model = CpuDPO(hf(pol_dir), loss_type=loss_type, use_activation_checkpointing=False)
    ref = AutoModelForCausalLM.from_pretrained(ref_dir, torch_dtype=torch.float64)
    model.ref_llm.load_state_dict(ref.state_dict())
    return model


def no_zero_records():
    return [record('Ada Lovelace was a mathematician. She was born in London.',
                   'Ada Lovelace was a painter. She was born in Paris.',
                   ['ok', 'ok'], ['contradictory', 'ok'],
                   ['Ada Lovelace was a mathematician.', 'She was born in London.'],
                   ['Ada Lovelace was a painter.', 'She was born in Paris.']),
            record('Marie Curie won two prizes.', 'Marie Curie won one prize.',
                   ['ok'], ['unverifiable'])]


def outside_text_records():
    """Responses with text that no sentence covers (a markdown header, as SmolLM2 writes)."""
    return [record('**Ada**\n\nAda Lovelace was a mathematician.',
                   '**Ada**\n\nAda Lovelace was a painter.', ['ok'], ['contradictory'],
                   ['Ada Lovelace was a mathematician.'], ['Ada Lovelace was a painter.']),
            *no_zero_records()]


@pytest.mark.parametrize('records', [no_zero_records, outside_text_records])
@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_mask_mode_none_equals_xtuner_dpo(bpe_tokenizer, llm, loss_type, records):
    """Vanilla DPO counts every response token, text outside every sentence included."""
    data = batch(bpe_tokenizer, records())
    if records is outside_text_records:
        assert (data['token_class'] == UNLABELLED).any()
    assert not (data['labels'] == 0).any()  # XTuner would drop id 0: keep it out of this test
    ours, xt = both_models(llm, loss_type, mask_mode='none')
    a = ours.compute_loss(dict(data))
    b = xt.compute_loss({k: v for k, v in data.items() if k != 'token_class'})
    assert a['loss'].dtype == torch.float64  # float64 end to end, so the tolerance can be tight
    assert a['loss'].item() == pytest.approx(b['loss'].mean().item(), rel=1e-10, abs=1e-12)
    for key in ('chosen_rewards', 'rejected_rewards', 'reward_margin'):
        assert a[key].item() == pytest.approx(b[key].item(), rel=1e-10, abs=1e-12)


def test_masks_change_the_loss(bpe_tokenizer, llm):
    data = batch(bpe_tokenizer, no_zero_records())
    ours, _ = both_models(llm, 'sigmoid', mask_mode='both')
    masked = ours.compute_loss(dict(data))['loss'].item()
    ours.mask_mode = 'none'
    assert ours.compute_loss(dict(data))['loss'].item() != pytest.approx(masked)


def test_token_id_zero_stays_in_the_loss(bpe_tokenizer, llm):
    assert bpe_tokenizer.convert_ids_to_tokens(0) == '!'  # as in Llama-3
    recs = [record('Yes! Ada won.', 'No! Ada lost.', ['ok'], ['contradictory'])]
    data = batch(bpe_tokenizer, recs)
    assert (data['labels'] == 0).sum() >= 2  # one '!' in each response
    ours, xt = both_models(llm, 'sigmoid', mask_mode='none')
    a = ours.compute_loss(dict(data))
    b = xt.compute_loss({k: v for k, v in data.items() if k != 'token_class'})
    # XTuner's DPO treats label 0 as padding and drops every '!'; we keep it, so they differ
    assert a['chosen_rewards'].item() != pytest.approx(b['chosen_rewards'].item(), abs=1e-6)
    # ...and ours counts it: zeroing its log-ratio by hand changes our reward
    from maskdpo_xtuner.model.loss import token_logps
    labels = data['labels']
    feed = {k: v for k, v in data.items() if k not in ('labels', 'token_class')}
    with torch.no_grad():
        pol = token_logps(ours.llm(**feed).logits, labels)
        ref = token_logps(ours.ref_llm(**feed).logits, labels)
    at_zero = labels[:, 1:] == 0
    assert (pol - ref)[at_zero].abs().min() > 0
    full = (pol - ref)[0].sum()
    without = ((pol - ref)[0] * ~at_zero[0]).sum()
    assert a['chosen_rewards'].item() == pytest.approx(0.1 * full.item(), rel=1e-10)
    assert b['chosen_rewards'].item() == pytest.approx(0.1 * without.item(), rel=1e-10)


def test_refuses_unpacked_batches_when_packing_and_unknown_modes(bpe_tokenizer, llm):
    packed = MaskDPO(hf(llm[0]), use_varlen_attn=True, use_activation_checkpointing=False)
    with pytest.raises(ValueError, match='needs packed batches'):  # packing: see test_perf.py
        packed.compute_loss(dict(batch(bpe_tokenizer, no_zero_records())))
    with pytest.raises(ValueError, match='mask_mode'):
        MaskDPO(hf(llm[0]), mask_mode='sentence', use_activation_checkpointing=False)


def test_builds_from_config_dict_on_cpu(tiny_model_dir):
    """XTuner's own attention setup crashes on CPU (torch.cpu.is_bf16_supported); ours builds
    both the policy and an explicit reference from config dicts."""
    model = MaskDPO(llm=hf(tiny_model_dir), ref_llm=hf(tiny_model_dir),
                    use_activation_checkpointing=False)
    assert not any(p.requires_grad for p in model.ref_llm.parameters())
    assert all(p.requires_grad for p in model.llm.parameters())
    assert model.llm.config._attn_implementation == 'sdpa'


def test_export_keeps_the_training_dtype(tiny_model_dir, tmp_path):
    """XTuner's to_hf wrote fp16 unless --fp32; a bf16 policy now exports bf16, --fp32 fp32."""
    import json

    from transformers import AutoTokenizer
    cfg = ConfigDict(tokenizer=dict(type=AutoTokenizer.from_pretrained,
                                    pretrained_model_name_or_path=tiny_model_dir))
    llm = ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                     pretrained_model_name_or_path=tiny_model_dir, torch_dtype=torch.bfloat16)
    for fp32, want in ((False, 'bfloat16'), (True, 'float32')):
        model = MaskDPO(ConfigDict(llm), use_activation_checkpointing=False)
        out = tmp_path / f'fp32_{fp32}'
        model.to_hf(cfg, str(out), fp32=fp32)
        assert json.loads((out / 'config.json').read_text())['torch_dtype'] == want
        saved = AutoModelForCausalLM.from_pretrained(str(out), torch_dtype='auto')
        assert {p.dtype for p in saved.parameters()} == {getattr(torch, want)}
