"""The real run's report (real_run.py): each stage's wall time and counts, and the scores.

Scores, per model and decoding, over the held-out countries' answers, from the exact judge:

* ``score``: share of sentences not hallucinated (ok + nofact), the ANAH-style score;
* ``checked precision``: ok / (ok + contradictory), over sentences with a checkable claim;
* ``facts/answer`` and ``wrong/answer``: sentences with only right / with a wrong claim;
* ``cut``: answers stopped at the token cap (finish_reason 'length').
"""
import dataclasses
import json
import os
from collections import Counter

from maskdpo_xtuner.io.jsonl import read_jsonl
from maskdpo_xtuner.evaluation.metrics import paired_ratio_bootstrap
from maskdpo_xtuner.pipeline.stages import write_json


def _stage(run, *parts) -> dict:
    p = run.path(*parts, 'stage.json')
    if not os.path.exists(p):
        return {}
    with open(p) as f:
        d = json.load(f)
    return {'seconds': d.get('seconds'), 'done': d.get('done')}


def _labels(records) -> Counter:
    return Counter(s['label'] for r in records for a in r['annotations'] for s in a['sentences'])


def _answer_stats(records) -> dict:
    n = sum(len(r['annotations']) for r in records)
    lab = _labels(records)
    total = sum(lab.values())
    checked = lab['ok'] + lab['contradictory']
    cut = sum(x == 'length' for r in records for x in r.get('finish_reasons', []))
    return {'answers': n, 'sentences': total, 'labels': dict(lab),
            'score': (lab['ok'] + lab['nofact']) / total if total else None,
            'checked_precision': lab['ok'] / checked if checked else None,
            'facts_per_answer': lab['ok'] / n if n else None,
            'wrong_per_answer': lab['contradictory'] / n if n else None,
            'sentences_per_answer': total / n if n else None,
            'cut_share': cut / n if n else None}


def _per_question(records) -> dict:
    """{id: (sentences not hallucinated, sentences)}: the score's parts per question."""
    out = {}
    for r in records:
        labels = [s['label'] for a in r['annotations'] for s in a['sentences']]
        out[r['id']] = (sum(x in ('ok', 'nofact') for x in labels), len(labels))
    return out


def paired_gain(base_records, model_records, n_boot: int = 2000) -> dict:
    """Score of the model minus the base over the same questions, with a 95% paired
    bootstrap interval (questions resampled once for both)."""
    b, m = _per_question(base_records), _per_question(model_records)
    ids = sorted(b.keys() & m.keys())
    parts = [tuple(zip(*[d[i] for i in ids])) for d in (m, b)]
    return {'questions': len(ids), **paired_ratio_bootstrap(*parts, n_boot=n_boot)}


def _agreement(anah_records, exact_records) -> dict:
    """The ANAH-v2 judge's labels against the exact judge's, sentence by sentence."""
    exact = {(r['id'], j, s['start']): s['label'] for r in exact_records
             for j, a in enumerate(r['annotations']) for s in a['sentences']}
    hall = {'contradictory', 'unverifiable'}
    n = unparsed = agree = checked = agree_checked = 0
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
                same = (s['label'] in hall) == (e in hall)
                agree += same
                if e in ('ok', 'contradictory'):
                    checked += 1
                    agree_checked += same
    parsed = n - unparsed
    return {'sentences': n, 'unparsed': unparsed, 'unparsed_share': unparsed / n if n else None,
            'agreement': agree / parsed if parsed else None,
            'checked_sentences': checked,
            'agreement_on_checked': agree_checked / checked if checked else None}


def _train_log(run) -> dict:
    work = run.path('train', 'xtuner')
    if not os.path.isdir(work):
        return {}
    rows = []
    for x in sorted(os.listdir(work)):
        p = os.path.join(work, x, 'vis_data', 'scalars.json')
        if os.path.exists(p):
            rows = [json.loads(line) for line in open(p)]
    rows = [r for r in rows if 'loss' in r]
    if not rows:
        return {}
    last = rows[-5:]
    mean = (lambda k: sum(r.get(k, 0) for r in last) / len(last))  # noqa: E731
    from mmengine.config import Config
    acc = Config.fromfile(run.config).optim_wrapper.accumulative_counts
    return {'iterations': rows[-1]['iter'], 'optimizer_steps': rows[-1]['iter'] // acc,
            'first_loss': rows[0]['loss'], 'last5_loss': mean('loss'),
            'last5_reward_acc': mean('reward_acc') if 'reward_acc' in rows[-1] else None}


def build_report(run) -> dict:
    s = run.s
    train_q = read_jsonl(run.path('questions', 'train.jsonl'))
    test_q = read_jsonl(run.path('questions', 'test.jsonl'))
    samples = read_jsonl(run.path('sample', 'responses.jsonl'))
    exact = read_jsonl(run.path('annotate', 'annotated.jsonl'))
    anah = read_jsonl(run.path('anah', 'annotated.jsonl'))
    with open(run.path('pairs', 'pairs.jsonl.summary.json')) as f:
        pairs = json.load(f)
    cut = sum(x == 'length' for r in samples for x in r.get('finish_reasons', []))
    stages = [
        ('questions', _stage(run, 'questions'),
         f'{len(train_q)} train, {len(test_q)} held-out countries'),
        ('sample (vLLM, base)', _stage(run, 'sample'),
         f'{sum(len(r["responses"]) for r in samples)} answers, {cut} cut at '
         f'{s.max_new_tokens} tokens'),
        ('label: exact judge', _stage(run, 'annotate'), _fmt_labels(_labels(exact))),
        ('label: ANAH-v2 (SmolLM2 judge)', _stage(run, 'anah'), _fmt_labels(_labels(anah))),
        ('pairs', _stage(run, 'pairs'),
         f'{pairs["pairs"]} pairs (chosen {pairs["mean_chosen_score"]:.2f} / rejected '
         f'{pairs["mean_rejected_score"]:.2f}); dropped {_nonzero(pairs["dropped"])}'),
    ]
    tl = _train_log(run)
    stages.append(('train Mask-DPO + convert', _stage(run, 'train'),
                   f'{tl.get("iterations")} iterations = {tl.get("optimizer_steps")} optimizer '
                   f'steps; loss {tl.get("first_loss", float("nan")):.3f} -> '
                   f'{tl.get("last5_loss", float("nan")):.3f} (last 5)' if tl else ''))
    evals, recs_by = {}, {}
    for model in ('base', 'maskdpo'):
        for tag in ('greedy', 'sampled'):
            d = run.path('eval', model, tag)
            recs = [r for sub in sorted(os.listdir(d)) if os.path.isdir(os.path.join(d, sub))
                    for r in _read(os.path.join(d, sub, 'annotated.jsonl'))] \
                if os.path.isdir(d) else []
            evals[f'{model}/{tag}'] = _answer_stats(recs) if recs else None
            recs_by[model, tag] = recs
            stages.append((f'evaluate {model}, {tag}', _stage(run, 'eval', model, tag),
                           f'{len(recs)} questions' if recs else 'not run'))
    gains = {tag: paired_gain(recs_by['base', tag], recs_by['maskdpo', tag])
             for tag in ('greedy', 'sampled') if recs_by['base', tag] and recs_by['maskdpo', tag]}
    servers = {e.name: round(e.start_seconds, 1) for e in run.servers if e.start_seconds}
    return {'settings': dataclasses.asdict(s),
            'stages': [{'stage': n, **st, 'counts': c} for n, st, c in stages],
            'server_start_seconds': servers, 'pairs': pairs, 'train': tl,
            'anah_vs_exact': _agreement(anah, exact), 'exact_train_answers': _answer_stats(exact),
            'eval': evals, 'gain_over_base': gains}


def _read(path):
    return read_jsonl(path) if os.path.exists(path) else []


def _nonzero(d):
    return ', '.join(f'{k} {v}' for k, v in d.items() if v) or 'none'


def _fmt_labels(c: Counter) -> str:
    return ', '.join(f'{k} {c[k]}' for k in ('ok', 'nofact', 'contradictory', 'unverifiable',
                                             'unparsed') if c[k])


def _pct(x):
    return '-' if x is None else f'{100 * x:.1f}'


def _num(x):
    return '-' if x is None else f'{x:.2f}'


def report_markdown(doc: dict) -> str:
    total = sum(st.get('seconds') or 0 for st in doc['stages'])
    lines = ['# The real run: SmolLM2-135M-Instruct, vLLM on the CPU, real countries', '',
             '| Stage | Wall time (s) | Counts |', '|---|---|---|']
    lines += [f'| {st["stage"]} | {st.get("seconds") or "-"} | {st["counts"]} |'
              for st in doc['stages']]
    starts = ', '.join(f'{k} {v:.0f} s' for k, v in doc['server_start_seconds'].items())
    lines += [f'| **total** | {total:.0f} | vLLM server starts, included above (this '
              f'invocation): {starts or "none"} |', '',
              '## Held-out countries, exact judge', '',
              '| Model / decoding | Score % | Checked precision % | Facts/answer | Wrong/answer '
              '| Sentences/answer | Cut % |', '|---|---|---|---|---|---|---|']
    for k, m in doc['eval'].items():
        if m:
            lines.append(f'| {k} | {_pct(m["score"])} | {_pct(m["checked_precision"])} | '
                         f'{_num(m["facts_per_answer"])} | {_num(m["wrong_per_answer"])} | '
                         f'{_num(m["sentences_per_answer"])} | {_pct(m["cut_share"])} |')
    for tag, g in doc['gain_over_base'].items():
        lines.append(f'\nMask-DPO minus base, {tag}: {100 * g["diff"]:+.1f} points, 95% paired '
                     f'bootstrap over the {g["questions"]} countries [{100 * g["ci_low"]:+.1f}, '
                     f'{100 * g["ci_high"]:+.1f}].')
    a = doc['anah_vs_exact']
    lines += ['', '## ANAH-v2 with SmolLM2 as its own judge, against the exact judge', '',
              f'{a["sentences"]} sentences: unparsed {a["unparsed"]} '
              f'({_pct(a["unparsed_share"])}%); ' + (
                  'no sentence parsed, so there is nothing to compare.'
                  if a['agreement'] is None else
                  f'of the parsed, hallucinated-or-not agrees with the exact judge on '
                  f'{_pct(a["agreement"])}%, and on {_pct(a["agreement_on_checked"])}% of the '
                  f'{a["checked_sentences"]} sentences with a checkable claim.')]
    return '\n'.join(lines) + '\n'


def write_report(doc: dict, out: str) -> None:
    write_json(os.path.join(out, 'results.json'), doc)
    text = report_markdown(doc)
    with open(os.path.join(out, 'results.md'), 'w') as f:
        f.write(text)
    print(text)
