"""DeepSpeed in the environment: every ``--deepspeed`` config passes DeepSpeed's own config check
with the values ``xtuner train`` fills in, and (slow) ZeRO-3 runs on two CPU processes with gloo
through ``tools/train.py`` and its checkpoint converts with XTuner's ``pth_to_hf``."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

CONFIGS = {
    '8b_full': os.path.join(ROOT, 'configs', 'maskdpo', 'llama3_1_8b_instruct_maskdpo_full.py'),
    'tiny_zero3': os.path.join(ROOT, 'configs', 'maskdpo', 'tiny_cpu_maskdpo_zero3.py'),
}


def deepspeed_jsons():
    import xtuner
    presets = glob.glob(os.path.join(os.path.dirname(xtuner.__file__), 'configs', 'deepspeed',
                                     '*.json'))
    ours = glob.glob(os.path.join(ROOT, 'configs', 'deepspeed', '*.json'))
    assert any(p.endswith('deepspeed_zero3.json') for p in presets) and ours
    return sorted(presets) + sorted(ours)


def filled(ds_cfg, cfg, world_size, bf16):
    """``ds_cfg`` with the values xtuner/tools/train.py gives its 'auto' fields."""
    ds = json.loads(json.dumps(ds_cfg))
    ds['gradient_accumulation_steps'] = cfg.optim_wrapper.get('accumulative_counts', 1)
    ds['train_micro_batch_size_per_gpu'] = cfg.train_dataloader.batch_size
    ds['gradient_clipping'] = cfg.optim_wrapper.clip_grad.max_norm
    for key, on in (('bf16', bf16), ('fp16', False)):
        if ds.get(key, {}).get('enabled') == 'auto':
            ds[key]['enabled'] = on
    ds['train_batch_size'] = (ds['gradient_accumulation_steps']
                              * ds['train_micro_batch_size_per_gpu'] * world_size)
    return ds


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_every_deepspeed_config_passes_deepspeeds_check(config, monkeypatch):
    import deepspeed.comm
    from deepspeed.runtime.config import DeepSpeedConfig
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIGS[config])
    gpus = cfg.num_gpus

    class DataParallel:  # DeepSpeed's `mpu` interface: the world size without a process group
        @staticmethod
        def get_data_parallel_world_size():
            return gpus
    # DeepSpeedConfig asks for the rank before it asks `mpu`, and falls back to one process
    monkeypatch.setattr(deepspeed.comm, 'get_rank', lambda *a, **k: 0)
    for path in deepspeed_jsons():
        with open(path) as f:
            raw = json.load(f)
        ds = filled(raw, cfg, gpus, bf16=config != 'tiny_zero3')
        checked = DeepSpeedConfig(ds, mpu=DataParallel)  # raises on an inconsistent or unknown setting
        name = os.path.basename(path)
        assert checked.train_batch_size == ds['train_batch_size'], name
        assert checked.zero_optimization_stage == raw.get('zero_optimization', {}).get('stage',
                                                                                        0), name
        if config == '8b_full':  # the paper's 64 pairs per step on 8 GPUs
            assert checked.train_batch_size == 64, name
        if raw.get('bf16', {}).get('enabled') == 'auto':  # XTuner's presets: bf16 on a GPU
            assert checked.bfloat16_enabled == (config == '8b_full'), name


@pytest.mark.slow
def test_zero3_on_two_cpu_processes_trains_and_converts(tiny_model_dir, tmp_path):
    work, hf_dir = str(tmp_path / 'z3'), str(tmp_path / 'hf')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), CONFIGS['tiny_zero3'],
           '--nproc', '2', '--deepspeed',
           os.path.join(ROOT, 'configs', 'deepspeed', 'zero3_cpu_fp32.json'),
           '--model', tiny_model_dir, '--work-dir', work,
           '--cfg-options', 'default_hooks.checkpoint.interval=4', 'train_cfg.max_epochs=1']
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = os.path.join(work, 'iter_4.pth')
    shards = sorted(os.listdir(ckpt))
    assert 'zero_pp_rank_1_mp_rank_00_model_states.pt' in shards, shards  # a ZeRO checkpoint
    conv = subprocess.run([sys.executable, '-m', 'xtuner.tools.model_converters.pth_to_hf',
                           CONFIGS['tiny_zero3'], ckpt, hf_dir, '--fp32', '--cfg-options',
                           f'pretrained_model_name_or_path={tiny_model_dir}',
                           f'tokenizer.pretrained_model_name_or_path={tiny_model_dir}',
                           f'model.llm.pretrained_model_name_or_path={tiny_model_dir}',
                           f'model.ref_llm.pretrained_model_name_or_path={tiny_model_dir}'],
                          env=dict(env, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1'),
                          capture_output=True, text=True, timeout=600)
    assert conv.returncode == 0 and os.path.isfile(os.path.join(hf_dir, 'config.json')), \
        conv.stderr[-3000:]
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trained = AutoModelForCausalLM.from_pretrained(hf_dir)
    assert trained.dtype == torch.float32
    moved = max((p - q).abs().max().item()
                for p, q in zip(base.parameters(), trained.parameters()))
    assert 0 < moved < 1  # the trained weights, gathered from both shards, not the base
