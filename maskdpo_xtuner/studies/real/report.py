"""The real study's report (run.py): what each model says, how it scores, and what it cost.

Per evaluation set and decoding, for the base and every arm (mean over training seeds), from
the exact judges:

* ``score``: share of sentences not hallucinated, the ANAH-style score (``unverifiable``, a
  claim the data cannot check, counts as hallucinated, as in ANAH-v2), with the share of claim
  sentences the judge could check beside it (``checked``);
* claims (a sentence can make several; the judge's trace names each claim's attribute and
  whether it is right): right and wrong claims per answer, ``claim precision`` = right /
  (right + wrong), and per attribute the claims and right claims per answer — so a gain made
  of saying less shows as fewer claims, a gain made of knowing more as more right ones;
* sentences and tokens per answer, the share of repeated word 4-grams, the share of answers
  cut at the token limit, and abstentions (evaluation/factparse.py).

Paired differences (Mask-DPO minus DPO, each arm minus the base, each ablation minus DPO): the
mean over training seeds of each seed's difference of pooled scores over the same questions,
with a 95% bootstrap interval resampling questions within seeds
(evaluation/metrics.py:seeded_paired_bootstrap), and in how many seeds it is positive.
Wall time of every stage against the estimate printed up front (:func:`estimate`).
"""
import dataclasses
import json
import os
from collections import Counter, defaultdict

import numpy as np

from maskdpo_xtuner.annotate import SentenceTask, resolve_annotator
from maskdpo_xtuner.evaluation.factparse import is_abstention
from maskdpo_xtuner.evaluation.metrics import seeded_paired_bootstrap
from maskdpo_xtuner.io.jsonl import read_jsonl
from maskdpo_xtuner.pipeline.stages import write_json
from maskdpo_xtuner.studies.real.country_claims import checked_share
from maskdpo_xtuner.studies.real.settings import ABLATIONS, eval_sets, model_names

# seconds per unit of work, measured by the default run of 2026-12-04 on this project's 2-core
# machine (another job at nice 19 beside it; docs/real_model.md): a vLLM start, an answer sampled
# for pairs (160 tokens at most, 64 in flight), a country through the ANAH-v2 judge, a pair
# through the reference pass, a pair-epoch of training (one torch thread) and an evaluation
# answer. The report sets each stage's measured time beside the estimate they give.
RATES = {'server_start': 32.0, 'sample_answer': 0.84, 'anah_country': 50.0,
         'model_load': 60.0, 'reference_pair': 1.2, 'train_pair': 5.1, 'train_fixed': 60.0,
         'eval_answer': 0.95}
# one training with two torch threads against one, on the 2 idle cores: 20.4 s against 36.9 s per
# iteration (median, the default run's config, 2026-12-04); more threads were not measured
TWO_THREADS = 1.8
EPOCHS = 3
HALLUCINATED = ('contradictory', 'unverifiable')


def estimate(s) -> dict:
    """Seconds each kind of stage should take, from RATES and the settings."""
    sets = eval_sets(s)
    runs = 1 + len(s.eval_seeds)
    answers = sum(len(q) for _, q in sets.values()) * runs
    pairs = s.train_questions  # about one pair per train country survives the filters
    trainings = len(model_names(s)) - 1
    st = {'sample': RATES['server_start'] + s.train_questions * s.k * RATES['sample_answer'],
          'anah': s.anah_questions * RATES['anah_country'],
          'reference': RATES['model_load'] + pairs * RATES['reference_pair'],
          'train': trainings * (RATES['train_fixed'] + pairs * EPOCHS * RATES['train_pair']
                                / (TWO_THREADS if s.threads >= 2 else 1.0)),
          'eval': (trainings + 1) * (RATES['server_start'] + answers * RATES['eval_answer'])}
    return {'stages': st, 'total': sum(st.values()), 'sets': list(sets),
            'basis': f'{trainings} x {pairs} pairs x {EPOCHS} epochs, {answers} answers per '
                     'model; rates of docs/real_model.md'}


def _stage_seconds(run, *parts) -> float:
    p = run.path(*parts, 'stage.json')
    if not os.path.exists(p):
        return 0.0
    with open(p) as f:
        return json.load(f).get('seconds') or 0.0


def measured(run) -> dict:
    names = model_names(run.s)
    evals = 0.0
    for n in names:
        d = run.path('eval', n)
        for set_name in (os.listdir(d) if os.path.isdir(d) else []):
            evals += sum(_stage_seconds(run, 'eval', n, set_name, tag)
                         for tag in ('greedy', 'sampled'))
    return {'sample': _stage_seconds(run, 'sample'), 'anah': _stage_seconds(run, 'anah'),
            'reference': _stage_seconds(run, 'reference'),
            'train': sum(_stage_seconds(run, 'train', n) for n in names[1:]), 'eval': evals}


def _ngram_repeats(text: str, n: int = 4) -> tuple:
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) - len(set(grams)), len(grams)


def behaviour(records, annotator: str, tokenizer=None) -> dict:
    """What the answers say (module docstring) and the score's parts per question."""
    judge = resolve_annotator(annotator)()
    tasks, where = [], []
    for r in records:
        for j, a in enumerate(r['annotations']):
            for s in a['sentences']:
                tasks.append(SentenceTask(question=r['question'], sentence=s['text'],
                                          response=r['responses'][j],
                                          meta={'id': r['id'], 'record': r}))
                where.append(r['id'])
    labels = judge.annotate(tasks) if tasks else []
    n = sum(len(r['responses']) for r in records)
    c, per_attr = Counter(), defaultdict(Counter)
    for lab in labels:
        for claim in lab.trace.get('claims', []):
            ok = claim.get('correct')  # None: the data cannot decide (counted as unchecked)
            c['unchecked' if ok is None else 'right' if ok else 'wrong'] += 1
            per_attr[claim['attribute']]['claims'] += 1
            per_attr[claim['attribute']]['right'] += bool(ok)
    lab = Counter(s['label'] for r in records for a in r['annotations'] for s in a['sentences'])
    sents = sum(lab.values())
    texts = [t for r in records for t in r['responses']]
    rep = np.array([_ngram_repeats(t) for t in texts]).sum(0) if texts else (0, 0)
    tokens = (sum(len(tokenizer(t, add_special_tokens=False)['input_ids']) for t in texts)
              if tokenizer is not None else None)
    parts = {r['id']: (sum(s['label'] not in HALLUCINATED for a in r['annotations']
                           for s in a['sentences']),
                       sum(len(a['sentences']) for a in r['annotations'])) for r in records}
    per = (lambda x: x / n if n else None)  # noqa: E731
    return {'answers': n, 'score': (sents - sum(lab[h] for h in HALLUCINATED)) / sents
            if sents else None,
            'claims_per_answer': per(c['right'] + c['wrong']),
            'right_claims_per_answer': per(c['right']), 'wrong_claims_per_answer': per(c['wrong']),
            'unchecked_claims_per_answer': per(c['unchecked']),
            'claim_precision': c['right'] / (c['right'] + c['wrong'])
            if c['right'] + c['wrong'] else None,
            'checked_share': checked_share(s['label'] for r in records for a in r['annotations']
                                           for s in a['sentences']),
            'sentences_per_answer': per(sents),
            'tokens_per_answer': per(tokens) if tokens is not None else None,
            'repeated_4gram_share': rep[0] / rep[1] if rep[1] else None,
            'cut_share': per(sum(x == 'length' for r in records
                                 for x in r.get('finish_reasons', []))),
            'abstention_share': per(sum(is_abstention(t) for t in texts)),
            'attributes': {a: {'claims_per_answer': per(v['claims']),
                               'right_per_answer': per(v['right'])}
                           for a, v in sorted(per_attr.items())},
            'labels': dict(lab), '_parts': parts}


def _eval_records(run, name, set_name, tag):
    d = run.path('eval', name, set_name, tag)
    if not os.path.isdir(d):
        return []
    return [r for sub in sorted(os.listdir(d)) if os.path.isdir(os.path.join(d, sub))
            for r in _read(os.path.join(d, sub, 'annotated.jsonl'))]


def _mean_over_seeds(rows):
    """Mean of every numeric field over the seeds' rows (None where any is None)."""
    out = {}
    for k, v in rows[0].items():
        if k.startswith('_') or k == 'labels':
            continue
        if isinstance(v, dict):
            out[k] = _mean_over_seeds([r[k] for r in rows]) if all(k in r for r in rows) else v
        else:
            vals = [r[k] for r in rows]
            out[k] = None if any(x is None for x in vals) else float(np.mean(vals))
    if len(rows) > 1 and all(r.get('score') is not None for r in rows):
        out['score_std'] = float(np.std([r['score'] for r in rows], ddof=1))
    return out


def _paired(a_rows, b_rows) -> dict:
    """Seeded paired bootstrap of a minus b (b: one row for the base, reused for each seed)."""
    pairs = []
    for i, a in enumerate(a_rows):
        b = b_rows[i] if len(b_rows) > 1 else b_rows[0]
        ids = sorted(a['_parts'].keys() & b['_parts'].keys())
        pairs.append(tuple(tuple(zip(*[d['_parts'][q] for q in ids])) for d in (a, b)))
    out = seeded_paired_bootstrap(pairs)
    out['questions'] = len(ids)
    return out


def comparisons(arms) -> list:
    out = [(a, 'base') for a in arms]
    if 'dpo' in arms:
        out += [(a, 'dpo') for a in arms if a != 'dpo' and a in ('maskdpo',) + ABLATIONS]
    return out


def build_report(run) -> dict:
    from transformers import AutoTokenizer
    s = run.s
    tok = AutoTokenizer.from_pretrained(run.base_dir)
    seeds = list(s.train_seeds)
    results, paired = {}, {}
    for set_name, (annotator, _) in eval_sets(s).items():
        for tag in ('greedy', 'sampled'):
            cell, rows = f'{set_name}/{tag}', {}
            for name in model_names(s):
                recs = _eval_records(run, name, set_name, tag)
                if recs:
                    rows[name] = behaviour(recs, annotator, tok)
            by_arm = {'base': [rows['base']]} if 'base' in rows else {}
            for arm in s.arms:
                got = [rows.get(f'{arm}-s{x}') for x in seeds]
                if all(got):
                    by_arm[arm] = got
            if not by_arm:
                continue  # not evaluated (greedy only: no --eval-seeds)
            results[cell] = {arm: _mean_over_seeds(r) for arm, r in by_arm.items()}
            paired[cell] = {f'{a} - {b}': _paired(by_arm[a], by_arm[b])
                            for a, b in comparisons(s.arms) if a in by_arm and b in by_arm}
    est, got = estimate(s), measured(run)
    return {'settings': dataclasses.asdict(s), 'results': results, 'paired': paired,
            'time': {'estimate': est['stages'], 'measured': got,
                     'estimate_total': est['total'], 'measured_total': sum(got.values())},
            'server_start_seconds': {e.name: round(e.start_seconds, 1) for e in run.servers
                                     if e.start_seconds},
            'pairs': _json(run.path('pairs', 'pairs.jsonl.summary.json')),
            'train': {n: train_log(run.path('train', n, 'xtuner')) for n in model_names(s)[1:]},
            'anah_vs_exact': agreement(_read(run.path('anah', 'annotated.jsonl')),
                                       _read(run.path('annotate', 'annotated.jsonl')))}


def train_log(work: str) -> dict:
    rows = []
    if os.path.isdir(work):
        for x in sorted(os.listdir(work)):
            p = os.path.join(work, x, 'vis_data', 'scalars.json')
            if os.path.exists(p):
                rows = [json.loads(line) for line in open(p)]
    rows = [r for r in rows if 'loss' in r]
    if not rows:
        return {}
    last = rows[-5:]
    return {'iterations': rows[-1]['iter'], 'first_loss': rows[0]['loss'],
            'last5_loss': float(np.mean([r['loss'] for r in last])),
            'last5_reward_acc': float(np.mean([r.get('reward_acc', np.nan) for r in last]))}


def agreement(anah_records, exact_records) -> dict:
    """The ANAH-v2 judge's labels against the exact judge's, sentence by sentence."""
    exact = {(r['id'], j, s['start']): s['label'] for r in exact_records
             for j, a in enumerate(r['annotations']) for s in a['sentences']}
    n = unparsed = agree = 0
    for r in anah_records:
        for j, a in enumerate(r['annotations']):
            for s in a['sentences']:
                e = exact.get((r['id'], j, s['start']))
                if e is None:
                    continue
                n += 1
                if s['label'] == 'unparsed':
                    unparsed += 1
                    continue
                agree += (s['label'] in HALLUCINATED) == (e in HALLUCINATED)
    parsed = n - unparsed
    return {'sentences': n, 'unparsed': unparsed, 'unparsed_share': unparsed / n if n else None,
            'agreement': agree / parsed if parsed else None}


def _read(path):
    return read_jsonl(path) if os.path.exists(path) else []


def _json(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _f(x, scale=1.0, digits=2, sign=False):
    return '-' if x is None else f'{x * scale:{"+" if sign else ""}.{digits}f}'


COLUMNS = [('score', 'Score %', 100, 1), ('checked_share', 'Checked %', 100, 0),
           ('claim_precision', 'Claim precision %', 100, 1),
           ('right_claims_per_answer', 'Right claims/answer', 1, 2),
           ('wrong_claims_per_answer', 'Wrong claims/answer', 1, 2),
           ('sentences_per_answer', 'Sentences/answer', 1, 2),
           ('tokens_per_answer', 'Tokens/answer', 1, 0),
           ('repeated_4gram_share', 'Repeated 4-grams %', 100, 1),
           ('cut_share', 'Cut %', 100, 0), ('abstention_share', 'Abstained %', 100, 0)]


def report_markdown(doc: dict) -> str:
    s = doc['settings']
    lines = ['# The real study: SmolLM2-135M-Instruct, vLLM on the CPU, real facts', '',
             f'Arms {", ".join(s["arms"])} x training seeds {s["train_seeds"]}, the same pairs '
             f'and config; answers sampled with seed {s["sample_seed"]}. Cells: mean over '
             'training seeds (score: ± std over seeds).', '']
    for cell, arms in doc['results'].items():
        lines += [f'## {cell}', '', '| Model | ' + ' | '.join(c[1] for c in COLUMNS) + ' |',
                  '|---|' + '---|' * len(COLUMNS)]
        for arm, r in arms.items():
            sd = f' ± {r["score_std"] * 100:.1f}' if 'score_std' in r else ''
            lines.append(f'| {arm} | ' + ' | '.join(
                _f(r[k], sc, d) + (sd if k == 'score' else '') for k, _, sc, d in COLUMNS)
                + ' |')
        attrs = sorted({a for r in arms.values() for a in r['attributes']})
        if attrs:
            lines += ['', 'Claims per answer (right claims) by attribute:', '',
                      '| Model | ' + ' | '.join(attrs) + ' |', '|---|' + '---|' * len(attrs)]
            for arm, r in arms.items():
                lines.append(f'| {arm} | ' + ' | '.join(
                    f'{_f(r["attributes"][a]["claims_per_answer"])} '
                    f'({_f(r["attributes"][a]["right_per_answer"])})'
                    if a in r['attributes'] else '-' for a in attrs) + ' |')
        lines.append('')
        if doc['paired'].get(cell):
            lines += ['| Difference (score points) | Mean over seeds | 95% CI (questions '
                      'resampled within seeds) | Seeds > 0 | Per seed |', '|---|---|---|---|---|']
            for k, p in doc['paired'][cell].items():
                lines.append(f'| {k} | {_f(p["diff"], 100, 1, True)} | '
                             f'[{_f(p["ci_low"], 100, 1, True)}, {_f(p["ci_high"], 100, 1, True)}]'
                             f' | {p["seeds_positive"]} of {p["seeds"]} | '
                             + ', '.join(_f(x, 100, 1, True) for x in p['per_seed']) + ' |')
            lines.append('')
    t = doc['time']
    lines += ['## Wall time', '', '| Stage | Estimated (s) | Measured (s) |', '|---|---|---|']
    lines += [f'| {k} | {t["estimate"][k]:.0f} | {t["measured"].get(k, 0):.0f} |'
              for k in t['estimate']]
    lines += [f'| **total** | {t["estimate_total"]:.0f} | {t["measured_total"]:.0f} |', '']
    a = doc['anah_vs_exact']
    lines += ['## ANAH-v2 with SmolLM2 as its own judge, against the exact judge', '',
              f'{a["sentences"]} sentences, unparsed {a["unparsed"]}; ' + (
                  'none parsed.' if a['agreement'] is None else
                  f'hallucinated-or-not agrees on {_f(a["agreement"], 100, 1)}% of the parsed.')]
    return '\n'.join(lines) + '\n'


def write_report(doc: dict, out: str) -> None:
    write_json(os.path.join(out, 'results.json'), doc)
    text = report_markdown(doc)
    with open(os.path.join(out, 'results.md'), 'w') as f:
        f.write(text)
    print(text)
