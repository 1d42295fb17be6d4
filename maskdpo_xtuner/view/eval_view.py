"""Judged answers from tools/eval_anah.py output folders, question by question, model by model.

An evaluation folder ``D`` holds ``D/metrics.json`` (``runs``: one entry per run, with its
``run`` name and ``score``; ``settings.model``) and, per run, ``D/<run>/annotated.jsonl``
(tools/annotate.py's records: ``id``, ``question``, ``responses`` and ``annotations[j]
['sentences']`` with ``start``, ``end``, ``text``, ``label``). The view keeps each answer whole:
its text cut into segments, each a judged sentence (with its label) or the text between them.
"""
import os
from collections import Counter
from typing import Dict, List

from maskdpo_xtuner.annotate.score import is_hallucinated_label
from maskdpo_xtuner.io.validate import check_anah_metrics, check_annotated, read_json, records


def verdict(label: str) -> str:
    """'correct', 'hallucinated' or 'unparsed': how the score counts a sentence label."""
    flag = is_hallucinated_label(label)
    return 'unparsed' if flag is None else 'hallucinated' if flag else 'correct'


def segments(response: str, sentences: List[dict], where: str) -> List[list]:
    """``[[text, label or None], ...]`` covering ``response`` from start to end."""
    out, pos = [], 0
    for i, s in enumerate(sentences):
        start, end = s['start'], s['end']
        if not (pos <= start <= end <= len(response)) or response[start:end] != s['text']:
            raise ValueError(f'{where}: sentences[{i}]: span [{start}, {end}] does not hold '
                             f'its text {s["text"][:40]!r} in order')
        if start > pos:
            out.append([response[pos:start], None])
        out.append([s['text'], s['label']])
        pos = end
    if pos < len(response):
        out.append([response[pos:], None])
    return out


def load_eval_dir(path: str) -> dict:
    """``{'model', 'runs': [{'run', 'score', 'records'}]}`` of one evaluation folder."""
    metrics = os.path.join(path, 'metrics.json')
    if not os.path.exists(metrics):
        raise FileNotFoundError(f'{metrics}: not found (is {path} an output folder of '
                                'tools/eval_anah.py?)')
    doc = read_json(metrics)
    check_anah_metrics(doc, metrics)
    runs = []
    for r in doc['runs']:
        annotated = os.path.join(path, str(r.get('run')), 'annotated.jsonl')
        runs.append({'run': r['run'], 'score': r.get('score'), 'file': annotated,
                     'records': records(annotated, check_annotated)})
    return {'model': doc.get('settings', {}).get('model'), 'runs': runs}


def build_evals_view(dirs: Dict[str, str]) -> dict:
    """The view of named evaluation folders (``{name: folder}``, in display order)."""
    models, questions, order = [], {}, []
    labels = Counter()
    for m, (name, path) in enumerate(dirs.items()):
        ev = load_eval_dir(path)
        runs = []
        for run in ev['runs']:
            n = 0
            for lineno, rec in enumerate(run['records'], 1):
                key = str(rec['id'])
                if key not in questions:
                    questions[key] = {'id': key, 'question': rec.get('question', ''),
                                      'answers': []}
                    order.append(key)
                for j, ann in enumerate(rec['annotations']):
                    where = f'{run["file"]}: record {lineno} (id {key}): annotations[{j}]'
                    segs = segments(rec['responses'][j], ann['sentences'], where)
                    for _, lab in segs:
                        if lab is not None:
                            verdict(lab)  # an unknown label is an error here, not a colour
                            labels[lab] += 1
                    questions[key]['answers'].append(
                        {'model': m, 'run': run['run'], 'response': j,
                         'score': ann.get('score'), 'segments': segs})
                    n += 1
            runs.append({'run': run['run'], 'score': run['score'], 'answers': n})
        models.append({'name': name, 'model': ev['model'], 'folder': path, 'runs': runs})
    summary = {'models': len(models), 'questions': len(order),
               'answers': sum(len(q['answers']) for q in questions.values()),
               'labels': dict(labels), 'verdicts': {lab: verdict(lab) for lab in labels}}
    return {'models': models, 'questions': [questions[k] for k in order], 'summary': summary}
