"""Training entry point over XTuner's trainer, and the one place that knows where a config keeps
its model path.

A config names its model in several nested keys (the tokenizer XTuner saves with converted
checkpoints, the policy, the explicit reference of the ZeRO-3 configs, the dataset's tokenizer,
nested one level deeper when packing). :func:`model_path_keys` finds them all, so substituting
a model is one option everywhere: ``tools/train.py CONFIG --model PATH``, the world study and
the tests all go through :func:`model_path_options`.

:func:`train_command` builds the command that really trains: ``python -m maskdpo_xtuner.train``
(``torchrun`` for several processes), which runs XTuner's ``xtuner.tools.train`` and returns the
trainer's exit code, unlike the ``xtuner train`` wrapper, which exits 0 when training fails. On a
machine without CUDA it first makes ``torch.cuda.set_device`` a no-op: mmengine's ``init_dist``
calls it for every torch launcher, so several CPU processes (gloo, DeepSpeed ZeRO-3 included)
could not start otherwise. It also sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``: XTuner reads ``--resume PATH`` checkpoints (mmengine
pickles) before any code of ours runs, and torch >= 2.6 refuses them otherwise.

:func:`validate_training_data` reads and checks every Mask-DPO dataset of a config (the
``build_maskdpo_dataset`` entries of ``train_dataloader``, after ``--cfg-options``) before the
trainer starts: XTuner's Runner builds the policy and the reference first and the dataloader
last, so without it a bad line on an 8B config is found only after minutes of loading.
``tools/train.py`` runs it first.
"""
import os
import sys
from typing import Dict, List, Optional, Tuple

PATH_FIELD = 'pretrained_model_name_or_path'


def _walk(node, prefix=''):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f'{prefix}{k}.')
        if PATH_FIELD in node:
            yield prefix + PATH_FIELD, node[PATH_FIELD]


def model_path_keys(cfg) -> List[str]:
    """Dotted keys of every nested ``pretrained_model_name_or_path`` that holds the config's model
    (the value of its top-level ``pretrained_model_name_or_path``), e.g.
    ``['tokenizer.pretrained_model_name_or_path', 'model.llm.pretrained_model_name_or_path',
    ...]``. A config without that top-level variable is refused: it would be a guess."""
    cfg = _load(cfg)
    if PATH_FIELD not in cfg:
        raise ValueError(f'the config has no top-level {PATH_FIELD!r}: cannot tell which nested '
                         'keys hold its model')
    model = cfg[PATH_FIELD]
    keys = [k for k, v in _walk({k: cfg[k] for k in cfg if k != PATH_FIELD}) if v == model]
    if not keys:
        raise ValueError(f'no nested key of the config holds its model {model!r}')
    return keys


def model_path_options(cfg, path: str) -> Dict[str, str]:
    """``--cfg-options`` that point every model-path key of ``cfg`` (a Config or a file) at
    ``path``, and the top-level variable with them."""
    return {**{k: path for k in model_path_keys(cfg)}, PATH_FIELD: path}


def _load(cfg):
    if isinstance(cfg, str):
        from mmengine.config import Config
        return Config.fromfile(cfg)
    return cfg


def train_command(config: str, work_dir: Optional[str] = None, model: Optional[str] = None,
                  cfg_options: Optional[Dict[str, str]] = None, resume: Optional[str] = None,
                  deepspeed: Optional[str] = None, nproc: int = 1,
                  python: str = sys.executable) -> List[str]:
    """The command line that trains ``config`` (see the module docstring)."""
    options = dict(model_path_options(config, model) if model else {})
    options.update(cfg_options or {})
    launch = ([python, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc), '-m']
              if nproc > 1 else [python, '-m'])
    cmd = launch + ['maskdpo_xtuner.train', config]
    if nproc > 1:
        cmd += ['--launcher', 'pytorch']
    if work_dir:
        cmd += ['--work-dir', work_dir]
    if resume:
        cmd += ['--resume', resume]
    if deepspeed:
        cmd += ['--deepspeed', deepspeed]
    if options:
        cmd += ['--cfg-options', *(f'{k}={_option(v)}' for k, v in options.items())]
    return cmd


def _datasets(node):
    """Every dict of the config whose ``type`` is the Mask-DPO dataset builder."""
    from maskdpo_xtuner.dataset import build_maskdpo_dataset
    if isinstance(node, dict):
        t = node.get('type')
        if t is build_maskdpo_dataset or (isinstance(t, str)
                                          and t.endswith('build_maskdpo_dataset')):
            yield node
        for v in node.values():
            yield from _datasets(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _datasets(v)


def validate_training_data(config, cfg_options: Optional[Dict[str, str]] = None,
                           world_size: int = 1) -> List[str]:
    """Check the records of every Mask-DPO dataset of ``config`` (a file or Config) with its own
    ``on_error`` and ``dataset_map_fn``; raises the first :class:`RecordError` (file:line:field)
    under ``on_error='raise'``, and a ``ValueError`` when the valid pairs are fewer than the
    config's schedule needs on ``world_size`` processes (:func:`required_pairs`). Returns one
    summary line per dataset. No model is loaded."""
    from mmengine.config import DictAction
    from maskdpo_xtuner.dataset.records import read_pairs
    cfg = _load(config)
    if cfg_options:
        cfg.merge_from_dict({k: DictAction._parse_iterable(v) if isinstance(v, str) else v
                             for k, v in cfg_options.items()})
    out, seen, kept, files_read = [], set(), 0, []
    for ds in _datasets(cfg.get('train_dataloader', {})):  # the dataset training reads
        files = ds.get('data_files')
        files = [files] if isinstance(files, str) else list(files or [])
        key = (tuple(files), ds.get('on_error', 'raise'))
        if not files or key in seen:
            continue
        seen.add(key)
        _, report = read_pairs(files, on_error=key[1], map_fn=ds.get('dataset_map_fn'))
        kept += report.kept
        files_read += files
        out.append(f'training data {files}: ' + report.summary().replace('\n', '\n    '))
    if files_read:
        need, why = required_pairs(cfg, world_size)
        if kept < need:
            raise ValueError(f'{", ".join(files_read)}: {kept} valid training pair(s), but this '
                             f'config needs at least {need}: {why}. Add pairs, or lower the '
                             'batch size / warm-up in the config')
        out.append(f'enough pairs for the schedule: {kept} >= {need} ({why})')
    return out


def _schedulers(cfg) -> list:
    sched = cfg.get('param_scheduler') or []
    return [sched] if isinstance(sched, dict) else list(sched)


def required_pairs(config, world_size: int = 1) -> Tuple[int, str]:
    """(the fewest pairs ``config`` can train on with ``world_size`` processes, why).

    XTuner's loop runs ``max_epochs x len(dataloader)`` iterations, and mmengine converts each
    epoch-based scheduler (``convert_to_iter_based``) to iterations ``int(begin x L)`` ..
    ``int(end x L)`` with ``L = len(dataloader)``; a warm-up that rounds to 0 iterations is
    refused ("end should be larger than begin") after both models are loaded. ``L`` must also
    reach ``accumulative_counts`` (one full optimizer step). Pairs -> ``L``:
    ``ceil(ceil(pairs / world_size) / batch_size)`` (mmengine's DefaultSampler pads to a
    multiple of the world size). With packing, ``L`` counts packed rows, so the bound in pairs
    is a necessary condition only."""
    cfg = _load(config)
    loader = cfg.get('train_dataloader', {})
    batch = int(loader.get('batch_size', 1))
    accum = int((cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1) or 1)
    converted = [(float(sc.get('begin', 0)), float(sc['end'])) for sc in _schedulers(cfg)
                 if sc.get('convert_to_iter_based') and sc.get('by_epoch', True)
                 and sc.get('end') is not None and float(sc['end']) < float('inf')]
    steps = max(accum, 1)
    while steps < 10 ** 7 and any(int(e * steps) <= int(b * steps) for b, e in converted):
        steps += 1
    need = (steps - 1) * batch * world_size + 1
    warm = [f'{e - b:g} epoch(s) from {b:g}' for b, e in converted]
    why = (f'{steps} iteration(s) per epoch at {batch} pair(s) per process x {world_size} '
           f'process(es) (accumulative_counts {accum}'
           + (f'; schedulers over {", ".join(warm)} must last >= 1 iteration' if warm else '')
           + ')')
    return need, why


def _option(v) -> str:
    if isinstance(v, (list, tuple)):
        return '[' + ','.join(f"'{x}'" if isinstance(x, str) else str(x) for x in v) + ']'
    return str(v)


def train_env(env: Optional[dict] = None) -> dict:
    """The environment training runs with (mmengine checkpoints load under torch >= 2.6)."""
    return dict(os.environ if env is None else env, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')


def run_logged(cmd: List[str], log_path: str, env: dict, tag: str = '',
               expect: Optional[str] = None, cwd: Optional[str] = None) -> None:
    """Run a training or conversion command with its output in ``log_path`` (its
    ``Iter(train)`` progress lines also printed, prefixed by ``tag``); raise with the log's last
    40 lines unless it exits 0 and leaves the file ``expect``. The command is owned
    (:class:`maskdpo_xtuner.io.procs.Child`): it is stopped with this process, however that
    dies."""
    import subprocess

    from maskdpo_xtuner.io.procs import Child
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, 'w') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        log.flush()
        with Child(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                   text=True) as proc:
            for line in proc.stdout:
                log.write(line)
                if 'Iter(train)' in line:
                    print(f'  {tag}{line.split(" - INFO - ")[-1].strip()[:110]}', flush=True)
            proc.wait()
    if proc.returncode != 0 or (expect and not os.path.exists(expect)):
        with open(log_path) as f:
            tail = ''.join(f.readlines()[-40:])
        raise RuntimeError(f'{tag}{" ".join(cmd[:4])} failed (exit {proc.returncode}); last '
                           f'lines of {log_path}:\n{tail}')


def merge_lora(base: str, adapter: str, out: str, dtype: str = 'auto') -> str:
    """A LoRA run's adapter (``xtuner convert pth_to_hf`` of its checkpoint writes only the
    adapter) merged into its base model: one Hugging Face folder, safetensors, with the base's
    tokenizer. ``dtype``: 'auto' (the base model's, e.g. bf16 for Llama-3.1), 'bf16', 'fp32' or
    'fp16'. XTuner's ``xtuner convert merge`` does the same but always in fp16."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    dtypes = {'auto': 'auto', 'bf16': torch.bfloat16, 'fp32': torch.float32,
              'fp16': torch.float16}
    if dtype not in dtypes:
        raise ValueError(f'dtype must be one of {sorted(dtypes)}, got {dtype!r}')
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=dtypes[dtype])
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def _run_xtuner_train(argv: List[str]) -> None:
    import runpy

    import torch
    if not torch.cuda.is_available():  # mmengine's init_dist sets a CUDA device unconditionally
        torch.cuda.set_device = lambda device: None
    sys.argv = ['xtuner.tools.train', *argv]
    try:
        runpy.run_module('xtuner.tools.train', run_name='__main__', alter_sys=True)
    except ValueError as e:  # the pairs kept after the filters are too few for the schedule
        if 'end should be larger than begin' not in str(e):
            raise
        opts = argv[argv.index('--cfg-options') + 1:] if '--cfg-options' in argv else []
        opts = dict(o.split('=', 1) for o in opts if '=' in o and not o.startswith('--'))
        cfg = _load(argv[0])
        if opts:
            from mmengine.config import DictAction
            cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in opts.items()})
        need, why = required_pairs(cfg, int(os.environ.get('WORLD_SIZE', 1)))
        sys.exit(f'error: too few training pairs left after the filters for this schedule '
                 f'(mmengine: {e}): the config needs at least {need} ({why}); see the '
                 '"Mask-DPO data: read ... kept ..." line above')


if __name__ == '__main__':
    _run_xtuner_train(sys.argv[1:])
