"""Performance features that must not change the numbers: lean log-probs, precomputed reference
log-probs (and their refusal when stale), packed sequences."""
import glob
import hashlib
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import ConfigDict
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoTokenizer

from conftest import ROOT, SAMPLE, fp32_sum_tolerance, hf, twin_models
from maskdpo_xtuner.dataset import PackedPairs, build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO
from maskdpo_xtuner.model import maskdpo as maskdpo_module
from maskdpo_xtuner.model.loss import token_logps
from maskdpo_xtuner.ref_logps import StaleRefLogps
from maskdpo_xtuner.tiny import build_tiny_llama
from maskdpo_xtuner.train import model_path_options

TINY = os.path.join(ROOT, 'configs', 'maskdpo', 'tiny_cpu_maskdpo.py')
sys.path.insert(0, os.path.join(ROOT, 'tools'))


def cache_options(model_dir, cache):
    opts = model_path_options(TINY, model_dir)
    opts.update({'model.ref_logps_cache': cache,
                 'train_dataloader.dataset.ref_logps_cache': cache})
    return opts


def precompute(model_dir, cache, **extra):
    from precompute_ref_logps import main
    opts = dict(cache_options(model_dir, cache), **extra)
    return main([TINY, '--batch-size', '5', '--cfg-options']
                + [f'{k}={v}' for k, v in opts.items()])


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models on 2 shared cores: one thread avoids OpenMP contention (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def cache(tiny_model_dir, tmp_path_factory):
    return precompute(tiny_model_dir, str(tmp_path_factory.mktemp('cache') / 'ref_logps.pt'))


@pytest.fixture(scope='module')
def data(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return build_maskdpo_dataset(SAMPLE, tok, 256, progress=False)


def models(model_dir, cache):
    """(online, cached)."""
    return twin_models(model_dir, 0, {'ref_logps_cache': cache})


# ---------------------------------------------------------------------------- lean log-probs
def naive_logps(logits, labels):
    lab = labels[:, 1:]
    out = logits[:, :-1].float().log_softmax(-1).gather(-1, lab.clamp(min=0)[..., None])
    return out.squeeze(-1) * (lab != -100)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_lean_logps_equal_naive_values_and_gradients(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 11, 60, generator=g).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 60, (4, 11), generator=g)
    labels[:, :3] = -100
    labels[1, -2:] = -100
    labels[0, 5] = labels[3, 8] = 0  # id 0 is a real token ('!' in Llama-3)
    weights = torch.randn(4, 10, generator=g)
    lean = token_logps(logits, labels, chunk_tokens=3)  # chunks smaller than the rows
    (lean * weights).sum().backward()
    lean_grad, logits.grad = logits.grad, None
    naive = naive_logps(logits, labels)
    (naive * weights).sum().backward()
    torch.testing.assert_close(lean, naive, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lean_grad, logits.grad, rtol=1e-6, atol=1e-6)
    assert lean[0, 4] != 0 and lean_grad[0, 4].abs().sum() > 0  # the id-0 label is scored
    assert torch.all(lean_grad[:, :2] == 0)  # unlabelled positions get no gradient


class LargestFloat(TorchDispatchMode):
    """Records the largest fp32 tensor any operation creates."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                self.numel = max(self.numel, t.numel())
        return out


def test_lean_logps_never_hold_a_full_vocab_fp32_copy():
    vocab, chunk = 500, 4
    logits = torch.randn(2, 16, vocab).bfloat16().requires_grad_(True)
    labels = torch.randint(0, vocab, (2, 16))
    with LargestFloat() as lean:
        token_logps(logits, labels, chunk_tokens=chunk).sum().backward()
    assert lean.numel <= chunk * vocab  # policy: forward and backward, a chunk at a time
    with torch.no_grad(), LargestFloat() as ref:
        token_logps(logits, labels, chunk_tokens=chunk)
    assert ref.numel <= chunk * vocab
    with LargestFloat() as naive:  # the measurement can tell: the naive way fails it
        naive_logps(logits, labels).sum().backward()
    assert naive.numel >= logits.numel() // 2


# ---------------------------------------------------------------------------- cached reference
def test_cached_reference_equals_online_loss_and_gradients(tiny_model_dir, cache, data):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cached_data = build_maskdpo_dataset(SAMPLE, tok, 256, progress=False, ref_logps_cache=cache)
    online, cached = models(tiny_model_dir, cache)
    assert cached.ref_llm is None and online.ref_llm is not None
    a = online.compute_loss(maskdpo_collate_fn(data.items[:6])['data'])
    batch = maskdpo_collate_fn(cached_data.items[:6])['data']
    assert batch['ref_logps'].shape == (12, batch['input_ids'].shape[1] - 1)
    tol = fp32_sum_tolerance(batch['ref_logps'])  # before compute_loss takes it from the batch
    b = cached.compute_loss(batch)
    assert abs(a['loss'].item() - math.log(2)) > 1e-3  # a real test: policy != reference
    for key in a:
        assert b[key].item() == pytest.approx(a[key].item(), rel=0, abs=tol), key
    a['loss'].backward()
    b['loss'].backward()
    for (name, p), q in zip(online.llm.named_parameters(), cached.llm.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_stale_cache_is_refused(tiny_model_dir, cache, data, tmp_path, bpe_tokenizer):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    subset = tmp_path / 'subset.jsonl'
    subset.write_text(''.join(open(SAMPLE).readlines()[:30]))
    with pytest.raises(StaleRefLogps, match=r'data: cache 32 pairs, this run 30') as e:
        build_maskdpo_dataset(str(subset), tok, 256, progress=False, ref_logps_cache=cache)
    assert 'max_length' not in str(e.value) and 'tokenizer' not in str(e.value)
    with pytest.raises(StaleRefLogps, match=r'max_length: cache 256, this run 128'):
        build_maskdpo_dataset(SAMPLE, tok, 128, progress=False, ref_logps_cache=cache)
    with pytest.raises(StaleRefLogps, match=r'tokenizer: cache'):
        build_maskdpo_dataset(SAMPLE, bpe_tokenizer, 256, progress=False, ref_logps_cache=cache)
    other = str(tmp_path / 'other')
    build_tiny_llama(tok, other, seed=7)
    with pytest.raises(StaleRefLogps, match=r'reference weights_sha256: cache \w+, this run'):
        MaskDPO(hf(other), ref_logps_cache=cache, use_activation_checkpointing=False)
    with pytest.raises(StaleRefLogps, match=r'reference torch_dtype'):
        MaskDPO(ConfigDict(hf(tiny_model_dir), torch_dtype=torch.bfloat16),
                ref_logps_cache=cache, use_activation_checkpointing=False)
    with pytest.raises(FileNotFoundError, match='precompute_ref_logps'):
        MaskDPO(hf(tiny_model_dir), ref_logps_cache=str(tmp_path / 'missing.pt'),
                use_activation_checkpointing=False)


def test_switch_set_on_one_side_only_is_refused(tiny_model_dir, cache, data):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    online, cached = models(tiny_model_dir, cache)
    with pytest.raises(ValueError, match='give the dataset the same ref_logps_cache'):
        cached.compute_loss(maskdpo_collate_fn(data.items[:2])['data'])
    cached_data = build_maskdpo_dataset(SAMPLE, tok, 256, progress=False, ref_logps_cache=cache)
    with pytest.raises(ValueError, match='model.ref_logps_cache is None'):
        online.compute_loss(maskdpo_collate_fn(cached_data.items[:2])['data'])


def test_changing_the_masks_reuses_the_cache(tiny_model_dir, cache, data, monkeypatch):
    import maskdpo_xtuner.model.reference as reference

    def no_recompute(*a, **k):
        raise AssertionError('reference log-probs recomputed')

    monkeypatch.setattr(reference, 'compute_ref_logps', no_recompute)
    before = (sha(cache), os.path.getmtime(cache))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cached_data = build_maskdpo_dataset(SAMPLE, tok, 256, progress=False, ref_logps_cache=cache)
    online, cached = models(tiny_model_dir, cache)
    losses = set()
    for mode, sep in (('both', 'keep'), ('none', 'keep'), ('chosen', 'mask')):
        for m in (online, cached):
            m.mask_mode, m.separator_tokens = mode, sep
        a = online.compute_loss(maskdpo_collate_fn(data.items[6:12])['data'])['loss'].item()
        batch = maskdpo_collate_fn(cached_data.items[6:12])['data']
        tol = fp32_sum_tolerance(batch['ref_logps'])
        b = cached.compute_loss(batch)['loss']
        assert b.item() == pytest.approx(a, rel=0, abs=tol)
        losses.add(round(a, 6))
    assert len(losses) == 3  # the masks did change the loss
    assert (sha(cache), os.path.getmtime(cache)) == before  # same file, untouched


# ---------------------------------------------------------------------------- packing
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


def per_pair_logps(model, batch):
    """Per-sequence summed policy log-probs [n], through the model's own (un)packing."""
    data = dict(batch)
    labels = data.pop('labels')
    data.pop('token_class')
    cu = model._packed_attention(data) if model.use_varlen_attn else None
    with torch.no_grad():
        logps = token_logps(model.llm(**data).logits, labels)
    if cu is not None:
        logps = maskdpo_module.unpack(logps, cu, shifted=True)
    return logps.sum(-1)


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


@pytest.mark.gpu
def test_packed_equals_unpacked_with_flash_attn_varlen(tiny_model_dir, data):
    pytest.importorskip('flash_attn')
    import torch.distributed as dist
    from xtuner.engine.hooks import VarlenAttnArgsToMessageHubHook
    if not dist.is_initialized():  # XTuner's varlen attention asks for the rank
        dist.init_process_group('nccl', init_method='tcp://127.0.0.1:29533', rank=0,
                                world_size=1)
    cfg = ConfigDict(hf(tiny_model_dir), torch_dtype=torch.bfloat16,
                     attn_implementation='flash_attention_2')
    unpacked = MaskDPO(cfg, use_activation_checkpointing=False).cuda()
    packed = MaskDPO(ConfigDict(cfg), use_varlen_attn=True,
                     use_activation_checkpointing=False).cuda()
    pack = PackedPairs(data, max_packed_length=1024, seed=0)[0]
    to_cuda = lambda d: {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in d.items()}  # noqa
    a = unpacked.compute_loss(to_cuda(maskdpo_collate_fn(pack['pairs'])['data']))
    batch = maskdpo_collate_fn([pack], use_varlen_attn=True)
    hook = VarlenAttnArgsToMessageHubHook()
    hook.before_train_iter(None, 0, batch)
    try:
        b = packed.compute_loss(to_cuda(batch['data']))
    finally:
        hook.after_train_iter(None, 0)
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


@pytest.mark.slow
def test_sharded_precompute_equals_single_process(tiny_model_dir, cache, tmp_path):
    sharded = str(tmp_path / 'sharded.pt')
    opts = cache_options(tiny_model_dir, sharded)
    torchrun = os.path.join(os.path.dirname(sys.executable), 'torchrun')
    proc = subprocess.run(
        [torchrun, '--standalone', '--nproc_per_node', '2',
         os.path.join(ROOT, 'tools', 'precompute_ref_logps.py'), TINY, '--cfg-options']
        + [f'{k}={v}' for k, v in opts.items()],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '[rank 1/2]' in proc.stdout
    a = torch.load(cache, weights_only=True)
    b = torch.load(sharded, weights_only=True)
    assert torch.equal(a['offsets'], b['offsets'])
    torch.testing.assert_close(b['logps'], a['logps'], rtol=1e-5, atol=1e-5)
    assert all(a['meta'][k] == b['meta'][k] for k in ('data', 'tokenizer', 'max_length',
                                                        'reference'))


# ---------------------------------------------------------------------------- xtuner train
@pytest.mark.slow
def test_xtuner_train_with_the_cache_never_builds_the_reference(tiny_model_dir, tmp_path):
    cache = precompute(tiny_model_dir, str(tmp_path / 'ref_logps.pt'))
    work = str(tmp_path / 'work')
    opts = cache_options(tiny_model_dir, cache)
    proc = subprocess.run(
        [sys.executable, '-m', 'xtuner.tools.train', TINY, '--work-dir', work, '--cfg-options']
        + [f'{k}={v}' for k, v in opts.items()],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'no reference model is built' in log and f'read 32 pairs from {cache}' in log
    path = sorted(glob.glob(os.path.join(work, '*', 'vis_data', 'scalars.json')))[-1]
    loss = {r['iter']: r['loss'] for r in map(json.loads, open(path)) if 'loss' in r}
    assert sorted(loss) == list(range(1, 25))
    assert loss[1] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    assert max(loss[k] for k in range(20, 25)) < math.log(2)
    state = torch.load(os.path.join(work, 'iter_24.pth'), map_location='cpu',
                       weights_only=False)['state_dict']
    assert any(k.startswith('llm.') for k in state)
    assert not any(k.startswith('ref_llm.') for k in state)  # no reference was ever built
