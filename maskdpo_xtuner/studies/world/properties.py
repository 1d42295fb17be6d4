"""What a world is like, and what each model's answers say in it.

World properties (``pair_properties``) are measured on the **train** topics only, from the
base model's sampled answers and the pairs built from them, so they can be related to the
Mask-DPO minus DPO gap without looking at evaluation topics:

* ``mixed_chosen``: share of pairs whose chosen answer mixes correct and hallucinated sentences
  (the pairs where the chosen-side mask changes the loss);
* ``chosen_hallucinated``: share of the chosen answers' fact sentences that are hallucinated
  (what Mask-DPO leaves out on the chosen side);
* ``rejected_correct``: share of the rejected answers' fact sentences that are correct (what it
  leaves out on the rejected side);
* ``base_knowledge``: fact precision of the base model's sampled answers on the sentences about
  the asked subject (ok / (ok + wrong value)): how much it knows when it writes about the topic;
* ``subject_confusion``: share of the base model's sampled answers that write mostly about
  another subject (more than half their fact sentences), a whole-answer error no mask can fix.

Answer statistics (``answer_stats``, item 4 of the issue: what the paper omits) are measured on
evaluated answers: per attribute (``kind.attribute``) the share of answers stating it correctly,
wrongly, or not at all; sentences per answer, unique correct facts per answer, and the share of
answers about another subject. Sentences are re-read with the world's oracle (its traces name the
attribute), so every number is exact.
"""
import glob
import os
from collections import defaultdict
from typing import Dict, List

from maskdpo_xtuner.io.jsonl import read_jsonl
from maskdpo_xtuner.studies.world.oracle import judge_answer
from maskdpo_xtuner.studies.world.world import KINDS

HALLUCINATED = ('contradictory', 'unverifiable')
PROPERTIES = {'mixed_chosen': 'chosen answers that mix correct and hallucinated sentences',
              'chosen_hallucinated': "hallucinated share of the chosen answers' fact sentences",
              'rejected_correct': "correct share of the rejected answers' fact sentences",
              'base_knowledge': "base model's fact precision about the asked subject",
              'subject_confusion': "base answers mostly about another subject"}


def _judged(record: dict, response: str) -> List[tuple]:
    """(label, trace) per sentence of one answer to one world question record."""
    return [lab for _, lab in judge_answer(response, record['topic'], record['kind'],
                                           tuple(sorted(record['facts'].items())))]


def _about_other_subject(labels: List[tuple]) -> bool:
    facts = [t for lab, t in labels if lab != 'nofact']
    return bool(facts) and sum(t.get('reason') == 'other_subject' for t in facts) > len(facts) / 2


def pair_properties(pairs_path: str, annotated_path: str) -> Dict[str, float]:
    """The world's properties on train topics (see the module docstring), from one seed's pairs
    file and the annotated base-model samples they were built from."""
    pairs = read_jsonl(pairs_path)
    mixed = c_hall = c_facts = r_ok = r_facts = 0
    for p in pairs:
        for side in ('chosen', 'rejected'):
            types = [t for t in p[f'{side}_item']['type'] if t != 'nofact']
            ok = sum(t == 'ok' for t in types)
            bad = sum(t in HALLUCINATED for t in types)
            if side == 'chosen':
                mixed += ok > 0 and bad > 0
                c_hall, c_facts = c_hall + bad, c_facts + ok + bad
            else:
                r_ok, r_facts = r_ok + ok, r_facts + ok + bad
    right = wrong = confused = answers = 0
    for rec in read_jsonl(annotated_path):
        for response in rec['responses']:
            labels = _judged(rec, response)
            answers += 1
            confused += _about_other_subject(labels)
            for lab, trace in labels:
                if trace.get('reason') == 'true':
                    right += 1
                elif trace.get('reason') == 'wrong_value':
                    wrong += 1
    share = (lambda a, b: a / b if b else None)
    return {'pairs': len(pairs), 'mixed_chosen': share(mixed, len(pairs)),
            'chosen_hallucinated': share(c_hall, c_facts),
            'rejected_correct': share(r_ok, r_facts),
            'base_knowledge': share(right, right + wrong),
            'subject_confusion': share(confused, answers)}


def eval_answer_files(eval_dir: str) -> List[str]:
    """The annotated answers of one evaluation stage (greedy/ or one folder per sampling seed)."""
    return sorted(glob.glob(os.path.join(eval_dir, '*', 'annotated.jsonl')))


def answer_stats(paths: List[str]) -> dict:
    """Per attribute: shares of answers stating it correctly / wrongly / not at all; per answer:
    sentences, unique correct facts, and whether it is about another subject."""
    counts = defaultdict(lambda: {'correct': 0, 'wrong': 0, 'answers': 0})
    n = sentences = facts = other = 0
    for path in paths:
        for rec in read_jsonl(path):
            for response in rec['responses']:
                labels = _judged(rec, response)
                n += 1
                sentences += len(labels)
                facts += sum(lab == 'ok' for lab, _ in labels)
                other += _about_other_subject(labels)
                stated = {}
                for lab, trace in labels:  # the first statement of each own attribute counts
                    if trace.get('reason') in ('true', 'wrong_value'):
                        stated.setdefault(trace['attribute'], trace['reason'])
                for attr in KINDS[rec['kind']]:
                    c = counts[f'{rec["kind"]}.{attr}']
                    c['answers'] += 1
                    c['correct'] += stated.get(attr) == 'true'
                    c['wrong'] += stated.get(attr) == 'wrong_value'
    if not n:
        raise ValueError(f'no answers in {paths}')
    attrs = {k: {'correct': c['correct'] / c['answers'], 'wrong': c['wrong'] / c['answers'],
                 'absent': 1 - (c['correct'] + c['wrong']) / c['answers']}
             for k, c in sorted(counts.items())}
    return {'answers': n, 'sentences': sentences / n, 'facts': facts / n, 'other_subject': other / n,
            'attributes': attrs}
