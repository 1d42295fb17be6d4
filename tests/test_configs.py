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


# ---------------------------------------------------------------- the family and its copies
def _built(node):
    """A config's values with its lazy imports resolved to the objects they name."""
    from mmengine.config.lazy import LazyAttr, LazyObject
    if isinstance(node, (LazyObject, LazyAttr)):
        return node.build()
    if isinstance(node, dict):
        return {k: _built(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_built(v) for v in node)
    return node


def _values(path):
    return _built(Config.fromfile(path)._to_lazy_dict())


def _changed(a, b):
    fa, fb = dict(_flat(a)), dict(_flat(b))
    return {k for k in fa.keys() | fb.keys() if fa.get(k, None) != fb.get(k, None)}


TINY_CHANGES = ('pretrained_model_name_or_path', 'tokenizer.pretrained_model_name_or_path',
                'model.llm.', 'model.ref_llm', 'model.use_activation_checkpointing',
                'data_files', 'max_length', 'batch_size', 'global_batch', 'lr', 'num_gpus',
                'warmup_ratio', 'train_dataset', 'train_dataloader.batch_size',
                'train_dataloader.dataset.data_files', 'train_dataloader.dataset.max_length',
                'train_dataloader.dataset.tokenizer.pretrained_model_name_or_path',
                'optim_wrapper.', 'param_scheduler', 'env_cfg.dist_cfg.backend',
                'default_hooks.logger.interval', 'default_hooks.checkpoint.interval')
PACKED_CHANGES = ('max_packed_length', 'model.use_varlen_attn', 'train_dataloader.batch_size',
                  'train_dataloader.dataset', 'train_dataloader.collate_fn.use_varlen_attn',
                  'custom_hooks')
# config -> (the config it is made from, what it may change: keys or key prefixes)
FAMILY = {
    'llama3_1_8b_instruct_dpo_full': ('llama3_1_8b_instruct_maskdpo_full', ('model.mask_mode',)),
    'llama3_1_8b_instruct_maskdpo_lora': (
        'llama3_1_8b_instruct_maskdpo_full',
        ('num_gpus', 'batch_size', 'accumulative_counts', 'global_batch', 'lr', 'model.ref_llm',
         'model.lora', 'train_dataloader.batch_size', 'optim_wrapper.accumulative_counts',
         'optim_wrapper.optimizer.lr')),
    'llama3_1_8b_instruct_maskdpo_packed': ('llama3_1_8b_instruct_maskdpo_full', PACKED_CHANGES),
    'tiny_cpu_maskdpo': ('llama3_1_8b_instruct_maskdpo_full', TINY_CHANGES),
    'tiny_cpu_maskdpo_packed': ('tiny_cpu_maskdpo', PACKED_CHANGES),
    'tiny_cpu_maskdpo_zero3': ('tiny_cpu_maskdpo', ('model.ref_llm',)),
    'tiny_cpu_maskdpo_lora': ('tiny_cpu_maskdpo', ('lr', 'model.lora', 'optim_wrapper.optimizer.lr')),
    'world_maskdpo_cpu': ('tiny_cpu_maskdpo', (
        'data_files', 'batch_size', 'global_batch', 'lr', 'train_dataloader.batch_size',
        'train_dataloader.dataset.data_files', 'train_dataloader.dataset.progress',
        'optim_wrapper.optimizer.lr', 'default_hooks.logger.interval',
        'default_hooks.checkpoint.interval')),
    'world_dpo_cpu': ('world_maskdpo_cpu', ('model.mask_mode',)),
}


def test_every_config_is_in_the_family_and_differs_only_where_meant():
    """One source of truth for the paper's values: each config is its parent with only the
    listed keys changed (smollm2's own test above lists its changes)."""
    from maskdpo_xtuner.configs import config_names
    names = config_names()
    assert set(names) == set(FAMILY) | {'llama3_1_8b_instruct_maskdpo_full', 'smollm2_cpu_maskdpo'}
    for name, (parent, allowed) in FAMILY.items():
        changed = _changed(Config.fromfile(names[parent]).to_dict(),
                           Config.fromfile(names[name]).to_dict())
        assert changed, name
        unexpected = {k for k in changed if not any(k == a or k.startswith(a)
                                                    for a in allowed)}
        assert not unexpected, (name, sorted(unexpected))


def test_a_plain_copy_fails_and_copy_cfg_writes_one_that_loads_anywhere(tmp_path):
    """configs/ inherit with relative imports, so `cp` alone gives a file that cannot load;
    copy-cfg writes a self-contained one (XTuner's PART style) for every config, which loads
    from an empty folder and builds exactly the original's runner config."""
    import shutil
    from maskdpo_xtuner.configs import config_names, copy_config, list_configs
    plain = tmp_path / 'plain.py'
    shutil.copy(TINY, plain)
    with pytest.raises(Exception):
        Config.fromfile(str(plain))
    assert list_configs('maskdpo') and set(list_configs()) == set(config_names())
    runner_keys = ('tokenizer', 'model', 'train_dataloader', 'optim_wrapper', 'param_scheduler',
                   'train_cfg', 'default_hooks', 'custom_hooks', 'env_cfg', 'visualizer',
                   'randomness', 'log_processor', 'resume', 'load_from')
    for name, path in config_names().items():
        out = copy_config(name, str(tmp_path / 'copies'))
        text = open(out).read()
        assert 'read_base' not in text and 'PART 5' in text, name
        original, copy = _values(path), Config.fromfile(out)
        for key in runner_keys:
            assert _built(copy._cfg_dict._to_lazy_dict()[key]) == original[key], (name, key)
    with pytest.raises(FileExistsError):
        copy_config('tiny_cpu_maskdpo', str(tmp_path / 'copies'))
    with pytest.raises(ValueError, match='did you mean'):
        copy_config('tiny_cpu_maskdp', str(tmp_path))


@pytest.mark.slow
def test_the_copied_tiny_config_trains_and_writes_tensorboard_curves(tiny_model_dir, tmp_path):
    """A user's path: copy the tiny config into an empty folder, set the model and data in its
    PART 1 only, train one iteration with XTuner's own trainer from there, and read the
    training curves back from the TensorBoard event file."""
    import subprocess
    import sys
    from maskdpo_xtuner.configs import copy_config
    from maskdpo_xtuner.train import train_env
    out = copy_config('tiny_cpu_maskdpo', str(tmp_path))
    text = open(out).read()
    for old, new in ((f"pretrained_model_name_or_path = 'work_dirs/tiny_cpu/model'",
                      f'pretrained_model_name_or_path = {tiny_model_dir!r}'),
                     ("data_files = ['data/sample_pairs.jsonl']", f'data_files = [{SAMPLE!r}]')):
        assert old in text
        text = text.replace(old, new)
    open(out, 'w').write(text)
    env = dict(train_env(), OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'xtuner.tools.train', out, '--work-dir', 'work',
                           '--cfg-options', 'train_cfg.max_epochs=0.125'],  # 8 steps/epoch -> 1
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and (tmp_path / 'work' / 'iter_1.pth').exists(), \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    events = list((tmp_path / 'work').glob('*/vis_data/events.out.tfevents.*'))
    assert len(events) == 1, events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()['scalars'])
    for tag in ('loss', 'chosen_rewards', 'rejected_rewards', 'reward_margin', 'reward_acc',
                'chosen_tokens', 'rejected_tokens', 'masked_share', 'lr'):
        assert tag in tags, (tag, sorted(tags))
    assert [e.step for e in acc.Scalars('loss')] == [1]
    assert 0 < acc.Scalars('loss')[0].value < 10 and acc.Scalars('chosen_tokens')[0].value > 0
    assert acc.Scalars('lr')[0].value == pytest.approx(1e-4, rel=1e-3)  # lr 1e-3 x warm-up 0.1
