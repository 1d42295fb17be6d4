"""Training refuses, before any model is loaded, a pairs file too small for the config's
schedule, saying how many pairs it needs (maskdpo_xtuner/train.py: required_pairs); before, an
empty or small file passed every check and died in mmengine's scheduler after the models were
loaded ("end should be larger than begin")."""
import json
import os

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, SAMPLE
from maskdpo_xtuner.train import required_pairs, validate_training_data

CONFIGS = os.path.join(ROOT, 'configs', 'maskdpo')
TINY = os.path.join(CONFIGS, 'tiny_cpu_maskdpo.py')


def schedulers(cfg, epoch_length):
    """mmengine's own conversion of the config's epoch-based schedulers to iterations."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for sc in cfg.param_scheduler:
        kw = {k: v for k, v in sc.items() if k not in ('type', 'convert_to_iter_based')}
        sc['type'].build_iter_from_epoch(opt, epoch_length=epoch_length, **kw)


@pytest.mark.parametrize('name, world, pairs', [
    ('llama3_1_8b_instruct_maskdpo_full.py', 8, 705),   # 12 iterations of 8 x 8 pairs
    ('tiny_cpu_maskdpo.py', 1, 13)])                     # 4 iterations of 4 pairs
def test_the_fewest_pairs_match_mmengines_limit(name, world, pairs):
    cfg = Config.fromfile(os.path.join(CONFIGS, name))
    need, why = required_pairs(cfg, world)
    assert need == pairs, why
    per_step = cfg.train_dataloader.batch_size * world
    steps = -(-need // per_step)  # len(dataloader) with `need` pairs
    schedulers(cfg, steps)  # mmengine accepts it
    with pytest.raises(ValueError, match='end should be larger than begin'):
        schedulers(cfg, -(-(need - 1) // per_step))  # one pair fewer: mmengine refuses


def test_one_optimizer_step_needs_a_full_accumulation():
    """The SmolLM2 config accumulates 8 iterations of 1 pair: its warm-up would start with 4,
    one optimizer step needs 8."""
    cfg = Config.fromfile(os.path.join(CONFIGS, 'smollm2_cpu_maskdpo.py'))
    assert cfg.optim_wrapper.accumulative_counts == 8
    assert required_pairs(cfg, 1)[0] == 8
    schedulers(cfg, 4)


def test_too_few_valid_pairs_are_refused_naming_the_need(tmp_path):
    pairs = [json.loads(x) for x in open(SAMPLE, encoding='utf-8')]
    for n, ok in ((12, False), (13, True)):
        path = tmp_path / f'{n}.jsonl'
        path.write_text(''.join(json.dumps(p) + '\n' for p in pairs[:n]))
        opts = {'train_dataloader.dataset.data_files': str(path)}
        if ok:
            assert 'enough pairs' in validate_training_data(TINY, opts)[-1]
        else:
            with pytest.raises(ValueError, match=r'12 valid training pair\(s\), but this config '
                                                 r'needs at least 13'):
                validate_training_data(TINY, opts)
    with pytest.raises(ValueError, match='at least 97'):  # 4 pairs per process x 8 processes
        validate_training_data(TINY, {'train_dataloader.dataset.data_files': str(path)}, 8)
