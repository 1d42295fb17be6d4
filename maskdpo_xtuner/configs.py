"""The package's training configs: list them, and copy one out as a self-contained file.

In ``configs/`` the configs inherit (mmengine's ``read_base``): the paper's setting is written
once, in ``configs/_base_/paper_setting.py``, and every config changes only what it says (the
tests hold the family to that). Such a file cannot be copied alone: its imports are relative.
:func:`copy_config` (``maskdpo-xtuner copy-cfg NAME DIR``) writes one file in XTuner's own
style instead: every import absolute, every value written out, in five parts::

    PART 1  Settings               the variables you edit (model path, data, batch, lr, ...)
    PART 2  Model & Tokenizer      read them
    PART 3  Dataset & Dataloader   ...
    PART 4  Scheduler & Optimizer
    PART 5  Runtime                hooks, TensorBoard, environment

A nested value is written as the PART 1 variable it equals when the variable is the one that
key holds by design (``model.beta`` is ``loss_beta``, every ``pretrained_model_name_or_path``
is ``pretrained_model_name_or_path``, the warm-up ends at ``warmup_ratio * max_epochs``), so
changing a setting in PART 1 changes every place that uses it; any other value is written as
is. The copy loads from any folder, and builds the same runner as the original
(tests/test_configs.py checks both for every config).
"""
import difflib
import os
import re
from typing import Dict, List, Optional

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
_SKIP = ('_base_', 'deepspeed')  # folders of pieces, not runnable configs

# PART 1, in this order (then any other plain top-level value, by name)
SETTINGS = ['pretrained_model_name_or_path', 'data_files', 'max_length', 'max_packed_length',
            'ref_logps_cache', 'mask_mode', 'dpo_loss_type', 'loss_beta', 'label_smoothing',
            'num_gpus', 'batch_size', 'accumulative_counts', 'global_batch', 'max_epochs', 'lr',
            'betas', 'weight_decay', 'max_norm', 'warmup_ratio', 'save_steps',
            'save_total_limit']
PARTS = [('Model & Tokenizer', ['tokenizer', 'model']),
         ('Dataset & Dataloader', ['train_dataset', 'train_dataloader']),
         ('Scheduler & Optimizer', ['optim_wrapper', 'param_scheduler', 'train_cfg']),
         ('Runtime', ['default_hooks', 'custom_hooks', 'env_cfg', 'visualizer', 'log_level',
                      'load_from', 'resume', 'randomness', 'log_processor'])]
# A nested key -> the PART 1 expression it holds by design (matched on the dotted path's end)
LINKS = {
    'pretrained_model_name_or_path': 'pretrained_model_name_or_path',
    'data_files': 'data_files', 'max_length': 'max_length',
    'max_packed_length': 'max_packed_length', 'ref_logps_cache': 'ref_logps_cache',
    'model.mask_mode': 'mask_mode', 'model.loss_type': 'dpo_loss_type',
    'model.beta': 'loss_beta', 'model.label_smoothing': 'label_smoothing',
    'train_dataloader.batch_size': 'batch_size', 'accumulative_counts': 'accumulative_counts',
    'optimizer.lr': 'lr', 'optimizer.betas': 'betas', 'optimizer.weight_decay': 'weight_decay',
    'clip_grad.max_norm': 'max_norm', 'train_cfg.max_epochs': 'max_epochs',
    'param_scheduler.0.end': 'warmup_ratio * max_epochs',
    'param_scheduler.1.begin': 'warmup_ratio * max_epochs',
    'param_scheduler.1.end': 'max_epochs',
    'checkpoint.interval': 'save_steps', 'checkpoint.max_keep_ckpts': 'save_total_limit',
}
DERIVED = {'global_batch': 'batch_size * accumulative_counts * num_gpus'}
# A setting takes the value of the key that holds it (the first one found under that part), so
# that PART 1 says what the config does even where a config changed only the nested key
HOLDERS = {'pretrained_model_name_or_path': ('model', 'pretrained_model_name_or_path'),
           'data_files': ('train_dataloader', 'data_files'),
           'max_length': ('train_dataloader', 'max_length'),
           'max_packed_length': ('train_dataloader', 'max_packed_length'),
           'ref_logps_cache': ('model', 'ref_logps_cache'), 'mask_mode': ('model', 'mask_mode'),
           'dpo_loss_type': ('model', 'loss_type'), 'loss_beta': ('model', 'beta'),
           'label_smoothing': ('model', 'label_smoothing'),
           'batch_size': ('train_dataloader', 'batch_size'),
           'accumulative_counts': ('optim_wrapper', 'accumulative_counts'),
           'lr': ('optim_wrapper', 'lr'), 'betas': ('optim_wrapper', 'betas'),
           'weight_decay': ('optim_wrapper', 'weight_decay'),
           'max_norm': ('optim_wrapper', 'max_norm'), 'max_epochs': ('train_cfg', 'max_epochs'),
           'save_steps': ('default_hooks.checkpoint', 'interval'),
           'save_total_limit': ('default_hooks.checkpoint', 'max_keep_ckpts')}
BANNER = '#' * 79


def config_names() -> Dict[str, str]:
    """{name: path} of every runnable config (``configs/**/NAME.py`` outside ``_base_``)."""
    out = {}
    for d, dirs, files in os.walk(CONFIG_DIR):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP and not x.startswith(('.', '__')))
        for f in sorted(files):
            if f.endswith('.py'):
                out[f[:-3]] = os.path.join(d, f)
    return out


def list_configs(pattern: Optional[str] = None) -> List[str]:
    """Names of the configs whose name contains ``pattern`` (case-insensitive), sorted."""
    if not os.path.isdir(CONFIG_DIR):
        raise FileNotFoundError(f'no configs folder at {CONFIG_DIR}: the configs come with a '
                                'checkout of maskdpo-xtuner (an editable install)')
    return sorted(n for n in config_names() if not pattern or pattern.lower() in n.lower())


def find_config(name: str) -> str:
    """The path of config ``name`` (a name from :func:`list_configs`, or a file)."""
    if os.path.isfile(name):
        return name
    names = config_names()
    if name.endswith('.py'):
        name = os.path.basename(name)[:-3]
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.4)
        raise ValueError(f'no config named {name!r}' + (f'; did you mean {close}?' if close else
                                                        '; see maskdpo-xtuner list-cfg'))
    return names[name]


# ---------------------------------------------------------------- writing a value as Python
class _Writer:
    def __init__(self, settings: dict):
        self.settings, self.imports = settings, set()

    def expr(self, v) -> str:
        from mmengine.config.lazy import LazyAttr, LazyObject
        if isinstance(v, LazyAttr):
            return f'{self.expr(v.source)}.{v.name}'
        if isinstance(v, LazyObject):
            if not isinstance(v._module, str):  # `import a.b` (and `import a.c`): a
                self.imports.update(f'import {m}' for m in v._module)
                return v._module[0].split('.')[0]
            if v._imported is None:
                self.imports.add(f'import {v._module}')
                return v._module
            self.imports.add(f'from {v._module} import {v._imported}')
            return v._imported
        if isinstance(v, type) or callable(v):  # a real object (a config read without lazy import)
            self.imports.add(f'from {v.__module__} import {v.__qualname__.split(".")[0]}')
            return v.__qualname__
        if isinstance(v, (str, int, float, bool)) or v is None:
            return repr(v)
        raise ValueError(f'cannot write {type(v).__name__} value {v!r} as Python')

    def link(self, path: str, v) -> Optional[str]:
        """The PART 1 expression ``path`` holds by design, if it equals ``v`` here."""
        for suffix, expr in LINKS.items():
            if path == suffix or path.endswith('.' + suffix):
                names = set(re.findall(r'[a-z_]+', expr))
                if names <= set(self.settings) and _same(eval(expr, {}, dict(self.settings)), v):
                    return expr
        return None

    def value(self, v, path: str, indent: int, top: dict) -> str:
        linked = self.link(path, v) if '.' in path else None
        if linked:
            return linked
        pad = ' ' * (indent + 4)
        if isinstance(v, dict):
            items = sorted(v.items(), key=lambda kv: kv[0] != 'type')
            parts = [(k, self.value(x, f'{path}.{k}', indent + 4, top)) for k, x in items]
            if all(k.isidentifier() for k, _ in parts):
                flat = 'dict(' + ', '.join(f'{k}={x}' for k, x in parts) + ')'
                text = flat if len(flat) + indent < 80 and '\n' not in flat else \
                    'dict(\n' + ',\n'.join(f'{pad}{k}={x}' for k, x in parts) + ')'
            else:
                text = '{' + ', '.join(f'{k!r}: {x}' for k, x in parts) + '}'
            for name in ('tokenizer', 'train_dataset'):  # a nested copy of a top-level dict
                if '.' in path and name in top and path.split('.')[-1] in ('tokenizer', 'dataset') \
                        and text == self.value(top[name], name, indent, {}):
                    return name
            return text
        if isinstance(v, (list, tuple)):
            parts = [self.value(x, f'{path}.{i}', indent + 4, top) for i, x in enumerate(v)]
            o, c = ('[', ']') if isinstance(v, list) else ('(', ',)' if len(v) == 1 else ')')
            flat = o + ', '.join(parts) + c
            if len(flat) + indent < 80 and '\n' not in flat:
                return flat
            return o + '\n' + ',\n'.join(pad + p for p in parts) + c
        return self.expr(v)


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def _holder(node, key):
    """The value of the first ``key`` found breadth first under ``node`` (dicts and lists)."""
    queue = [node]
    while queue:
        n = queue.pop(0)
        if isinstance(n, dict):
            if key in n:
                return n[key]
            queue += list(n.values())
        elif isinstance(n, (list, tuple)):
            queue += list(n)
    return None


def _plain(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return isinstance(v, (str, int, float, bool)) or v is None


def _names(expr: str) -> set:
    return set(re.findall(r'[a-z_]+', expr))


def flatten_config(path: str, shown_as: Optional[str] = None) -> str:
    """The source of a self-contained copy of the config at ``path`` (see the module doc).
    ``shown_as``: the copy's file name, put in the header's commands."""
    from mmengine.config import Config
    cfg = Config.fromfile(path, lazy_import=True)
    top = cfg._to_lazy_dict()
    in_parts = {k for _, keys in PARTS for k in keys}
    settings = {k: v for k, v in top.items() if _plain(v) and k not in in_parts}
    for name, (root, key) in HOLDERS.items():  # a setting says what its holder holds
        node = top
        for part in root.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        held = _holder(node, key)
        if name in settings and held is not None and _plain(held):
            settings[name] = held
    for name, expr in DERIVED.items():
        if name in settings and _names(expr) <= set(settings):
            settings[name] = eval(expr, {}, dict(settings))
    w = _Writer(settings)
    body = [_banner('PART 1  Settings')]
    for k in [k for k in SETTINGS if k in settings] + sorted(set(settings) - set(SETTINGS)):
        derived = k in DERIVED and _names(DERIVED[k]) <= set(settings)
        body.append(f'{k} = {DERIVED[k] if derived else w.value(settings[k], k, 0, top)}')
    for i, (title, keys) in enumerate(PARTS):
        present = [k for k in keys if k in top]
        body += ['', _banner(f'PART {i + 2}  {title}')] if present else []
        body += [f'{k} = {w.value(top[k], k, 0, top)}' for k in present]
    body += [f'{k} = {w.value(top[k], k, 0, top)}' for k in top
             if k not in settings and k not in in_parts]
    return _header(path, shown_as) + _imports(w.imports) + '\n\n' + '\n'.join(body) + '\n'


def _imports(lines) -> str:
    """``import x`` lines first, then one ``from m import a, b`` per module, sorted."""
    plain = sorted(x for x in lines if x.startswith('import '))
    names: Dict[str, List[str]] = {}
    for x in lines:
        if x.startswith('from '):
            module, _, name = x[5:].partition(' import ')
            names.setdefault(module, []).append(name)
    return '\n'.join(plain + [f'from {m} import {", ".join(sorted(n))}'
                              for m, n in sorted(names.items())])


def _banner(title: str) -> str:
    return f'{BANNER}\n#{title.center(77)}#\n{BANNER}'


def _header(path: str, shown_as: Optional[str]) -> str:
    lines = []
    for line in open(path, encoding='utf-8'):
        if not line.startswith('#'):
            break
        lines.append(line.rstrip('\n'))
    rel = os.path.relpath(os.path.abspath(path), os.path.dirname(CONFIG_DIR))
    text = '\n'.join(lines)
    if shown_as:
        text = text.replace(rel, shown_as)
    name = os.path.basename(path)[:-3]
    return (text + ('\n#\n' if text else '') +
            f'# A self-contained copy of {rel}\n'
            f'# (`maskdpo-xtuner copy-cfg {name} DIR`; each option is explained there and in\n'
            '# the files it inherits). Edit the settings in PART 1: the parts below read them.\n'
            '# Relative paths are relative to the folder you launch from.\n')


def copy_config(name: str, dest: str, overwrite: bool = False) -> str:
    """Write the self-contained copy of config ``name`` into folder ``dest`` (as
    ``NAME_copy.py``, XTuner's naming) or to the file ``dest`` (``*.py``); returns its path."""
    src = find_config(name)
    out = dest if dest.endswith('.py') else os.path.join(
        dest, os.path.basename(src)[:-3] + '_copy.py')
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f'{out} exists (overwrite=True / --overwrite replaces it)')
    text = flatten_config(src, shown_as=out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w', encoding='utf-8') as f:
        f.write(text)
    return out
