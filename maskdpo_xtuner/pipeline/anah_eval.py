"""ANAH evaluation: one answer per test question, annotated and scored; greedy or per seed.

Decoding is greedy by default (paper Table 1, one run named ``greedy``); with seeds it samples
instead, one run ``seed<S>`` per seed. Each run writes ``D/<run>/responses.jsonl`` (the sampler,
n = 1) and ``D/<run>/annotated.jsonl`` (the annotator); both stages resume, so running again
does only the missing work. The policy generates every run first and is closed, then the judge
annotates every run and is closed, so two engines never hold memory at once. Then
``D/metrics.json`` (every run's metrics and their mean/std, formulas in
:mod:`maskdpo_xtuner.evaluation.metrics`), ``D/metrics.csv`` and ``D/metrics.md`` are (re)written.
``D/eval_config.json`` is the evaluation's manifest (maskdpo_xtuner/io/manifest.py): the content of
the questions and documents, the fingerprint of the evaluated weights, the generation settings
and the annotator with its judge's fingerprint; never a path. Running again with any of them
changed (new weights at the same path, a cut questions file) is refused, naming what differs,
so old metrics never come back under new inputs; ``overwrite=True`` (``--overwrite``) starts
again. The whole evaluation holds a lock on ``D/metrics.json``.
"""
import csv
import json
import os
from contextlib import closing
from dataclasses import dataclass
from typing import List, Optional

from maskdpo_xtuner.generation.base import SamplingParams
from maskdpo_xtuner.io.jsonl import read_jsonl
from maskdpo_xtuner.io.manifest import bind, content_hash, file_hash, fingerprint, lock
from maskdpo_xtuner.evaluation.metrics import (METRICS, SUMMARY_HEADER, aggregate, markdown_table,
                                               run_metrics, summary_cells)
from maskdpo_xtuner.pipeline.annotation import AnnotatorSpec, annotate, annotator_info
from maskdpo_xtuner.pipeline.backends import BackendLike, OnDemand
from maskdpo_xtuner.pipeline.sample import load_questions, sample


@dataclass(frozen=True)
class EvalSettings:
    """What an ANAH evaluation computes (besides the models)."""
    questions: str                       # JSONL: id, question, document (the judge's reference)
    out_dir: str
    seeds: Optional[List[int]] = None    # None: one greedy run; else one sampled run per seed
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 1.0
    max_new_tokens: int = 512
    batch_size: int = 64                 # sequences generated together
    system: Optional[str] = None
    documents: Optional[str] = None      # JSONL of {"id", "document"} if not in questions
    unparsed_as: str = 'correct'          # the paper's official eval; 'excluded': parsed only
    n_boot: int = 1000
    boot_seed: int = 0
    confidence: float = 0.95
    progress: bool = True
    overwrite: bool = False               # start again (else resume only the same evaluation)
    on_error: str = 'raise'               # invalid question records: 'raise' or 'skip'

    def runs(self):
        """[(run name, seed or None)]: greedy once, or sampling once per seed."""
        return [(f'seed{s}', s) for s in self.seeds] if self.seeds else [('greedy', None)]

    def params(self, seed: Optional[int]) -> SamplingParams:
        if seed is None:
            return SamplingParams.greedy(self.max_new_tokens)
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              top_k=self.top_k, top_p=self.top_p, do_sample=True, seed=seed)


def eval_job(s: EvalSettings, questions, model_name: str, policy, annotator, judge) -> dict:
    """The manifest of an evaluation: content and fingerprints, never paths."""
    sampled = bool(s.seeds)  # sampling settings do not apply to greedy runs
    return {'stage': 'eval_anah',
            'inputs': {'questions': content_hash(questions), 'documents': file_hash(s.documents)},
            'settings': {'model_name': model_name, 'max_new_tokens': s.max_new_tokens,
                         'system': s.system, 'temperature': s.temperature if sampled else None,
                         'top_k': s.top_k if sampled else None,
                         'top_p': s.top_p if sampled else None},
            'model': fingerprint(policy), 'annotator': annotator_info(annotator, judge)}


def evaluate_anah(s: EvalSettings, policy: BackendLike, model_name: str,
                  annotator=AnnotatorSpec(), judge: Optional[BackendLike] = None) -> dict:
    """Run the evaluation; returns ``{'runs', 'aggregate', 'settings'}`` (also written to D).

    ``policy`` and ``judge``: :class:`BackendSpec` (built when needed, closed after their stage),
    a factory or a backend. ``annotator``: an :class:`AnnotatorSpec` or an object with
    ``annotate``.
    """
    with lock(os.path.join(s.out_dir, 'metrics.json')):
        return _evaluate(s, policy, model_name, annotator, judge)


def _evaluate(s: EvalSettings, policy, model_name, annotator, judge) -> dict:
    questions = load_questions(s.questions, s.on_error)
    bind(os.path.join(s.out_dir, 'metrics.json'),
         eval_job(s, questions, model_name, policy, annotator, judge), s.overwrite,
         path=os.path.join(s.out_dir, 'eval_config.json'))
    paths = {name: (os.path.join(s.out_dir, name, 'responses.jsonl'),
                    os.path.join(s.out_dir, name, 'annotated.jsonl')) for name, _ in s.runs()}
    with closing(OnDemand(policy)) as engine:  # built once for all runs, closed before judging
        for name, seed in s.runs():
            print(f'== run {name}: generate', flush=True)
            sample(questions, paths[name][0], engine, s.params(seed), n=1,
                   model_name=model_name, system=s.system, batch_size=s.batch_size,
                   progress=s.progress, overwrite=s.overwrite)
    with closing(OnDemand(judge)) as judge_engine:
        for name, _ in s.runs():
            print(f'== run {name}: annotate', flush=True)
            annotate(paths[name][0], paths[name][1], annotator,
                     None if judge is None else judge_engine, documents_path=s.documents,
                     progress=s.progress, overwrite=s.overwrite)
    ids = {q['id'] for q in questions}
    runs = []
    for name, seed in s.runs():
        records = [r for r in read_jsonl(paths[name][1]) if r['id'] in ids]
        missing = ids - {r['id'] for r in records}
        if missing:
            raise ValueError(f'{paths[name][1]}: {len(missing)} questions not annotated')
        m = run_metrics(records, s.unparsed_as, s.n_boot, s.boot_seed, s.confidence,
                        judge=annotator_info(annotator, judge))
        runs.append({'run': name, 'seed': seed,
                     'decoding': 'greedy' if seed is None else 'sample', **m})
    agg = aggregate(runs)
    settings = {'model': model_name, 'questions': s.questions, 'unparsed_as': s.unparsed_as,
                'n_boot': s.n_boot, 'boot_seed': s.boot_seed, 'confidence': s.confidence}
    print(write_outputs(s.out_dir, runs, agg, settings))
    return {'runs': runs, 'aggregate': agg, 'settings': settings}


def write_outputs(out_dir, runs, agg, settings) -> str:
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
            "The paper's ANAH score is 1 - incorrect / all sentences, unparsed counted as "
            'correct (the official evaluation); the parsed-only score and the label shares '
            'are beside it (formulas: maskdpo_xtuner/evaluation/metrics.py, docs/evaluation.md).\n\n'
            + markdown_table(['Run', *SUMMARY_HEADER], rows))
    with open(os.path.join(out_dir, 'metrics.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    return text
