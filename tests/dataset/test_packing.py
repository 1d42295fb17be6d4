"""Packed sequences (dataset/packing.py, collate, MaskDPO's block-diagonal attention): the same
per-pair log-probs, loss and gradients as unpacked batches, in float64; XTuner's flash-attn
dispatch through exact CPU stand-ins (tests/flash_standin.py)."""
import os

import pytest
import torch
from mmengine.config import ConfigDict
from transformers import AutoTokenizer

import flash_standin
from conftest import ROOT, SAMPLE, fp32_sum_tolerance, hf, twin_models
from maskdpo_xtuner.dataset import PackedPairs, build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO
from maskdpo_xtuner.model import maskdpo as maskdpo_module
from maskdpo_xtuner.model.logps import lm_logps

pytestmark = pytest.mark.usefixtures('one_thread')


def models(model_dir, cache):
    """(online, cached)."""
    return twin_models(model_dir, 0, {'ref_logps_cache': cache})


def packed_and_unpacked(model_dir, **kw):
    """(unpacked, packed), in float64: packing claims the same formula, so they must agree to
    float64 rounding, whatever the CPU's fp32 kernels do."""
    return twin_models(model_dir, 1, {'use_varlen_attn': True}, dtype=torch.float64, **kw)


def test_packed_batch_layout(data):
    packs = PackedPairs(data, max_packed_length=600, seed=0)
    assert sorted(i for p in packs.packs for i in p) == list(range(len(data)))
    pack = packs[0]
    batch = maskdpo_collate_fn([pack], use_varlen_attn=True)['data']
    rows = [p[f'{s}_ids'] for p in pack['pairs'] for s in ('chosen', 'rejected')]
    lengths = [len(r) for r in rows]
    cu = batch['cumulative_len'][0]
    assert cu.dtype == torch.int32 and cu.tolist() == [0] + torch.tensor(lengths).cumsum(0).tolist()
    assert batch['max_seqlen'] == max(lengths) and sum(lengths) <= 600
    assert batch['input_ids'][0].tolist() == [t for r in rows for t in r]
    assert batch['position_ids'][0].tolist() == [i for n in lengths for i in range(n)]
    assert batch['attention_mask'] is None
    assert all(batch['labels'][0, s] == -100 for s in cu[:-1].tolist())  # starts never scored
    with pytest.raises(ValueError, match='batch_size=1'):
        maskdpo_collate_fn([pack, packs[1]], use_varlen_attn=True)


def test_packed_equals_unpacked_on_cpu(tiny_model_dir, data):
    unpacked, packed = packed_and_unpacked(tiny_model_dir, mask_mode='both')
    pack = PackedPairs(data, max_packed_length=1024, seed=0)[0]
    assert len(pack['pairs']) >= 4
    a = unpacked.compute_loss(maskdpo_collate_fn(pack['pairs'])['data'])
    b = packed.compute_loss(maskdpo_collate_fn([pack], use_varlen_attn=True)['data'])
    assert a['loss'].dtype == torch.float64
    for key in a:
        assert b[key].item() == pytest.approx(a[key].item(), rel=1e-10, abs=1e-12), key
    a['loss'].backward()
    b['loss'].backward()
    for p, q in zip(unpacked.llm.parameters(), packed.llm.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12)


def policy_and_reference_logps(model, data):
    """Per-token (policy, reference) log-probs [n, T - 1], one row per sequence, packed or not."""
    data = dict(data)
    labels = data.pop('labels')
    data.pop('token_class')
    cu = model._packed_attention(data) if model.use_varlen_attn else None
    with torch.no_grad():
        out = lm_logps(model.llm, data, labels), model.reference_logps(data, labels)
    if cu is not None:
        out = tuple(maskdpo_module.unpack(x, cu, shifted=True) for x in out)
    return out


def per_pair_logps(model, batch):
    """Per-sequence summed policy log-probs [n], through the model's own (un)packing."""
    return policy_and_reference_logps(model, batch)[0].sum(-1)


def test_packed_per_pair_logps_equal_unpacked_and_would_not_without_the_mask(
        tiny_model_dir, data, monkeypatch):
    unpacked, packed = packed_and_unpacked(tiny_model_dir)
    pack = PackedPairs(data, max_packed_length=1024, seed=3)[0]
    a = per_pair_logps(unpacked, maskdpo_collate_fn(pack['pairs'])['data'])
    packed_batch = maskdpo_collate_fn([pack], use_varlen_attn=True)['data']
    torch.testing.assert_close(per_pair_logps(packed, packed_batch), a, rtol=1e-10, atol=1e-10)
    # a plain causal mask lets later sequences attend to earlier ones: the check notices
    block_diagonal = maskdpo_module.block_causal_mask
    monkeypatch.setattr(maskdpo_module, 'block_causal_mask',
                        lambda cu, dtype: block_diagonal(cu[[0, -1]], dtype))
    leaky = per_pair_logps(packed, packed_batch)
    assert torch.allclose(leaky[:1], a[:1], rtol=1e-10, atol=1e-10)  # the first sees nothing else
    assert not torch.allclose(leaky[1:], a[1:], rtol=1e-3, atol=1e-2)


def test_packed_with_cached_reference(tiny_model_dir, cache, data):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cached_data = build_maskdpo_dataset(SAMPLE, tok, 256, progress=False, ref_logps_cache=cache)
    online, cached = models(tiny_model_dir, cache)
    packed = MaskDPO(hf(tiny_model_dir), ref_logps_cache=cache, use_varlen_attn=True,
                     use_activation_checkpointing=False)
    packed.llm.load_state_dict(cached.llm.state_dict())
    pack = PackedPairs(cached_data, max_packed_length=1024, seed=0)[0]
    same_pairs = PackedPairs(data, max_packed_length=1024, seed=0)[0]['pairs']  # without cache
    assert [p['chosen_ids'] for p in same_pairs] == [p['chosen_ids'] for p in pack['pairs']]
    assert 'ref_logps' in maskdpo_collate_fn([pack], use_varlen_attn=True)['data']
    a = online.compute_loss(maskdpo_collate_fn(same_pairs)['data'])
    batch = maskdpo_collate_fn([pack], use_varlen_attn=True)['data']
    tol = fp32_sum_tolerance(batch['ref_logps'], pairs=len(pack['pairs']))
    b = packed.compute_loss(batch)
    for key in a:
        assert b[key].item() == pytest.approx(a[key].item(), rel=0, abs=tol), key


def test_flash_attn_path_reads_xtuner_message_hub(tiny_model_dir, data, monkeypatch):
    """Up to the GPU boundary: with flash-attn 2 the boundaries go through XTuner's hook and
    the message hub, and no dense mask is built."""
    from mmengine import MessageHub
    from xtuner.engine.hooks import VarlenAttnArgsToMessageHubHook
    _, packed = packed_and_unpacked(tiny_model_dir)
    monkeypatch.setattr(packed.llm.config, '_attn_implementation', 'flash_attention_2')
    batch = maskdpo_collate_fn([PackedPairs(data, 1024)[0]], use_varlen_attn=True)
    with pytest.raises(ValueError, match='VarlenAttnArgsToMessageHubHook'):
        packed._packed_attention(dict(batch['data']))
    hook = VarlenAttnArgsToMessageHubHook()
    hook.before_train_iter(None, 0, batch)  # pops cumulative_len / max_seqlen into the hub
    try:
        assert 'cumulative_len' not in batch['data']
        feed = dict(batch['data'])
        cu = packed._packed_attention(feed)
        hub = MessageHub.get_instance('varlen_attn_args')
        assert torch.equal(cu, hub.get_info('cumulative_len_rank_0'))
        assert feed['attention_mask'] is None
    finally:
        hook.after_train_iter(None, 0)


def flash_twins(model_dir, dtype, device='cpu'):
    """(unpacked with SDPA, packed with flash-attn 2 through XTuner's dispatch): the same noised
    policy, the same reference (the weights before the noise), so policy != reference."""
    from mmengine.config import ConfigDict
    unpacked = MaskDPO(hf(model_dir, dtype), use_activation_checkpointing=False)
    packed = MaskDPO(ConfigDict(hf(model_dir, dtype), attn_implementation='flash_attention_2'),
                     use_varlen_attn=True, use_activation_checkpointing=False)
    assert packed.llm.config._attn_implementation == 'flash_attention_2'
    torch.manual_seed(5)
    with torch.no_grad():
        for p in unpacked.llm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    packed.llm.load_state_dict(unpacked.llm.state_dict())
    return unpacked.to(device), packed.to(device)


def through_the_hub(model, batch, run):
    """``run(data)`` with the boundaries where XTuner's hook puts them, as in training."""
    from xtuner.engine.hooks import VarlenAttnArgsToMessageHubHook
    hook = VarlenAttnArgsToMessageHubHook()
    hook.before_train_iter(None, 0, batch)
    try:
        return run(batch['data'])
    finally:
        hook.after_train_iter(None, 0)


def test_xtuner_flash_varlen_dispatch_packed_equals_unpacked(tiny_model_dir, data, monkeypatch):
    """XTuner 0.2.0's Llama varlen forward drops position_ids, so transformers 4.48 ran
    flash_attn_func over the whole packed row (sequences attended to earlier ones); with
    model/flash.py it runs flash_attn_varlen_func on the boundaries."""
    flash_standin.install(monkeypatch)
    unpacked, packed = flash_twins(tiny_model_dir, torch.float64)
    pack = PackedPairs(data, max_packed_length=1024, seed=3)[0]
    assert len(pack['pairs']) >= 3
    plain = maskdpo_collate_fn(pack['pairs'])['data']
    scored = plain['labels'][:, 1:] != -100
    want_policy, want_ref = policy_and_reference_logps(unpacked, plain)
    assert not torch.allclose(want_policy[scored], want_ref[scored])  # policy != reference
    flash_standin.CALLS.clear()
    policy, ref = through_the_hub(packed, maskdpo_collate_fn([pack], use_varlen_attn=True),
                                  lambda d: policy_and_reference_logps(packed, d))
    assert policy.shape == want_policy.shape
    torch.testing.assert_close(policy[scored], want_policy[scored], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ref[scored], want_ref[scored], rtol=1e-10, atol=1e-10)
    called = {name for name, _ in flash_standin.CALLS}
    assert called == {'flash_attn_varlen_func'}, flash_standin.CALLS[:3]
    a = unpacked.compute_loss(maskdpo_collate_fn(pack['pairs'])['data'])
    b = through_the_hub(packed, maskdpo_collate_fn([pack], use_varlen_attn=True),
                        packed.compute_loss)
    assert a['chosen_rewards'].item() != 0
    for key in a:
        assert b[key].item() == pytest.approx(a[key].item(), rel=1e-10, abs=1e-12), key


def test_xtuner_flash_dispatch_runs_without_a_process_group(tiny_model_dir, data, monkeypatch):
    """Single-GPU LoRA / single-process launches: XTuner's (non-varlen) flash forward asked
    torch.distributed for the rank on every call and raised without a process group."""
    flash_standin.install(monkeypatch)
    sdpa = MaskDPO(hf(tiny_model_dir, torch.float64), use_activation_checkpointing=False)
    flash = MaskDPO(ConfigDict(hf(tiny_model_dir, torch.float64),
                               attn_implementation='flash_attention_2'),
                    use_activation_checkpointing=False)
    ids = torch.tensor([data[0]['chosen_ids']])
    with torch.no_grad():
        want = sdpa.llm(input_ids=ids).logits
        got = flash.llm(input_ids=ids).logits
    assert [name for name, _ in flash_standin.CALLS][:1] == ['flash_attn_func']
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.gpu
def test_packed_equals_unpacked_with_flash_attn_varlen(tiny_model_dir, data):
    """The same on a GPU with the real flash-attn, in bf16, policy != reference."""
    pytest.importorskip('flash_attn')
    unpacked, packed = flash_twins(tiny_model_dir, torch.bfloat16, 'cuda')
    pack = PackedPairs(data, max_packed_length=1024, seed=0)[0]
    to_cuda = lambda d: {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in d.items()}  # noqa
    a = unpacked.compute_loss(to_cuda(maskdpo_collate_fn(pack['pairs'])['data']))
    b = through_the_hub(packed, maskdpo_collate_fn([pack], use_varlen_attn=True),
                        lambda d: packed.compute_loss(to_cuda(d)))
    assert abs(a['chosen_rewards'].item()) > 1e-3  # policy != reference
    for key in ('chosen_rewards', 'rejected_rewards'):
        assert b[key].item() == pytest.approx(a[key].item(), abs=2e-2), key


def test_packed_8b_config_builds_and_runs_with_a_tiny_model(tiny_model_dir, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    from xtuner.engine.hooks import VarlenAttnArgsToMessageHubHook
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'maskdpo',
                                       'llama3_1_8b_instruct_maskdpo_packed.py'))
    assert cfg.model.use_varlen_attn and cfg.train_dataloader.batch_size == 1
    assert cfg.train_dataloader.collate_fn.use_varlen_attn
    assert any(h['type'] is VarlenAttnArgsToMessageHubHook for h in cfg.custom_hooks)
    cfg.merge_from_dict({
        'tokenizer.pretrained_model_name_or_path': tiny_model_dir,
        'model.llm.pretrained_model_name_or_path': tiny_model_dir,
        'model.ref_llm.pretrained_model_name_or_path': tiny_model_dir,
        'train_dataloader.dataset.dataset.tokenizer.pretrained_model_name_or_path':
            tiny_model_dir,
        'train_dataloader.dataset.dataset.data_files': [SAMPLE],
        'train_dataloader.dataset.max_packed_length': 1024,
        'model.use_activation_checkpointing': False})
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    batch = next(iter(runner.build_dataloader(runner._train_dataloader)))
    assert batch['data']['input_ids'].shape[0] == 1
    assert len(batch['data']['cumulative_len'][0]) > 3  # several sequences in the row
    out = runner.model(**batch, mode='loss')
    assert 0 < out['loss'].item() < 10
