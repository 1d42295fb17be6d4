"""ANAH evaluation: generate one answer per test question, annotate it, score it; per seed.

    python tools/eval_anah.py --questions data/anah_test.jsonl --model /models/policy \\
        --backend lmdeploy --out-dir work_dirs/eval/maskdpo --greedy \\
        --annotator anah --judge-backend openai --judge-model anah-v2 \\
        --judge-endpoints http://host:23333

Decoding is greedy by default (paper Table 1, one run named ``greedy``); ``--seeds 0 1 2``
samples instead (``--temperature``/``--top-k``/``--top-p``), one run ``seed<S>`` per seed.
Each run writes ``D/<run>/responses.jsonl`` (tools/sample.py, n = 1) and
``D/<run>/annotated.jsonl`` (tools/annotate.py); both stages are resumable, so re-running
the command does only the missing work. Then ``D/metrics.json`` (every run's metrics and
their mean/std, see maskdpo_xtuner/metrics.py for the formulas), ``D/metrics.csv`` and
``D/metrics.md`` are (re)written. ``D/eval_config.json`` records the generation and judge
settings; resuming with different ones is refused.
"""
import argparse
import csv
import json
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from maskdpo_xtuner.io import read_jsonl  # noqa: E402
from maskdpo_xtuner.metrics import (METRICS, SUMMARY_HEADER, UNPARSED_AS, aggregate,  # noqa
                                    markdown_table, run_metrics, summary_cells)
from maskdpo_xtuner.tools import load_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--questions', required=True,
                   help='test questions JSONL: id, question, document (the judge\'s reference)')
    p.add_argument('--model', required=True, help='the evaluated model (path or served name)')
    p.add_argument('--backend', choices=['transformers', 'lmdeploy', 'openai'],
                   default='transformers')
    p.add_argument('--endpoints', nargs='+', help='openai backend: server URLs')
    p.add_argument('--out-dir', required=True)
    dec = p.add_mutually_exclusive_group()
    dec.add_argument('--seeds', type=int, nargs='+', help='sample, one run per seed')
    dec.add_argument('--greedy', action='store_true', help='greedy decoding (the default)')
    p.add_argument('--temperature', type=float, default=0.8)
    p.add_argument('--top-k', type=int, default=40)
    p.add_argument('--top-p', type=float, default=1.0)
    p.add_argument('--max-new-tokens', type=int, default=512)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--system', help='system prompt before each question')
    p.add_argument('--sample-args', default='',
                   help="extra tools/sample.py arguments, e.g. '--engine turbomind --tp 2'")
    p.add_argument('--annotator', default='anah', help="'anah' or 'package.module:Class'")
    p.add_argument('--judge-backend', choices=['transformers', 'lmdeploy', 'openai'],
                   default='transformers')
    p.add_argument('--judge-model', help='annotator model (path or served name)')
    p.add_argument('--judge-endpoints', nargs='+', help='openai judge: server URLs')
    p.add_argument('--templates', default='auto', help='en | zh | auto | PATH (annotator)')
    p.add_argument('--documents', help='JSONL of {"id", "document"} if not in --questions')
    p.add_argument('--annotate-args', default='', help='extra tools/annotate.py arguments')
    p.add_argument('--unparsed-as', choices=UNPARSED_AS, default='excluded',
                   help="'correct' reproduces the official eval (unparsed counted correct)")
    p.add_argument('--n-boot', type=int, default=1000, help='bootstrap resamples')
    p.add_argument('--boot-seed', type=int, default=0)
    p.add_argument('--confidence', type=float, default=0.95)
    return p.parse_args(argv)


def plan_runs(args):
    """[(run name, seed or None)]: greedy once, or sampling once per seed."""
    return [(f'seed{s}', s) for s in args.seeds] if args.seeds else [('greedy', None)]


def check_config(args):
    """Write D/eval_config.json, or refuse if it holds different generation/judge settings."""
    keys = ('questions', 'model', 'backend', 'temperature', 'top_k', 'top_p', 'max_new_tokens',
            'system', 'sample_args', 'annotator', 'judge_model', 'templates', 'documents',
            'annotate_args')
    cfg = {k: getattr(args, k) for k in keys}
    for k in ('questions', 'documents'):
        cfg[k] = cfg[k] and os.path.abspath(cfg[k])
    if not args.seeds:  # sampling settings do not apply to greedy runs
        for k in ('temperature', 'top_k', 'top_p'):
            cfg[k] = None
    path = os.path.join(args.out_dir, 'eval_config.json')
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        diff = {k: (old.get(k), v) for k, v in cfg.items() if old.get(k) != v}
        if diff:
            raise SystemExit(f'{args.out_dir} holds an evaluation with other settings '
                             f'(old, new): {diff}; use another --out-dir')
    os.makedirs(args.out_dir, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)


def generate(args, seed, out, backend=None):
    """tools/sample.py with n = 1: greedy, or sampling with ``seed``."""
    sample = load_tool('sample')
    argv = ['--questions', args.questions, '--out', out, '--backend', args.backend,
            '--model', args.model, '--n', '1', '--batch-size', str(args.batch_size),
            '--max-new-tokens', str(args.max_new_tokens)]
    if seed is None:
        argv.append('--greedy')
    else:
        argv += ['--seed', str(seed), '--temperature', str(args.temperature),
                 '--top-k', str(args.top_k), '--top-p', str(args.top_p)]
    argv += (['--endpoints', *args.endpoints] if args.endpoints else []) + \
        (['--system', args.system] if args.system else []) + shlex.split(args.sample_args)
    return sample.main(argv, backend=backend)


def annotate(args, inp, out, judge=None):
    """tools/annotate.py; ``judge`` is an annotator (has ``annotate``) or the generation
    backend of the ANAH-v2 annotator (has ``generate``)."""
    tool = load_tool('annotate')
    argv = ['--input', inp, '--out', out, '--annotator', args.annotator,
            '--templates', args.templates, '--backend', args.judge_backend]
    argv += (['--model', args.judge_model] if args.judge_model else []) + \
        (['--endpoints', ','.join(args.judge_endpoints)] if args.judge_endpoints else []) + \
        (['--documents', args.documents] if args.documents else []) + \
        shlex.split(args.annotate_args)
    if judge is not None and hasattr(judge, 'annotate'):
        return tool.main(argv, annotator=judge)
    return tool.main(argv, backend=judge)


def write_outputs(out_dir, runs, agg, settings):
    with open(os.path.join(out_dir, 'metrics.json'), 'w', encoding='utf-8') as f:
        json.dump({'runs': runs, 'aggregate': agg, 'settings': settings}, f, indent=2,
                  ensure_ascii=False)
    with open(os.path.join(out_dir, 'metrics.csv'), 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(['run', 'seed', *METRICS])
        for r in runs:
            w.writerow([r['run'], r['seed'], *(r[k] for k in METRICS)])
        for stat in ('mean', 'std'):
            w.writerow([stat, '', *(agg[k][stat] for k in METRICS)])
    rows = [[r['run'], *summary_cells([r])] for r in runs]
    if len(runs) > 1:
        rows.append(['mean ± std', *summary_cells(runs, agg)])
    text = (f'# ANAH evaluation: {settings["model"]}\n\n'
            f'Unparsed sentences: {settings["unparsed_as"]}. Score = correct / (correct + '
            'incorrect) sentences, pooled over all responses.\n\n'
            + markdown_table(['Run', *SUMMARY_HEADER], rows))
    with open(os.path.join(out_dir, 'metrics.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    return text


def main(argv=None, backend=None, judge=None) -> dict:
    """Run the CLI. ``backend`` (has ``generate``) replaces the evaluated model's backend and
    ``judge`` the annotator (see :func:`annotate`); both are for tests."""
    args = parse_args(argv)
    check_config(args)
    question_ids = [q['id'] for q in read_jsonl(args.questions)]
    runs = []
    for name, seed in plan_runs(args):
        run_dir = os.path.join(args.out_dir, name)
        responses = os.path.join(run_dir, 'responses.jsonl')
        annotated = os.path.join(run_dir, 'annotated.jsonl')
        print(f'== run {name}')
        generate(args, seed, responses, backend)
        annotate(args, responses, annotated, judge)
        records = read_jsonl(annotated)
        missing = set(question_ids) - {r['id'] for r in records}
        if missing:
            raise SystemExit(f'{annotated}: {len(missing)} questions not annotated')
        m = run_metrics(records, args.unparsed_as, args.n_boot, args.boot_seed,
                        args.confidence)
        runs.append({'run': name, 'seed': seed,
                     'decoding': 'greedy' if seed is None else 'sample', **m})
    agg = aggregate(runs)
    settings = {'model': args.model, 'questions': args.questions,
                'unparsed_as': args.unparsed_as, 'n_boot': args.n_boot,
                'boot_seed': args.boot_seed, 'confidence': args.confidence}
    print(write_outputs(args.out_dir, runs, agg, settings))
    return {'runs': runs, 'aggregate': agg, 'settings': settings}


if __name__ == '__main__':
    main()
