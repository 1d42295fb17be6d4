"""Deterministic fake models for the integrity tests and the kill -9 drills.

Imported by tests, and run as a script by the drills (a subprocess that can be killed)::

    python tests/drill_jobs.py sample --questions q.jsonl --out out.jsonl --model fake ...

runs ``tools/<tool>.py`` with :class:`EchoModel` as the policy and :class:`KeywordAnnotator`
(annotate, eval_anah) or :class:`FactJudge` (eval_factscore) as the judge. Every answer is a
function of the prompt, the seed and the copy index only, so an interrupted and resumed run
must give the bytes of an uninterrupted one. ``DRILL_DELAY`` (seconds per generate/annotate
call) leaves time to kill the process mid-run.
"""
import hashlib
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NAMES = ['Ada', 'Marie', 'Lina', 'Tomas', 'Elna', 'Kofi']
PLACES = ['Lyon', 'Graz', 'Pecs', 'Oslo', 'Quito', 'Accra']


def _digest(*parts) -> int:
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode('utf-8')).digest()[:8], 'big')


def _delay():
    time.sleep(float(os.environ.get('DRILL_DELAY', '0')))


class EchoModel:
    """Answers two or three sentences chosen by a hash of (conversation, seed, copy)."""

    def __init__(self):
        self.calls = []

    def generate(self, conversations, params, n=1, seeds=None):
        _delay()
        self.calls.append(len(conversations))
        out = []
        for i, conv in enumerate(conversations):
            answers = []
            seed = seeds[i] if seeds is not None else params.seed
            for j in range(n):
                h = _digest(conv, seed if params.do_sample else None, j)
                name, place = NAMES[h % 6], PLACES[(h // 6) % 6]
                text = f'{name} was born in {place}. {name} won a prize.'
                if h % 3 == 0:
                    text += f' {name} was WRONG about {PLACES[(h // 36) % 6]}.'
                answers.append(text)
            out.append(answers)
        return out


class KeywordAnnotator:
    """Labels a sentence contradictory when it says WRONG, else ok."""
    name = 'keyword'
    needs_document = False

    def annotate(self, tasks):
        from maskdpo_xtuner.annotate import SentenceLabel
        _delay()
        return [SentenceLabel('contradictory' if 'WRONG' in t.sentence else 'ok') for t in tasks]


class FactJudge:
    """FActScore judge: each sentence is one fact; a fact is false when it says WRONG."""

    def generate(self, conversations, params, n=1, seeds=None):
        _delay()
        out = []
        for conv in conversations:
            user = conv[-1]['content']
            if 'True or False?' in user:
                fact = re.search(r'Input: (.*) True or False\?', user).group(1)
                out.append(['False' if 'WRONG' in fact else 'True'])
            else:
                out.append(['- ' + user.split('Sentence: ')[-1]])
        return out


def load_tool(name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'drill_{name}',
                                                  os.path.join(ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(tool: str, argv):
    mod = load_tool(tool)
    if tool == 'sample':
        return mod.main(argv, backend=EchoModel())
    if tool == 'annotate':
        return mod.main(argv, annotator=KeywordAnnotator())
    if tool == 'eval_anah':
        return mod.main(argv, backend=EchoModel(), judge=KeywordAnnotator())
    if tool == 'eval_factscore':
        return mod.main(argv, backend=EchoModel(), judge=FactJudge())
    raise SystemExit(f'unknown tool {tool}')


if __name__ == '__main__':
    sys.path.insert(0, ROOT)
    run(sys.argv[1], sys.argv[2:])
