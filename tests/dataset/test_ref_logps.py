"""Reference log-probs computed once (maskdpo_xtuner/dataset/ref_logps.py, model/reference.py): the same
loss and gradients as the online reference, refusal when stale, masks changed without
recomputing, sharded precompute, and training that never builds the reference."""
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
from transformers import AutoTokenizer

from conftest import (ROOT, SAMPLE, TINY_CONFIG as TINY, cache_options, fp32_sum_tolerance, hf,
                      precompute, twin_models)
from maskdpo_xtuner.dataset import build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.model import MaskDPO
from maskdpo_xtuner.dataset.ref_logps import StaleRefLogps
from maskdpo_xtuner.offline.tiny import build_tiny_llama

pytestmark = pytest.mark.usefixtures('one_thread')


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def models(model_dir, cache):
    """(online, cached)."""
    return twin_models(model_dir, 0, {'ref_logps_cache': cache})


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


def test_the_cache_records_the_dtype_the_reference_really_ran_in(tiny_model_dir, cache,
                                                                 tmp_path):
    """A config without torch_dtype loads fp32: the fingerprint says torch.float32 (it said
    'None', so an fp32 cache and a bf16 run that set no dtype could not be told apart)."""
    from maskdpo_xtuner.dataset.ref_logps import load_ref_logps
    assert load_ref_logps(cache)['meta']['reference']['torch_dtype'] == 'torch.float32'
    unset = precompute(tiny_model_dir, str(tmp_path / 'unset.pt'),
                       **{'model.llm.torch_dtype': None})
    assert load_ref_logps(unset)['meta']['reference']['torch_dtype'] == 'torch.float32'
    for dtype in (None, 'auto', 'float32'):  # all load fp32 here: the fp32 cache is accepted
        MaskDPO(ConfigDict(hf(tiny_model_dir), torch_dtype=dtype), ref_logps_cache=unset,
                use_activation_checkpointing=False)
    with pytest.raises(StaleRefLogps, match=r'torch_dtype: cache torch.float32, this run '
                                            r'torch.bfloat16'):
        MaskDPO(ConfigDict(hf(tiny_model_dir), torch_dtype='bfloat16'), ref_logps_cache=unset,
                use_activation_checkpointing=False)


def test_lora_base_keeps_its_bf16_weights(tiny_model_dir, data):
    """peft's k-bit preparation cast a bf16 base to fp32 (2x memory); only the adapter is fp32."""
    from peft import LoraConfig
    model = MaskDPO(hf(tiny_model_dir, torch.bfloat16), use_activation_checkpointing=False,
                    lora=dict(type=LoraConfig, r=4, lora_alpha=8, task_type='CAUSAL_LM'))
    dtypes = {n: p.dtype for n, p in model.llm.named_parameters()}
    assert {d for n, d in dtypes.items() if 'lora_' not in n} == {torch.bfloat16}
    assert {d for n, d in dtypes.items() if 'lora_' in n} == {torch.float32}
    assert all(p.requires_grad == ('lora_' in n) for n, p in model.llm.named_parameters())
    out = model.compute_loss(maskdpo_collate_fn(data[:2])['data'])
    out['loss'].backward()
    assert all(p.grad is not None for n, p in model.llm.named_parameters() if 'lora_' in n)


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


# ---------------------------------------------------------------------------- resumable, damaged
def _content(path):
    c = torch.load(path, weights_only=True)
    meta = {k: v for k, v in c['meta'].items() if k != 'created'}
    return meta, c['logps'], c['offsets']


def test_interrupted_precompute_resumes_to_the_same_file(tiny_model_dir, cache, tmp_path,
                                                         monkeypatch, capsys):
    """Issue 10, defect 10: a run that dies after some shards computes only the rest, and the
    file equals an uninterrupted run's; no shard or temporary file is left behind."""
    import maskdpo_xtuner.model.reference as reference_mod
    real, calls = reference_mod.compute_ref_logps, []

    def dies_after_two(*a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt('killed')
        calls.append(len(a[2]))
        return real(*a, **k)

    path = str(tmp_path / 'resumed.pt')
    monkeypatch.setattr(reference_mod, 'compute_ref_logps', dies_after_two)
    with pytest.raises(SystemExit) as ctrl_c:  # the tool ends a Ctrl-C with exit code 130
        load_precompute(tiny_model_dir, path, '--save-every', '5')
    assert ctrl_c.value.code == 130
    assert not os.path.exists(path) and len(glob.glob(path + '.parts/shard-*.pt')) == 2
    monkeypatch.setattr(reference_mod, 'compute_ref_logps',
                        lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    calls.clear()
    load_precompute(tiny_model_dir, path, '--save-every', '5')
    assert 'resuming: 10 pairs already computed, 22 to go' in capsys.readouterr().out
    assert sum(calls) == 22
    monkeypatch.setattr(reference_mod, 'compute_ref_logps', real)
    whole = load_precompute(tiny_model_dir, str(tmp_path / 'whole.pt'), '--save-every', '5')
    a, b = _content(whole), _content(path)  # the same batches, so the same bits
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    torch.testing.assert_close(b[1], _content(cache)[1], rtol=1e-5, atol=1e-5)  # other batches
    assert not os.path.exists(path + '.parts') and not glob.glob(path + '.tmp*')


def load_precompute(model_dir, path, *extra):
    from conftest import load_script
    opts = cache_options(model_dir, path)
    return load_script('precompute_ref_logps').main(
        [TINY, '--batch-size', '5', *extra, '--cfg-options']
        + [f'{k}={v}' for k, v in opts.items()])


def test_damaged_caches_are_refused_naming_the_file(tiny_model_dir, cache, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(open(cache, 'rb').read()[:2000])
    with pytest.raises(StaleRefLogps, match=rf'{truncated}: cannot read'):
        build_maskdpo_dataset(SAMPLE, tok, 256, progress=False, ref_logps_cache=str(truncated))
    c = torch.load(cache, weights_only=True)
    short = c['offsets'].clone()
    short[1:] -= 1  # the first row one value short, every later row shifted
    torch.save({**c, 'offsets': short, 'logps': c['logps'][:-1]}, tmp_path / 'short.pt')
    with pytest.raises(StaleRefLogps, match=r'short.pt: pair #0 chosen: \d+ values for \d+ tok'):
        build_maskdpo_dataset(SAMPLE, tok, 256, progress=False,
                              ref_logps_cache=str(tmp_path / 'short.pt'))


def test_a_killed_writers_temporary_file_is_cleaned(tmp_path):
    from maskdpo_xtuner.dataset.ref_logps import save_ref_logps
    path = str(tmp_path / 'c.pt')
    dead = subprocess.Popen(['true'])
    dead.wait()  # a writer that is gone
    open(f'{path}.tmp{dead.pid}', 'wb').write(b'half a file')  # what kill -9 mid-save leaves
    key = {'data': {'sha256': 'x', 'pairs': 1, 'pair_sha256': ['x']}, 'tokenizer': 't',
           'max_length': 8}
    save_ref_logps(path, {0: (torch.zeros(2), torch.zeros(3))}, key, {'path': 'm'})
    assert os.listdir(tmp_path) == ['c.pt']
    with pytest.raises(ValueError, match='missing for 1 pairs'):
        save_ref_logps(path, {}, key, {'path': 'm'})
