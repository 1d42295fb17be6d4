"""Paper Table 6 in the world: best-of-N with the exact oracle as the selector.

For each model of one training seed (base, DPO, Mask-DPO) and each held-out question, ``N_max``
answers are sampled at once (top-k and temperature of the evaluation's sampling; settings.py
``best_of``, 32) and every sentence is labelled by the world's oracle. For N = 1, 2, 4, ...,
N_max the answers are cut into the N_max / N blocks of N consecutive samples; from each block the
answer with the highest response score (share of non-hallucinated sentences; the first of equal
scores) is kept, and the ANAH score of the kept answers (pooled over sentences, as every world
score; ``evaluation/metrics.question_counts``) is averaged over the blocks. So N = 1 is the mean
of N_max one-sample evaluations and N = N_max is one selection over all samples.

The paper (ANAH-v2 both selects and scores, as the oracle does here; N up to 256): Llama3.1-8B
47.79 (N = 1) -> 76.30 (32) -> 80.98 (256), Mask-DPO 70.67 -> 90.53 -> 94.09: the gap shrinks
22.9 -> 14.2 -> 13.1 but stays, read as alignment changing what the model knows, not only which
of its answers it prefers.
"""
import os
from typing import Dict, List

import numpy as np

from maskdpo_xtuner.evaluation.metrics import question_counts
from maskdpo_xtuner.io.jsonl import read_jsonl
from maskdpo_xtuner.pipeline import (AnnotatorSpec, BackendSpec, SamplingParams, annotate,
                                     load_questions, sample)
from maskdpo_xtuner.pipeline.stages import code_hash

PAPER = {'base': {1: 47.79, 16: 73.38, 32: 76.30, 64: 76.93, 128: 79.42, 256: 80.98},
         'maskdpo': {1: 70.67, 16: 89.80, 32: 90.53, 64: 92.81, 128: 93.47, 256: 94.09}}


def ns(n_max: int) -> List[int]:
    """1, 2, 4, ... up to n_max (n_max itself must be a power of two)."""
    if n_max < 1 or n_max & (n_max - 1):
        raise ValueError(f'best-of-N needs a power of two as the number of samples, got {n_max}')
    return [2 ** i for i in range(n_max.bit_length())]


def _response_score(ann: dict) -> float:
    return -1.0 if ann.get('score') is None else ann['score']


def curve(records: List[dict], n_max: int) -> Dict[int, dict]:
    """{str(N): {'score', 'facts', 'sentences', 'blocks', 'response_score'}} of best-of-N over
    annotated records holding n_max answers each (module docstring); facts = ``ok`` sentences
    per kept answer; response_score = the kept answers' mean response score, the quantity the
    selector maximises (it cannot fall as N grows; the pooled score, weighted by sentences, can)."""
    for rec in records:
        if len(rec['annotations']) != n_max:
            raise ValueError(f'question {rec["id"]!r}: {len(rec["annotations"])} annotated '
                             f'answers, best-of-N needs {n_max}')
    out = {}
    for n in ns(n_max):
        scores, facts, sents, picked = [], [], [], []
        for b in range(n_max // n):
            kept = []
            for rec in records:
                block = rec['annotations'][b * n:(b + 1) * n]
                best = max(range(len(block)), key=lambda j: (_response_score(block[j]), -j))
                kept.append({'annotations': [block[best]]})
                picked.append(_response_score(block[best]))
            c = question_counts(kept).sum(0)
            scores.append(c[0] / (c[0] + c[1]) if c[0] + c[1] else 0.0)
            facts.append(np.mean([sum(s['label'] == 'ok' for s in k['annotations'][0]['sentences'])
                                  for k in kept]))
            sents.append(np.mean([len(k['annotations'][0]['sentences']) for k in kept]))
        out[str(n)] = {'score': float(np.mean(scores)), 'facts': float(np.mean(facts)),
                       'sentences': float(np.mean(sents)), 'blocks': n_max // n,
                       'response_score': float(np.mean(picked))}
    return out


def best_of_n(study, model_dir: str, model_key: str, out_base: str, seed: int, tag: str) -> dict:
    """{set: {N: curve point}} of one model of a world study (study.Study), from a cached,
    resumable stage per evaluation set: N_max samples per question, labelled by the oracle."""
    s, out = study.s, {}
    params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                            top_k=s.top_k, seed=seed * 1000 + 500)  # apart from eval seeds
    for set_name, questions in study.eval_sets().items():
        d = os.path.join(out_base, f'{study.eval_split}-{set_name}-bestof{s.best_of}-seed{seed}')
        responses, annotated = (os.path.join(d, f) for f in ('responses.jsonl',
                                                             'annotated.jsonl'))

        def make(questions=questions, responses=responses, annotated=annotated):
            sample(load_questions(questions), responses,
                   BackendSpec('transformers', model_dir, batch_size=s.batch_size), params,
                   n=s.best_of, model_name=model_dir, batch_size=s.batch_size)
            annotate(responses, annotated, AnnotatorSpec('world'))
        study.stages.run(f'{tag}: best-of-{s.best_of} samples, {set_name}', d,
                         {'model': model_key, 'world': study.world_key, 'set': set_name,
                          'split': study.eval_split, 'n': s.best_of,
                          'sampling': params.to_dict(), 'batch_size': s.batch_size,
                          'code': [code_hash('sample'), code_hash('annotate')]},
                         make, resumable=True)
        out[set_name] = curve(read_jsonl(annotated), s.best_of)
    return out
