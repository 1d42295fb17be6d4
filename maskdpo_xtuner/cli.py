"""The ``maskdpo-xtuner`` command, and the help format every tool shares.

    maskdpo-xtuner list-cfg [-p PATTERN]                 # the package's training configs
    maskdpo-xtuner copy-cfg NAME DIR                     # one as a self-contained file
    maskdpo-xtuner import-pairs --format trl|anah IN... --out pairs.jsonl|pairs.parquet
    maskdpo-xtuner merge BASE ADAPTER OUT                # a LoRA run's adapter into its base

Training and conversion are XTuner's: ``xtuner train CONFIG``, ``xtuner convert pth_to_hf
CONFIG PTH OUT --safe-serialization``. Nothing heavy is imported before a subcommand runs, so
``--help`` answers at once.
"""
import argparse
import copy
import re
import sys
from typing import List, Optional

from maskdpo_xtuner.io.errors import tool_main


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and shows each option's default (when it has one)."""

    @staticmethod
    def _shows_default(action) -> bool:
        d = action.default
        return bool(action.option_strings) and action.help is not argparse.SUPPRESS and \
            not (d is None or d is False or d is argparse.SUPPRESS or d == [] or d == {})

    def _format_action(self, action):
        if not action.help and self._shows_default(action):  # argparse skips a help-less one
            action = copy.copy(action)
            action.help = '(default: %(default)s)'
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = (action.help or '').strip()
        if '%(default)' in text or not self._shows_default(action):
            return text
        return f'{text} (default: %(default)s)' if text else '(default: %(default)s)'


def example(doc: str) -> str:
    """The first command in a tool's docstring (a ``python tools/...`` line and its
    continuation lines)."""
    lines, out = doc.splitlines(), []
    for i, line in enumerate(lines):
        if re.match(r'\s*(python|torchrun|bash|maskdpo-xtuner|xtuner)\b', line):
            out.append(line.strip())
            while out[-1].endswith('\\') and i + 1 < len(lines):
                i += 1
                out.append('    ' + lines[i].strip())
            break
    return '\n'.join(out)


def tool_parser(doc: str, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser for a tool whose module docstring is ``doc``: its first line as the
    description, its first command as the example, defaults shown."""
    ex = example(doc)
    return argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                   epilog=f'example:\n  {ex}' if ex else None,
                                   formatter_class=HelpFormatter, **kwargs)


def cfg_options(pairs: List[str]) -> dict:
    """``--cfg-options KEY=VALUE ...`` as mmengine's ``DictAction`` reads them (lists, tuples,
    numbers), parsed after the arguments so that ``--help`` imports no mmengine."""
    if not pairs:
        return {}
    from mmengine.config import DictAction
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition('=')
        if not sep:
            raise SystemExit(f'error: --cfg-options expects KEY=VALUE, got {kv!r}')
        out[key] = DictAction._parse_iterable(value)
    return out


# ---------------------------------------------------------------- maskdpo-xtuner
def _list(args) -> int:
    from maskdpo_xtuner.configs import list_configs
    names = list_configs(args.pattern)
    print('\n'.join(names) if names else f'no config matches {args.pattern!r}')
    return 0


def _copy(args) -> int:
    from maskdpo_xtuner.configs import copy_config
    print(f'Copy to {copy_config(args.name, args.dest, args.overwrite)}')
    return 0


def _import(args) -> int:
    import json

    from maskdpo_xtuner.dataset.formats import read_format, write_pairs
    pairs, report = read_format(args.format, args.inputs, args.on_error)
    for out in args.out:
        write_pairs(pairs, out)
    if not report.get('skipped'):
        report.pop('skipped_examples', None)
    print(json.dumps(report, indent=1, ensure_ascii=False))
    print(f'{len(pairs)} pairs -> {", ".join(args.out)}')
    return 0 if pairs else 1


def _merge(args) -> int:
    from maskdpo_xtuner.train import merge_lora
    print(f'merged model: {merge_lora(args.base, args.adapter, args.out, args.dtype)}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='maskdpo-xtuner', description=__doc__.splitlines()[0],
                                epilog='example:\n  maskdpo-xtuner copy-cfg tiny_cpu_maskdpo .',
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    s = sub.add_parser('list-cfg', help='list the training configs', formatter_class=HelpFormatter,
                       epilog='example:\n  maskdpo-xtuner list-cfg -p tiny')
    s.add_argument('-p', '--pattern', help='only names containing this (case-insensitive)')
    s.set_defaults(run=_list)
    s = sub.add_parser('copy-cfg', help='write a config as one self-contained file',
                       formatter_class=HelpFormatter,
                       epilog='example:\n  maskdpo-xtuner copy-cfg llama3_1_8b_instruct_maskdpo_full '
                              '.\n  xtuner train llama3_1_8b_instruct_maskdpo_full_copy.py')
    s.add_argument('name', help='a name from list-cfg')
    s.add_argument('dest', help='a folder (writes NAME_copy.py there) or a .py file')
    s.add_argument('--overwrite', action='store_true', help='replace an existing file')
    s.set_defaults(run=_copy)
    s = sub.add_parser('import-pairs', formatter_class=HelpFormatter,
                       help="TRL or ANAH preference data -> this project's pair records",
                       epilog='example:\n  maskdpo-xtuner import-pairs --format anah anah/ '
                              '--out data/anah_pairs.jsonl data/anah_pairs.parquet')
    s.add_argument('--format', required=True, choices=('trl', 'anah'),
                   help='trl: prompt/chosen/rejected rows; anah: the opencompass/anah release')
    s.add_argument('inputs', nargs='+', help='JSON Lines or Parquet files, or folders of them')
    s.add_argument('--out', nargs='+', required=True,
                   help='.jsonl (what xtuner train reads) and/or .parquet')
    s.add_argument('--on-error', choices=('raise', 'skip'), default='raise',
                   help='a bad record: stop naming file:line:field, or count it and go on')
    s.set_defaults(run=_import)
    s = sub.add_parser('merge', formatter_class=HelpFormatter,
                       help="merge a LoRA run's adapter into its base model (safetensors)",
                       epilog='example:\n  maskdpo-xtuner merge meta-llama/Llama-3.1-8B-Instruct '
                              'work_dirs/lora/adapter work_dirs/lora/merged')
    s.add_argument('base', help='the base model (folder or hub name)')
    s.add_argument('adapter', help="the adapter folder (xtuner convert pth_to_hf of a LoRA run)")
    s.add_argument('out', help='the merged model folder')
    s.add_argument('--dtype', default='auto', choices=('auto', 'bf16', 'fp32', 'fp16'),
                   help="weights' dtype; auto: the base model's")
    s.set_defaults(run=_merge)
    return p


@tool_main
def main(argv: Optional[List[str]] = None) -> int:
    """The ``maskdpo-xtuner`` command; a bad input ends as every tool's does (io/errors.py)."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == '__main__':
    sys.exit(main())
