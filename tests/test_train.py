"""Training the tiny CPU config with the README's command (tools/train.py over XTuner's trainer):
the loss falls below log 2, the checkpoint converts to a Hugging Face folder that loads and
generates, an interrupted run resumes exactly (``resume=True`` and ``--resume PATH``, no extra
environment), and a failed training returns a non-zero exit code."""
import glob
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from maskdpo_xtuner.train import model_path_options

TINY = os.path.join(ROOT, 'configs', 'maskdpo', 'tiny_cpu_maskdpo.py')
pytestmark = pytest.mark.slow


def run(args, cwd, check=True):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # the command must not need it
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def options(model_dir):
    return ['--cfg-options'] + [f'{k}={v}' for k, v in model_path_options(TINY, model_dir).items()]


def train(work, model_dir, *extra, check=True):
    return run([os.path.join(ROOT, 'tools', 'train.py'), TINY, '--work-dir', work,
                '--model', model_dir, *extra], cwd=ROOT, check=check)


def losses(work_dir):
    """Per-iteration training losses from mmengine's scalars log (latest run in work_dir)."""
    path = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))[-1]
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return {r['iter']: r['loss'] for r in rows if 'loss' in r}


@pytest.fixture(scope='module')
def trained(tiny_model_dir, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('train'))
    train(work, tiny_model_dir)
    return work


def test_loss_falls_below_log2(trained):
    loss = losses(trained)
    assert sorted(loss) == list(range(1, 25))
    assert loss[1] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    assert loss[24] < math.log(2) and max(loss[k] for k in range(20, 25)) < math.log(2)


def test_checkpoint_converts_loads_and_generates(trained, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    hf_dir = os.path.join(trained, 'hf')
    run(['-m', 'xtuner.tools.model_converters.pth_to_hf', TINY, os.path.join(trained, 'iter_24.pth'),
         hf_dir, '--fp32', '--safe-serialization'] + options(tiny_model_dir), cwd=ROOT)
    files = os.listdir(hf_dir)  # the README's conversion writes safetensors, no pickles
    assert 'model.safetensors' in files and not [f for f in files if f.endswith('.bin')], files
    model = AutoModelForCausalLM.from_pretrained(hf_dir)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # the converted weights are the trained policy: different from the start, equal to the pth
    state = torch.load(os.path.join(trained, 'iter_24.pth'), map_location='cpu',
                       weights_only=False)['state_dict']
    w = 'model.layers.0.mlp.up_proj.weight'
    assert torch.equal(model.state_dict()[w], state['llm.' + w].float())
    assert not torch.equal(model.state_dict()[w], base.state_dict()[w])
    ids = tok.apply_chat_template([{'role': 'user', 'content': 'Who was Elna Varga?'}],
                                  add_generation_prompt=True, return_tensors='pt')
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids.shape[1]


def test_interrupted_run_resumes_to_the_same_result(trained, tiny_model_dir, tmp_path):
    work = str(tmp_path)
    shutil.copy(os.path.join(trained, 'iter_16.pth'), work)
    with open(os.path.join(work, 'last_checkpoint'), 'w') as f:
        f.write(os.path.join(work, 'iter_16.pth'))
    train(work, tiny_model_dir, '--cfg-options', 'resume=True')
    resumed, full = losses(work), losses(trained)
    assert sorted(resumed) == list(range(17, 25))
    for it in resumed:
        assert resumed[it] == pytest.approx(full[it], rel=1e-4)


def test_resume_from_a_checkpoint_path_needs_no_environment(trained, tiny_model_dir, tmp_path):
    work = str(tmp_path / 'work')
    os.makedirs(work)
    ckpt = str(tmp_path / 'iter_16.pth')
    shutil.copy(os.path.join(trained, 'iter_16.pth'), ckpt)
    train(work, tiny_model_dir, '--resume', ckpt)
    resumed, full = losses(work), losses(trained)
    assert sorted(resumed) == list(range(17, 25))
    for it in resumed:
        assert resumed[it] == pytest.approx(full[it], rel=1e-4)


def test_a_failed_training_returns_a_nonzero_exit_code(tiny_model_dir, tmp_path):
    # the data are valid (bad data stop before the trainer: tests/test_integrity.py); the
    # trainer itself fails while building the model
    proc = train(str(tmp_path / 'w'), tiny_model_dir, '--cfg-options', 'model.loss_type=bogus',
                 check=False)
    assert proc.returncode != 0
    assert '$ ' in proc.stdout  # the trainer was started
    assert "loss_type must be one of" in proc.stdout + proc.stderr


LORA = os.path.join(ROOT, 'configs', 'maskdpo', 'tiny_cpu_maskdpo_lora.py')


def test_a_lora_run_converts_and_merges_into_its_base(tiny_model_dir, tmp_path):
    """The LoRA path of the docs: train (adapter only), `xtuner convert pth_to_hf
    --safe-serialization` (writes the adapter), `maskdpo-xtuner merge` (base + adapter, one
    safetensors model); the merged model's logits are the adapter applied to the base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from maskdpo_xtuner.cli import main
    work, adapter, merged = (str(tmp_path / x) for x in ('work', 'adapter', 'merged'))
    opts = [f'{k}={v}' for k, v in model_path_options(LORA, tiny_model_dir).items()]
    run([os.path.join(ROOT, 'tools', 'train.py'), LORA, '--work-dir', work, '--cfg-options',
         'train_cfg.max_epochs=0.5', *opts], cwd=ROOT)  # 4 steps
    state = torch.load(os.path.join(work, 'iter_4.pth'), map_location='cpu',
                       weights_only=False)['state_dict']
    assert any('lora_B' in k for k in state)
    run(['-m', 'xtuner.tools.model_converters.pth_to_hf', LORA, os.path.join(work, 'iter_4.pth'),
         adapter, '--fp32', '--safe-serialization', '--cfg-options', *opts], cwd=ROOT)
    assert 'adapter_model.safetensors' in os.listdir(adapter), os.listdir(adapter)
    assert main(['merge', tiny_model_dir, adapter, merged]) == 0
    files = os.listdir(merged)
    assert 'model.safetensors' in files and 'tokenizer.json' in files
    assert not [f for f in files if f.endswith('.bin') or f.startswith('adapter')], files

    tok = AutoTokenizer.from_pretrained(merged)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float64)
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float64), adapter)
    out = AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float64)
    from safetensors import safe_open
    with safe_open(os.path.join(merged, 'model.safetensors'), 'pt') as f:  # the base's dtype
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    for q in ('Who was Elna Varga?', 'Where is Port Ilvar?', 'Tell me about Pecs.'):
        ids = tok.apply_chat_template([{'role': 'user', 'content': q}],
                                      add_generation_prompt=True, return_tensors='pt')
        with torch.no_grad():
            a, b, c = (m(ids).logits for m in (with_adapter, out, base))
        # fp32 weights (merged once, in fp32) read in float64: equal to ~1e-6 of the logits
        assert (a - b).abs().max() <= 1e-5 * a.abs().max(), q
        assert (a - c).abs().max() > 1e-3 * a.abs().max(), q  # the adapter does something
