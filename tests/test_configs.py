"""The 8B configs carry the paper's setting, and build a runner with a tiny model swapped in."""
import glob
import os

import pytest
from mmengine.config import Config
from mmengine.optim import CosineAnnealingLR, LinearLR
from torch.optim import AdamW

from conftest import ROOT, SAMPLE
from maskdpo_xtuner.model import MaskDPO
from maskdpo_xtuner.train import model_path_options

CFG = os.path.join(ROOT, 'configs', 'maskdpo')
FULL = os.path.join(CFG, 'llama3_1_8b_instruct_maskdpo_full.py')
DPO = os.path.join(CFG, 'llama3_1_8b_instruct_dpo_full.py')
LORA = os.path.join(CFG, 'llama3_1_8b_instruct_maskdpo_lora.py')
TINY = os.path.join(CFG, 'tiny_cpu_maskdpo.py')


def global_batch(cfg):
    return cfg.train_dataloader.batch_size * cfg.optim_wrapper.accumulative_counts * cfg.num_gpus


@pytest.mark.parametrize('path', [FULL, DPO, LORA])
def test_paper_setting(path):
    cfg = Config.fromfile(path)
    assert cfg.train_cfg.max_epochs == 3
    assert global_batch(cfg) == cfg.global_batch == 64
    assert cfg.optim_wrapper.optimizer.type is AdamW
    assert cfg.optim_wrapper.optimizer.betas == (0.9, 0.999)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0
    warmup, cosine = cfg.param_scheduler
    assert warmup.type is LinearLR and cosine.type is CosineAnnealingLR
    assert cosine.end == 3 and cosine.eta_min == 0 and warmup.end == cosine.begin
    assert cfg.model.type is MaskDPO
    assert cfg.model.beta == 0.1 and cfg.model.loss_type == 'sigmoid'
    assert cfg.model.llm.pretrained_model_name_or_path == 'meta-llama/Llama-3.1-8B-Instruct'
    if path == LORA:  # LoRA is our variant: the paper trains all weights
        assert cfg.num_gpus == 1 and cfg.model.lora is not None and cfg.model.ref_llm is None
    else:
        assert cfg.optim_wrapper.optimizer.lr == 5e-6
        assert cfg.num_gpus == 8 and cfg.model.ref_llm is not None  # ZeRO-3 needs it explicit


def test_dpo_baseline_differs_only_in_mask_mode():
    full, dpo = Config.fromfile(FULL), Config.fromfile(DPO)
    assert full.model.mask_mode == 'both' and dpo.model.mask_mode == 'none'
    dpo.model.mask_mode = 'both'
    assert dpo.model.to_dict() == full.model.to_dict()
    assert dpo.train_dataloader.to_dict() == full.train_dataloader.to_dict()
    assert dpo.optim_wrapper.to_dict() == full.optim_wrapper.to_dict()


def _flat(node, prefix=''):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _flat(v, f'{prefix}{k}.')
    else:
        yield prefix.rstrip('.'), node


def test_smollm2_config_changes_only_what_it_says():
    """The real run's config is the 8B one with the model, batch x accumulation and the CPU's
    needs changed (its header lists them), nothing else."""
    full = dict(_flat(Config.fromfile(FULL).to_dict()))
    small_cfg = Config.fromfile(os.path.join(CFG, 'smollm2_cpu_maskdpo.py'))
    small = dict(_flat(small_cfg.to_dict()))
    changed = {k for k in full.keys() | small.keys() if full.get(k, None) != small.get(k, None)}
    allowed = {'pretrained_model_name_or_path', 'data_files', 'batch_size', 'accumulative_counts',
               'num_gpus', 'warmup_ratio', 'global_batch'}
    prefixes = ('tokenizer.', 'model.llm.', 'model.ref_llm.', 'train_dataloader.dataset.',
                'train_dataset.',  # deleted: the dataloader's copy is the one used
                'optim_wrapper.', 'param_scheduler', 'env_cfg.dist_cfg.backend',
                'default_hooks.logger.interval', 'default_hooks.checkpoint.interval',
                'model.use_activation_checkpointing', 'train_dataloader.batch_size')
    unexpected = {k for k in changed if k not in allowed and not k.startswith(prefixes)}
    assert not unexpected, unexpected
    for k in changed & {k for k in full if k.startswith('train_dataloader.dataset.')}:
        assert k.endswith(('pretrained_model_name_or_path', 'data_files')), k
    assert small_cfg.optim_wrapper.optimizer.lr == 5e-6 and small_cfg.model.beta == 0.1
    assert small_cfg.train_cfg.max_epochs == 3 and small_cfg.max_length == 1024
    assert global_batch(small_cfg) == small_cfg.global_batch == 8


def test_every_config_has_a_launch_command_in_its_header():
    for path in glob.glob(os.path.join(CFG, '*.py')):
        head = open(path).read().split('from ')[0]
        assert 'xtuner train configs/maskdpo/' + os.path.basename(path) in head, path


@pytest.mark.parametrize('path', [FULL, DPO, LORA])
def test_tiny_model_substituted_builds_the_runner(path, tiny_model_dir, tmp_path):
    from mmengine.runner import Runner
    cfg = Config.fromfile(path)
    options = model_path_options(cfg, tiny_model_dir)
    options['train_dataloader.dataset.data_files'] = [SAMPLE]
    options['model.use_activation_checkpointing'] = False
    cfg.merge_from_dict(options)  # what --cfg-options does
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    assert isinstance(runner.model, MaskDPO)
    assert runner.model.mask_mode == cfg.model.mask_mode
    loader = runner.build_dataloader(runner._train_dataloader)
    batch = next(iter(loader))
    assert batch['data']['input_ids'].shape[0] == 2 * cfg.train_dataloader.batch_size
    out = runner.model(**batch, mode='loss')
    assert 0 < out['loss'].item() < 10


def test_tiny_config_is_cpu_ready():
    from mmengine.optim import OptimWrapper
    cfg = Config.fromfile(TINY)
    assert cfg.optim_wrapper.type is OptimWrapper  # AmpOptimWrapper refuses CPU
    steps_per_epoch = 32 // cfg.train_dataloader.batch_size
    assert cfg.param_scheduler[0].end * steps_per_epoch >= 2  # a 1-iteration warm-up never ramps
