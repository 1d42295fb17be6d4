"""Compare evaluated models question by question: ANAH (tools/eval_anah.py) and FActScore
(tools/eval_factscore.py) runs, with paired bootstrap intervals, after checking that the runs
are comparable. tools/report.py is the command line.

* **Sameness.** Before any number is compared, every run of every model must share the
  question set (ids and a digest of question + document), the decoding settings (seed aside),
  the system prompt and the judge (:func:`judge_key`: annotator, templates by content hash,
  decoding, judge model by weights hash or served name, an exact judge's data and code);
  FActScore runs the topic keys, judge (backend, model, decoding), the prompts and the
  knowledge source by content hash, retrieval and gamma. A difference raises
  :class:`NotComparable` naming the run, the field and both values, unless the caller allows
  it (then it is listed under the table). A field a run did not record is a difference.
* **Pooling over seeds.** A model's runs (seeds) are pooled question by question: sentence
  counts are summed, FActScore per-response scores are all kept. The score of a model is the
  pooled ratio; the spread over seeds is shown apart as mean ± std of the per-run scores.
* **Intervals.** Percentile bootstrap over questions (topics for FActScore): the same
  resampled questions for every model (maskdpo_xtuner.evaluation.metrics.resample_weights), so a
  difference's interval is paired. ``P(Δ ≤ 0)`` is the share of resamples where the model is
  not better than the baseline (a one-sided bootstrap p-value).
"""
import os
from typing import Dict, List, Sequence

import numpy as np

from maskdpo_xtuner.evaluation.metrics import (LABELS, aggregate, interval_cell, markdown_table,
                                               num, official_parts, paired_ratio_bootstrap,
                                               parsed_parts, pooled_counts, ratio_bootstrap,
                                               summary_cells, SUMMARY_HEADER)

ANAH_FIELDS = ('questions', 'decoding', 'system_prompt', 'judge')
FACTSCORE_FIELDS = ('judge', 'extract_prompt', 'verify_prompt', 'knowledge', 'passage_words',
                    'retriever', 'retrieve_k', 'prompt', 'decoding', 'gamma')
# what of a recorded judge must be equal: which annotator, its templates' and prompts'
# content, its decoding and answer constraint, the judge model (a weights hash, or a served
# name) and an exact judge's data and code; not its batch size, endpoints or URL
JUDGE_KEYS = ('name', 'object', 'templates_sha256', 'decoding', 'constrain', 'parsing',
              'exact', 'backend', 'model')
MODEL_KEYS = ('backend', 'kind', 'name', 'sha256')


class NotComparable(ValueError):
    """Runs that differ in what a comparison must hold equal."""


# ------------------------------------------------------------------------------ sameness

def judge_from_eval_config(metrics_path: str):
    """The judge settings tools/eval_anah.py records in eval_config.json beside metrics.json
    (for metrics written without ``provenance.judge``), or None."""
    import json
    path = os.path.join(os.path.dirname(os.path.abspath(metrics_path)), 'eval_config.json')
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as f:
        cfg = json.load(f)
    return {k: cfg.get(k) for k in ('annotator', 'judge_model', 'templates', 'annotate_args')}


def judge_key(judge):
    """The part of a recorded judge (:data:`JUDGE_KEYS`) a comparison holds equal; a record
    of an older form is compared whole."""
    if not isinstance(judge, dict) or not any(k in judge for k in ('name', 'object')):
        return judge
    out = {k: judge[k] for k in JUDGE_KEYS if k in judge}
    model = judge.get('judge', judge.get('fingerprint'))
    if isinstance(model, dict):
        out['model_fingerprint'] = {k: model[k] for k in MODEL_KEYS if k in model}
    return out


def anah_fields(run: dict, where: str) -> dict:
    prov = run.get('provenance')
    if prov is None:
        raise NotComparable(f'{where}: no provenance (metrics written by an older '
                            'maskdpo_xtuner.evaluation.metrics): re-run the metrics')
    out = {k: prov.get(k) for k in ANAH_FIELDS}
    out['questions'] = dict(out['questions'] or {},
                            ids=sorted(map(str, run['per_question']['ids'])))
    out['judge'] = judge_key(out['judge'])
    return out


def _flat(value, prefix: str) -> Dict[str, object]:
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(_flat(v, f'{prefix}.{k}'))
        return out
    return {prefix: value}


def check_same(fields: Dict[str, dict], allow: bool = False) -> List[str]:
    """``fields``: {run label: {field: value}}. Every run must equal the first one; an unknown
    (None) judge, prompt or knowledge source counts as a difference. Each difference names
    the field (``judge.templates_sha256``, ``knowledge.sha256``...) and both values. Returns
    the differences when ``allow``, else raises :class:`NotComparable` listing them."""
    labels = list(fields)
    ref = fields[labels[0]]
    diffs = []
    for label in labels:
        for k, v in fields[label].items():
            if k in ('judge', 'knowledge', 'extract_prompt', 'verify_prompt') and v is None:
                diffs.append(f'{label}: {k} not recorded (written by an older version, or no '
                             'provenance.judge and no eval_config.json beside metrics.json)')
            elif label != labels[0] and v != ref.get(k):
                if k == 'questions' and v.get('ids') != (ref.get(k) or {}).get('ids'):
                    diffs.append(f'{label}: questions: ids differ from {labels[0]}\'s')
                    continue
                mine, theirs = _flat(v, k), _flat(ref.get(k), k)
                for f in sorted(set(mine) | set(theirs)):
                    if mine.get(f) != theirs.get(f):
                        diffs.append(f'{label}: {f} = {mine.get(f)!r}, but {labels[0]}: {f} '
                                     f'= {theirs.get(f)!r}')
    if diffs and not allow:
        raise NotComparable('runs are not comparable (tools/report.py --allow-mismatch shows '
                            'them anyway, listing this):\n  ' + '\n  '.join(diffs))
    return diffs


# ------------------------------------------------------------------------------ ANAH

def _aligned(models: Dict[str, List[dict]]):
    """{model: counts (questions × 6) pooled over its runs}, rows in one question order."""
    pooled = {m: pooled_counts(runs) for m, runs in models.items()}
    ids = pooled[next(iter(pooled))][0]
    out = {}
    for m, (mids, counts) in pooled.items():
        order = {q: k for k, q in enumerate(mids)}
        out[m] = counts[[order[q] for q in ids]]
    return out


def _sentences_parts(c):
    return c[:, :5].sum(1), c[:, 5]


def _share_parts(label):
    return lambda c: (c[:, LABELS.index(label)], c[:, :5].sum(1))


PAIRED_ANAH = (("Δ ANAH score, paper's (pp)", official_parts, 100),
               ('Δ score excl. unparsed (pp)', parsed_parts, 100),
               ('Δ sent./resp.', _sentences_parts, 1),
               ('Δ nofact share (pp)', _share_parts('nofact'), 100),
               ('Δ unparsed share (pp)', _share_parts('unparsed'), 100))


def _delta_cell(d: dict, scale: float) -> str:
    if d['diff'] is None:
        return 'n/a'
    return (f'{d["diff"] * scale:+.2f} [{num(d["ci_low"], scale=scale)}, '
            f'{num(d["ci_high"], scale=scale)}]')


def anah_report(models: Dict[str, List[dict]], baseline: str, n_boot: int = 1000,
                seed: int = 0, confidence: float = 0.95) -> str:
    """The summary table (one row per model, maskdpo_xtuner.evaluation.metrics.SUMMARY_HEADER) and the
    paired table (each model minus ``baseline`` on the same questions)."""
    pct = f'{100 * confidence:g}%'
    rows = [[m, *summary_cells(runs, aggregate(runs), n_boot, seed, confidence)]
            for m, runs in models.items()]
    first = SUMMARY_HEADER[0].replace('[95% CI]', f'[{pct} CI: percentile bootstrap over '
                                      f'questions, {n_boot} resamples]')
    text = markdown_table(['Model', first, *SUMMARY_HEADER[1:]], rows)
    counts = _aligned(models)
    n_q = len(counts[baseline])
    head = ['Model − ' + baseline, *(f'{name} [{pct} CI]' for name, _, _ in PAIRED_ANAH),
            "P(Δ paper's score ≤ 0)", 'Questions']
    prow = []
    for m in models:
        if m == baseline:
            continue
        ds = [paired_ratio_bootstrap(parts(counts[m]), parts(counts[baseline]), n_boot, seed,
                                     confidence) for _, parts, _ in PAIRED_ANAH]
        prow.append([m, *(_delta_cell(d, s) for d, (_, _, s) in zip(ds, PAIRED_ANAH)),
                     num(ds[0]['p_le_0'], 3), str(n_q)])
    if prow:
        text += ('\nPaired differences on the same questions (runs pooled question by '
                 f'question; {pct} percentile bootstrap over the {n_q} questions, '
                 f'{n_boot} resamples shared by both models):\n\n'
                 + markdown_table(head, prow))
    return text


# ------------------------------------------------------------------------------ FActScore

def factscore_fields(doc: dict, where: str) -> dict:
    metrics, config = doc['metrics'], doc.get('config', {})
    if 'per_response' not in metrics:
        raise NotComparable(f'{where}: no per_response scores (factscore.json written by an '
                            'older maskdpo_xtuner.evaluation.factscore): re-run the aggregation')
    out = {k: config.get(k) for k in FACTSCORE_FIELDS if k != 'gamma'}
    out['judge'] = judge_key(out['judge'])
    for k in ('knowledge', 'extract_prompt', 'verify_prompt'):  # by content, not by name
        out[k] = out[k].get('sha256') if isinstance(out[k], dict) else None
    out.update(gamma=metrics.get('gamma'),
               keys=sorted(str(r['key']) for r in metrics['per_response']))
    return out


def _fs_parts(docs: List[dict], keys: Sequence[str]):
    """(Σ scores, number of scored responses) per key, pooled over the runs (seeds)."""
    total = {k: [0.0, 0] for k in keys}
    for doc in docs:
        for r in doc['metrics']['per_response']:
            if r['score'] is not None:
                total[str(r['key'])][0] += r['score']
                total[str(r['key'])][1] += 1
    return (np.array([total[k][0] for k in keys]), np.array([total[k][1] for k in keys]))


FACTSCORE_HEADER = ("FActScore % [{pct} CI: percentile bootstrap over topics, {n_boot} "
                    "resamples] (FActScore's: gamma {gamma:g}, n = all facts, no "
                    'abstention detection; pooled over runs)', 'FActScore ± std over runs',
                    'No penalty %', 'Abstentions left out %', 'Resp. ratio', 'Facts/resp.',
                    '# Cor.', '# Inc.', 'Unparsed verdicts', 'Judge errors', 'Runs')


def factscore_report(models: Dict[str, List[dict]], baseline: str, n_boot: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> str:
    """FActScore per model (per-response mean pooled over seeds, bootstrap over topics, the
    spread over seeds apart) and each model minus ``baseline`` on the same topics."""
    pct = f'{100 * confidence:g}%'
    keys = sorted(str(r['key']) for r in models[baseline][0]['metrics']['per_response'])
    keys = list(dict.fromkeys(keys))
    rows, parts = [], {}
    gamma = models[baseline][0]['metrics'].get('gamma') or 0
    for m, docs in models.items():
        ms = [d['metrics'] for d in docs]
        agg = {k: aggregate(ms, (k,))[k] for k in (
            'factscore', 'factscore_no_penalty', 'factscore_abstention_detected',
            'response_ratio', 'facts_per_response', 'correct_per_response',
            'incorrect_per_response', 'unparsed_facts', 'n_judge_errors')}
        parts[m] = _fs_parts(docs, keys)
        s, n = parts[m]
        point = s.sum() / n.sum() if n.sum() else None
        std = agg['factscore']['std']

        def mean(k, digits=2):
            return num(agg[k]['mean'], digits)
        rows.append([m, interval_cell(point, *ratio_bootstrap(s, n, n_boot, seed, confidence),
                                      scale=100),
                     'n/a (1 run)' if std is None else
                     f'{num(agg["factscore"]["mean"])} ± {num(std)}',
                     mean('factscore_no_penalty'), mean('factscore_abstention_detected'),
                     mean('response_ratio'), mean('facts_per_response'),
                     mean('correct_per_response'), mean('incorrect_per_response'),
                     mean('unparsed_facts', 1), mean('n_judge_errors', 1), str(len(docs))])
    head = [FACTSCORE_HEADER[0].format(gamma=gamma, pct=pct, n_boot=n_boot),
            *FACTSCORE_HEADER[1:]]
    text = markdown_table(['Model', *head], rows)
    prow = []
    for m in models:
        if m != baseline:
            d = paired_ratio_bootstrap(parts[m], parts[baseline], n_boot, seed, confidence)
            prow.append([m, _delta_cell(d, 100), num(d['p_le_0'], 3), str(len(keys))])
    if prow:
        text += (f'\nPaired differences on the same topics ({pct} percentile bootstrap over '
                 f'the {len(keys)} topics, resamples shared by both models):\n\n'
                 + markdown_table([f'Model − {baseline}', f'Δ FActScore (pp) [{pct} CI]',
                                   'P(Δ ≤ 0)', 'Topics'], prow))
    return text
