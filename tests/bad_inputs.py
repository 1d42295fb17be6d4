"""The bad-input corpus: every tool of tools/ fed empty, truncated, mistyped, mis-encoded, huge,
incomplete and duplicated inputs, each case run in-process and classified by its outcome.

A case passes when the tool exits non-zero with a message that names the file and the field
(the case's ``names``) and prints no traceback, within the time limit; or, for a case run with
``--on-error skip``, exits 0 and prints the count of what it skipped. Outcomes (docs/integrity.md):

* ``named``: non-zero exit, every expected name in the message, no traceback
* ``named+traceback``: the names are there, under a traceback
* ``vague``: non-zero exit without a traceback, but the file or the field is not named
* ``bare``: a traceback that does not name the problem
* ``accepted``: exit 0 on input that should be refused (or a skip that was not counted)
* ``hang``: over the case's time limit
* ``skipped (counted)``: exit 0 with the count, for ``--on-error skip`` cases

Run by tests/test_bad_inputs.py, and as a drill on any checkout (its tools and its library)::

    PYTHONPATH=/path/to/checkout python tests/bad_inputs.py --root /path/to/checkout

Tools are loaded once and run with fake models (tests/drill_jobs.py), so the ~150 cases take
seconds, not minutes: each case's stdout and stderr (file descriptors included, so a child
process's output too) go to a file, ``SIGALRM`` stops a case over its limit.
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from drill_jobs import EchoModel, FactJudge, KeywordAnnotator  # noqa: E402

OUTCOMES = ('named', 'skipped (counted)', 'named+traceback', 'vague', 'bare', 'accepted', 'hang')
LATIN1 = '{"id": "q1", "question": "Who was Ad\xe9le?"}\n'.encode('latin-1')
UTF16 = '{"id": "q1", "question": "Who was Ada?"}\n'.encode('utf-16')
BINARY = bytes(range(256)) * 4


class CaseTimeout(BaseException):
    """A case ran past its limit (BaseException: no ``except Exception`` of a tool stops it)."""


@dataclass
class Case:
    tool: str
    name: str
    argv: List[str]               # {d} is the case's folder, {base} the shared valid inputs
    files: Dict[str, object] = field(default_factory=dict)  # name -> bytes | str | records
    names: List[str] = field(default_factory=list)  # all must appear in the message
    skip: bool = False            # run with --on-error skip: exit 0 and a count expected
    env: Dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0

    @property
    def id(self):
        return f'{self.tool}:{self.name}'


@dataclass
class Result:
    case: Case
    outcome: str
    code: Optional[int]
    seconds: float
    output: str


# ------------------------------------------------------------------------------ valid inputs
def q(i, **kw):
    return {'id': f'q{i}', 'question': f'Who was person {i}?', 'document':
            f'Person {i} was born in Lyon.', **kw}


RESP = ['Ada was born in Lyon. Ada won a prize.', 'Ada was born in Oslo. Ada was WRONG twice.']


def sample(i, **kw):
    return {**q(i), 'responses': list(RESP), **kw}


def sentences(text, labels):
    out, pos = [], 0
    for part, lab in zip([s + '.' for s in text.rstrip('.').split('. ')], labels):
        start = text.index(part, pos)
        out.append({'start': start, 'end': start + len(part), 'text': part, 'label': lab})
        pos = start + len(part)
    return out


def annotated(i, **kw):
    rec = sample(i)
    rec['annotations'] = [{'sentences': sentences(RESP[0], ['ok', 'ok'])},
                          {'sentences': sentences(RESP[1], ['ok', 'contradictory'])}]
    rec.update(kw)
    return rec


def with_span(rec, j, k, **change):
    rec['annotations'][j]['sentences'][k].update(change)
    return rec


def lines(records) -> bytes:
    return ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records).encode('utf-8')


def read_sample_pairs(root):
    with open(os.path.join(root, 'data', 'sample_pairs.jsonl'), encoding='utf-8') as f:
        return [json.loads(x) for x in f if x.strip()]


# ------------------------------------------------------------------------------ the cases
def jsonl_cases(tool, flag, good, extra, field_name, dup_names, base_argv=()):
    """The damage every JSON Lines input gets: ``good`` makes a valid record (i -> dict)."""
    f = 'in.jsonl'
    arg = [flag, '{d}/' + f, *extra]
    recs = [good(i) for i in range(3)]
    no_field = [dict(r) for r in recs]
    no_field[1].pop(field_name)
    wrong = [dict(r) for r in recs]
    wrong[2][field_name] = 12345
    return [
        Case(tool, 'missing file', [flag, '{d}/absent.jsonl', *extra], names=['absent.jsonl']),
        Case(tool, 'a folder for a file', [flag, '{d}', *extra], names=['{d}']),
        Case(tool, 'empty file', arg, {f: b''}, [f, 'empty']),
        Case(tool, 'blank lines only', arg, {f: b'\n  \n\n'}, [f, 'empty']),
        Case(tool, 'truncated last line', arg, {f: lines(recs)[:-25]}, [f + ':3', 'JSON']),
        Case(tool, 'not JSON', arg, {f: b'id,question\nq1,Who?\n'}, [f + ':1', 'JSON']),
        Case(tool, 'a JSON array', arg, {f: json.dumps(recs).encode()}, [f, 'JSON Lines']),
        Case(tool, 'a JSON string per line', arg, {f: b'"q1"\n"q2"\n'}, [f + ':1', 'object']),
        Case(tool, 'Latin-1 bytes', arg, {f: LATIN1}, [f + ':1', 'UTF-8']),
        Case(tool, 'UTF-16', arg, {f: UTF16}, [f + ':1', 'UTF-8']),
        Case(tool, 'binary garbage', arg, {f: BINARY}, [f + ':1']),
        Case(tool, 'UTF-8 BOM', arg, {f: b'\xef\xbb\xbf' + lines(recs)}, [f + ':1', 'BOM']),
        Case(tool, f'missing {field_name}', arg, {f: lines(no_field)}, [f + ':2', field_name]),
        Case(tool, f'{field_name} a number', arg, {f: lines(wrong)},
             [f + ':3', repr(field_name)]),
        Case(tool, 'duplicated ids', arg, {f: lines(recs + [recs[0]])}, [f + ':4', *dup_names]),
        Case(tool, 'a line over the line limit', arg,
             {f: lines(recs[:1]) + b'{"id": "big", "x": "' + b'y' * (2 ** 20 + 10) + b'"}\n'},
             [f + ':2', 'MASKDPO_MAX_LINE_BYTES'], env={'MASKDPO_MAX_LINE_BYTES': str(2 ** 20)}),
        Case(tool, 'skip: one record without its field', arg + ['--on-error', 'skip'],
             {f: lines(no_field)}, ['skipped', 'missing_field'], skip=True),
    ]


def build_cases(base: str, root: str) -> List[Case]:
    cases: List[Case] = []
    fake_model = ['--model', 'fake']
    # ---- sample: questions
    cases += jsonl_cases('sample', '--questions', q, ['--out', '{d}/out.jsonl', *fake_model],
                         'question', ["'q0'", 'repeated'])
    cases += [
        Case('sample', 'id a list', ['--questions', '{d}/in.jsonl', '--out', '{d}/o.jsonl',
                                     *fake_model], {'in.jsonl': lines([q(0, id=[1])])},
             ['in.jsonl:1', "'id'"]),
        Case('sample', 'messages malformed', ['--questions', '{d}/in.jsonl', '--out',
                                              '{d}/o.jsonl', *fake_model],
             {'in.jsonl': lines([{'id': 1, 'messages': [{'role': 'robot', 'content': 'x'}]}])},
             ['in.jsonl:1', 'messages[0]']),
        Case('sample', 'huge question (500,000 characters)',
             ['--questions', '{d}/in.jsonl', '--out', '{d}/o.jsonl', *fake_model],
             {'in.jsonl': lines([q(0, question='Why? ' * 100_000)])},
             ['in.jsonl:1', "'question'", 'MASKDPO_MAX_QUESTION_CHARS']),
        Case('sample', 'huge question, skipped', ['--questions', '{d}/in.jsonl', '--out',
                                                  '{d}/o.jsonl', '--on-error', 'skip',
                                                  *fake_model],
             {'in.jsonl': lines([q(0, question='Why? ' * 100_000), q(1)])},
             ['skipped', 'too_long'], skip=True),
        Case('sample', 'n zero', ['--questions', '{base}/questions.jsonl', '--out',
                                  '{d}/o.jsonl', '--n', '0', *fake_model], names=['n']),
        Case('sample', 'n not a number', ['--questions', '{base}/questions.jsonl', '--out',
                                          '{d}/o.jsonl', '--n', 'many', *fake_model],
             names=['--n', 'many']),
        Case('sample', 'output in a missing read-only place',
             ['--questions', '{base}/questions.jsonl', '--out', '/proc/nope/o.jsonl',
              *fake_model], names=['/proc/nope']),
    ]
    # ---- annotate: samples
    ann = ['--out', '{d}/out.jsonl']
    cases += jsonl_cases('annotate', '--input', sample, ann, 'responses', ["'q0'"])
    cases += [
        Case('annotate', 'responses a string', ['--input', '{d}/in.jsonl', *ann],
             {'in.jsonl': lines([sample(0, responses='Ada was born.')])},
             ['in.jsonl:1', "'responses'"]),
        Case('annotate', 'a response a number', ['--input', '{d}/in.jsonl', *ann],
             {'in.jsonl': lines([sample(0, responses=['ok.', 7])])},
             ['in.jsonl:1', 'responses[1]']),
        Case('annotate', 'question missing', ['--input', '{d}/in.jsonl', *ann],
             {'in.jsonl': lines([{k: v for k, v in sample(0).items() if k != 'question'}])},
             ['in.jsonl:1', "'question'"]),
        Case('annotate', 'a 200,000-character response', ['--input', '{d}/in.jsonl', *ann],
             {'in.jsonl': lines([sample(0, responses=['Ada was born in Lyon. ' * 9_091])])},
             ['in.jsonl:1', 'responses[0]', 'MASKDPO_MAX_RESPONSE_CHARS']),
        Case('annotate', 'a 200,000-character response, skipped',
             ['--input', '{d}/in.jsonl', *ann, '--on-error', 'skip'],
             {'in.jsonl': lines([sample(0, responses=['Ada was born in Lyon. ' * 9_091]),
                                 sample(1)])}, ['skipped', 'too_long'], skip=True),
        Case('annotate', 'a response of 3,000 sentences', ['--input', '{d}/in.jsonl', *ann],
             {'in.jsonl': lines([sample(0, responses=['Ada won. ' * 3_000])])},
             ['in.jsonl:1', 'responses[0]', 'MASKDPO_MAX_SENTENCES']),
        Case('annotate', 'a 1,000,000-character document', ['--input', '{d}/in.jsonl', *ann],
             {'in.jsonl': lines([sample(0, document='Lyon. ' * 170_000)])},
             ['in.jsonl:1', "'document'", 'MASKDPO_MAX_DOCUMENT_CHARS']),
        Case('annotate', 'documents file: no document field',
             ['--input', '{base}/samples.jsonl', *ann, '--documents', '{d}/docs.jsonl'],
             {'docs.jsonl': lines([{'id': 'q0', 'text': 'x'}])}, ['docs.jsonl:1', "'document'"]),
        Case('annotate', 'documents file missing',
             ['--input', '{base}/samples.jsonl', *ann, '--documents', '{d}/none.jsonl'],
             names=['none.jsonl']),
        Case('annotate', 'output is a folder', ['--input', '{base}/samples.jsonl', '--out',
                                                '{d}/dir'], {'dir/x': b''}, names=['dir']),
    ]
    # ---- build_pairs: annotations
    bp = ['--out', '{d}/pairs.jsonl']
    cases += jsonl_cases('build_pairs', '--input', annotated, bp, 'annotations', ["'q0'"])

    def span_case(name, change, fieldname, j=1, k=1):
        return Case('build_pairs', name, ['--input', '{d}/in.jsonl', *bp],
                    {'in.jsonl': lines([annotated(0), with_span(annotated(1), j, k, **change)])},
                    ['in.jsonl:2', f'annotations[{j}].sentences[{k}].{fieldname}'])
    cases += [
        span_case('negative span', {'start': -21, 'end': -1}, 'start'),
        span_case('span past the end', {'end': 999}, 'end'),
        span_case('reversed span', {'start': 30, 'end': 22}, 'end'),
        span_case('overlapping spans', {'start': 10, 'end': 41,
                                        'text': RESP[1][10:41]}, 'start'),
        span_case('span not on the text', {'text': 'Ada was born in Graz.'}, 'start', 1, 0),
        span_case('start a string', {'start': '0'}, 'start', 0, 0),
        span_case('label true', {'label': 'true'}, 'label', 0, 1),
        span_case('label missing', {'label': None}, 'label', 0, 1),
        Case('build_pairs', 'fewer annotations than responses', ['--input', '{d}/in.jsonl', *bp],
             {'in.jsonl': lines([annotated(0, annotations=annotated(0)['annotations'][:1])])},
             ['in.jsonl:1', "'annotations'"]),
        Case('build_pairs', 'sentences not a list', ['--input', '{d}/in.jsonl', *bp],
             {'in.jsonl': lines([annotated(0, annotations=[{'sentences': 'x'}, {}])])},
             ['in.jsonl:1', 'annotations[0].sentences']),
        Case('build_pairs', 'the same id in two files',
             ['--input', '{base}/annotated.jsonl', '{d}/in.jsonl', *bp],
             {'in.jsonl': lines([annotated(0)])}, ['in.jsonl:1', "'q0'"]),
        Case('build_pairs', 'negative span, skipped',
             ['--input', '{d}/in.jsonl', *bp, '--on-error', 'skip'],
             {'in.jsonl': lines([annotated(0), with_span(annotated(1), 1, 1, start=-21,
                                                         end=-1)])},
             ['skipped', 'bad_span'], skip=True),
    ]
    # ---- eval_anah: questions
    ev = ['--out-dir', '{d}/eval', *fake_model]
    cases += jsonl_cases('eval_anah', '--questions', q, ev, 'question', ["'q0'"])
    cases += [
        Case('eval_anah', 'documents file of another format',
             ['--questions', '{d}/in.jsonl', *ev, '--documents', '{d}/docs.jsonl'],
             {'in.jsonl': lines([{'id': 'q0', 'question': 'Who?'}]),
              'docs.jsonl': lines([{'id': 'q0', 'doc': 'x'}])}, ['docs.jsonl:1', 'document']),
        Case('eval_anah', 'a 1,000,000-character document', ['--questions', '{d}/in.jsonl', *ev],
             {'in.jsonl': lines([q(0, document='Lyon. ' * 170_000)])},
             ['in.jsonl:1', "'document'", 'MASKDPO_MAX_DOCUMENT_CHARS']),
        Case('eval_anah', 'seeds not numbers', ['--questions', '{base}/questions.jsonl', *ev,
                                                '--seeds', 'a'], names=['--seeds']),
        Case('eval_anah', 'out-dir is a file', ['--questions', '{base}/questions.jsonl',
                                                '--out-dir', '{d}/f', *fake_model],
             {'f': b'x'}, names=['f']),
    ]
    # ---- eval_factscore: generations, entities, knowledge
    fs = ['--knowledge', '{base}/knowledge.jsonl', '--out-dir', '{d}/fs', '--judge-model', 'j']

    def gen(i, **kw):
        return {'id': f'g{i}', 'topic': f'Person {i}', 'response': RESP[0], **kw}
    cases += jsonl_cases('eval_factscore', '--generations', gen, fs, 'response', ["'g0'"])
    cases += [
        Case('eval_factscore', 'topic missing', ['--generations', '{d}/in.jsonl', *fs],
             {'in.jsonl': lines([{'id': 1, 'response': 'x.'}])}, ['in.jsonl:1', 'entity']),
        Case('eval_factscore', 'responses an empty list', ['--generations', '{d}/in.jsonl', *fs],
             {'in.jsonl': lines([{'topic': 'Person 0', 'responses': []}])},
             ['in.jsonl:1', "'responses'"]),
        Case('eval_factscore', 'a 5 MB response', ['--generations', '{d}/in.jsonl', *fs],
             {'in.jsonl': lines([gen(0, response='Ada was born in Lyon. ' * 238_000)])},
             ['in.jsonl:1', "'response'", 'MASKDPO_MAX_RESPONSE_CHARS'], timeout=60),
        Case('eval_factscore', 'a 5 MB response, skipped',
             ['--generations', '{d}/in.jsonl', *fs, '--on-error', 'skip'],
             {'in.jsonl': lines([gen(0, response='Ada was born in Lyon. ' * 238_000), gen(1)])},
             ['skipped', 'too_long'], skip=True, timeout=60),
        Case('eval_factscore', 'a topic not in the knowledge',
             ['--generations', '{d}/in.jsonl', *fs],
             {'in.jsonl': lines([gen(0, topic='Nobody')])}, ['knowledge.jsonl', 'Nobody']),
        Case('eval_factscore', 'knowledge file missing',
             ['--generations', '{base}/generations.jsonl', '--knowledge', '{d}/k.jsonl',
              '--out-dir', '{d}/fs', '--judge-model', 'j'], names=['k.jsonl']),
        Case('eval_factscore', 'knowledge without title',
             ['--generations', '{base}/generations.jsonl', '--knowledge', '{d}/k.jsonl',
              '--out-dir', '{d}/fs', '--judge-model', 'j'],
             {'k.jsonl': lines([{'name': 'Person 0', 'text': 'x'}])}, ['k.jsonl:1', 'title']),
        Case('eval_factscore', 'knowledge text a number',
             ['--generations', '{base}/generations.jsonl', '--knowledge', '{d}/k.jsonl',
              '--out-dir', '{d}/fs', '--judge-model', 'j'],
             {'k.jsonl': lines([{'title': 'Person 0', 'text': 5}])}, ['k.jsonl:1', 'text']),
        Case('eval_factscore', 'knowledge truncated',
             ['--generations', '{base}/generations.jsonl', '--knowledge', '{d}/k.jsonl',
              '--out-dir', '{d}/fs', '--judge-model', 'j'],
             {'k.jsonl': b'{"title": "Person 0", "text": "Person 0 was bo'}, ['k.jsonl:1']),
        Case('eval_factscore', 'knowledge in Latin-1',
             ['--generations', '{base}/generations.jsonl', '--knowledge', '{d}/k.jsonl',
              '--out-dir', '{d}/fs', '--judge-model', 'j'],
             {'k.jsonl': '{"title": "Ad\xe9le", "text": "x"}\n'.encode('latin-1')},
             ['k.jsonl:1', 'UTF-8']),
        Case('eval_factscore', 'knowledge .db not SQLite',
             ['--generations', '{base}/generations.jsonl', '--knowledge', '{d}/k.db',
              '--out-dir', '{d}/fs', '--judge-model', 'j'], {'k.db': b'not a database' * 100},
             ['k.db', 'SQLite']),
        Case('eval_factscore', 'knowledge .db without a documents table',
             ['--generations', '{base}/generations.jsonl', '--knowledge', '{base}/other.db',
              '--out-dir', '{d}/fs', '--judge-model', 'j'], names=['other.db', 'documents']),
        Case('eval_factscore', 'entities in Latin-1',
             ['--entities', '{d}/e.txt', *fs, *fake_model],
             {'e.txt': 'Ad\xe9le\n'.encode('latin-1')}, ['e.txt:1', 'UTF-8']),
        Case('eval_factscore', 'entities empty', ['--entities', '{d}/e.txt', *fs, *fake_model],
             {'e.txt': b'\n'}, ['e.txt', 'empty']),
        Case('eval_factscore', 'entities JSONL without topic',
             ['--entities', '{d}/e.jsonl', *fs, *fake_model],
             {'e.jsonl': lines([{'name': 'x'}])}, ['e.jsonl:1', 'entity']),
        Case('eval_factscore', 'an entity of 100,000 characters',
             ['--entities', '{d}/e.txt', *fs, *fake_model], {'e.txt': b'A' * 100_000 + b'\n'},
             ['e.txt:1', 'MASKDPO_MAX_QUESTION_CHARS']),
        Case('eval_factscore', 'chunk zero', ['--generations', '{base}/generations.jsonl', *fs,
                                              '--chunk', '0'], names=['chunk']),
    ]
    # ---- report: evaluation outputs
    def metrics_case(name, content, names, extra=()):
        return Case('report', name, ['--runs', 'a={d}/m.json', *extra],
                    {'m.json': content}, names)
    good = json.load(open(os.path.join(base, 'eval', 'metrics.json'), encoding='utf-8'))
    no_counts = json.loads(json.dumps(good))
    no_counts['runs'][0]['per_question'].pop('counts')
    zero = json.loads(json.dumps(good))
    zero['runs'][0]['n_sentences'] = 0
    bad_q = json.loads(json.dumps(good))
    bad_q['runs'][0]['per_question']['counts'] = [['x']]
    cases += [
        metrics_case('metrics missing', None, ['m.json']),
        metrics_case('metrics empty', b'', ['m.json', 'JSON']),
        metrics_case('metrics truncated', json.dumps(good).encode()[:200], ['m.json', 'JSON']),
        metrics_case('metrics in Latin-1', '{"runs": "\xe9"}'.encode('latin-1'),
                     ['m.json', 'UTF-8']),
        metrics_case('metrics a list', b'[]', ['m.json', 'runs']),
        metrics_case('no runs', json.dumps({'runs': []}).encode(), ['m.json', 'runs']),
        metrics_case('a run without counts', json.dumps(no_counts).encode(),
                     ['m.json', 'counts']),
        metrics_case('a run of 0 sentences', json.dumps(zero).encode(),
                     ['m.json', 'n_sentences'], ['--plot', '{d}/p.png']),
        metrics_case('counts of the wrong shape', json.dumps(bad_q).encode(),
                     ['m.json', 'counts']),
        Case('report', 'a folder without metrics.json', ['--runs', 'a={d}'], names=['metrics.json']),
        Case('report', 'runs spec without =', ['--runs', '{base}/eval'], names=['--runs']),
        Case('report', 'factscore.json without metrics', ['--factscore', 'a={d}/f.json'],
             {'f.json': b'{"config": {}}'}, ['f.json', 'metrics']),
        Case('report', 'factscore.json truncated', ['--factscore', 'a={d}/f.json'],
             {'f.json': b'{"metrics": {"per_resp'}, ['f.json', 'JSON']),
        Case('report', 'baseline not a model', ['--runs', 'a={base}/eval', '--baseline', 'zz'],
             names=['--baseline', 'zz']),
    ]
    # ---- show: pairs and evaluation folders
    tok = ['--tokenizer', '{base}/tokenizer', '--out', '{d}/v.html']
    pairs = read_sample_pairs(root)[:4]
    neg = json.loads(json.dumps(pairs))
    neg[1]['chosen_item']['spans'] = [[-5, -1]] * len(neg[1]['chosen_item']['sents'])
    cases += [
        Case('show', 'pairs missing', ['--pairs', '{d}/p.jsonl', *tok], names=['p.jsonl']),
        Case('show', 'pairs empty', ['--pairs', '{d}/p.jsonl', *tok], {'p.jsonl': b''},
             ['p.jsonl', 'empty']),
        Case('show', 'pairs truncated', ['--pairs', '{d}/p.jsonl', *tok],
             {'p.jsonl': lines(pairs)[:-30]}, ['p.jsonl:4', 'JSON']),
        Case('show', 'pairs in Latin-1', ['--pairs', '{d}/p.jsonl', *tok], {'p.jsonl': LATIN1},
             ['p.jsonl:1', 'UTF-8']),
        Case('show', 'a pair with negative spans', ['--pairs', '{d}/p.jsonl', *tok],
             {'p.jsonl': lines(neg)}, ['p.jsonl:2', 'chosen_item.spans[0]']),
        Case('show', 'a pair without chosen', ['--pairs', '{d}/p.jsonl', *tok],
             {'p.jsonl': lines([{k: v for k, v in pairs[0].items() if k != 'chosen'}])},
             ['p.jsonl:1', "'chosen'"]),
        Case('show', 'tokenizer folder missing', ['--pairs', '{base}/pairs.jsonl', '--tokenizer',
                                                  '{d}/tok', '--out', '{d}/v.html'],
             names=['tok']),
        Case('show', 'config missing', ['--config', '{d}/c.py', '--out', '{d}/v.html'],
             names=['c.py']),
        Case('show', 'eval folder missing', ['--evals', 'a={d}/none', '--out', '{d}/v.html'],
             names=['none']),
        Case('show', 'eval folder with a torn annotated file',
             ['--evals', 'a={d}/e', '--out', '{d}/v.html'],
             {'e/metrics.json': ('copy', 'eval/metrics.json'),
              'e/eval_config.json': ('copy', 'eval/eval_config.json'),
              'e/greedy/annotated.jsonl': b'{"id": "q0", "question": "Who',
              'e/greedy/responses.jsonl': ('copy', 'eval/greedy/responses.jsonl')},
             ['annotated.jsonl:1']),
        Case('show', 'eval folder with a wrong-typed record',
             ['--evals', 'a={d}/e', '--out', '{d}/v.html'],
             {'e/metrics.json': ('copy', 'eval/metrics.json'),
              'e/eval_config.json': ('copy', 'eval/eval_config.json'),
              'e/greedy/annotated.jsonl': lines([{'id': 'q0', 'question': 'Who?',
                                                  'responses': 'x', 'annotations': []}]),
              'e/greedy/responses.jsonl': ('copy', 'eval/greedy/responses.jsonl')},
             ['annotated.jsonl:1', 'responses']),
        Case('show', 'evals spec without =', ['--evals', '{base}/eval', '--out', '{d}/v.html'],
             names=['--evals']),
    ]
    # ---- train and precompute: training pairs through a config
    config = os.path.join(root, 'configs', 'maskdpo', 'tiny_cpu_maskdpo.py')
    model = os.path.join(base, 'model')

    def data_opts(path):
        return ['--cfg-options', f'train_dataloader.dataset.data_files={path}',
                'train_dataloader.dataset.cache_dir={d}/cache']
    bad_label = json.loads(json.dumps(pairs))
    bad_label[2]['rejected_item']['type'][0] = 'true'
    long_pair = json.loads(json.dumps(pairs[:1]))[0]
    long_pair['chosen'] = [{'role': 'assistant', 'content': 'Ada. ' * 40_000}]
    for tool, lead in (('train', [config, '--model', model, '--work-dir', '{d}/w']),
                       ('precompute_ref_logps', [config])):
        t = 180 if tool == 'train' else 60
        pre = [] if tool == 'train' else [
            'model.ref_logps_cache={d}/ref.pt',
            'train_dataloader.dataset.ref_logps_cache={d}/ref.pt',
            f'model.llm.pretrained_model_name_or_path={model}',
            f'train_dataloader.dataset.tokenizer.pretrained_model_name_or_path={model}']
        cases += [
            Case(tool, 'config missing', ['{d}/none.py'], names=['none.py'], timeout=t),
            Case(tool, 'pairs file missing', lead + data_opts('{d}/p.jsonl') + pre,
                 names=['p.jsonl'], timeout=t),
            Case(tool, 'pairs file empty', lead + data_opts('{d}/p.jsonl') + pre,
                 {'p.jsonl': b''}, ['p.jsonl', 'empty'], timeout=t),
            Case(tool, 'pairs truncated', lead + data_opts('{d}/p.jsonl') + pre,
                 {'p.jsonl': lines(pairs)[:-30]}, ['p.jsonl:4', 'JSON'], timeout=t),
            Case(tool, 'a label true', lead + data_opts('{d}/p.jsonl') + pre,
                 {'p.jsonl': lines(bad_label)}, ['p.jsonl:3', 'rejected_item.type[0]'],
                 timeout=t),
            Case(tool, 'negative spans', lead + data_opts('{d}/p.jsonl') + pre,
                 {'p.jsonl': lines(neg)}, ['p.jsonl:2', 'chosen_item.spans[0]'], timeout=t),
            Case(tool, 'a 200,000-character answer', lead + data_opts('{d}/p.jsonl') + pre,
                 {'p.jsonl': lines([long_pair])}, ['p.jsonl:1', "'chosen'",
                                                   'MASKDPO_MAX_RESPONSE_CHARS'], timeout=t),
            Case(tool, 'pairs in Latin-1', lead + data_opts('{d}/p.jsonl') + pre,
                 {'p.jsonl': LATIN1}, ['p.jsonl:1', 'UTF-8'], timeout=t),
        ]
    cases += [
        Case('train', 'too few pairs for the schedule',
             [config, '--model', model, '--work-dir', '{d}/w'] + data_opts('{d}/p.jsonl'),
             {'p.jsonl': lines(pairs)}, ['p.jsonl', '4 valid', 'at least 13'], timeout=180),
        Case('train', 'cfg-options without =', [config, '--cfg-options', 'model'],
             names=['--cfg-options', 'model']),
        Case('precompute_ref_logps', 'no cache configured', [config], names=['ref_logps_cache']),
        Case('precompute_ref_logps', 'cfg-options without =', [config, '--cfg-options', 'model'],
             names=['model']),
    ]
    # ---- the other tools: their flags and files
    cases += [
        Case('serve', 'port not a number', ['--model', '{base}/model', '--port', 'x'],
             names=['--port']),
        Case('serve', 'unknown engine', ['--model', '{base}/model', '--engine', 'tgi'],
             names=['--engine']),
        Case('serve', 'no model', ['--port', '1'], names=['--model']),
        Case('build_tiny_model', 'data file missing', ['--out', '{d}/m', '--data', '{d}/x.jsonl'],
             names=['x.jsonl']),
        Case('build_tiny_model', 'data file in Latin-1',
             ['--out', '{d}/m', '--data', '{d}/x.jsonl'], {'x.jsonl': LATIN1},
             ['x.jsonl:1', 'UTF-8']),
        Case('build_tiny_model', 'vocab size not a number', ['--vocab-size', 'big'],
             names=['--vocab-size']),
        Case('build_smollm2', 'wheel missing', ['--out', '{d}/m', '--wheel', '{d}/w.whl'],
             names=['w.whl']),
        Case('build_smollm2', 'wheel not a wheel', ['--out', '{d}/m', '--wheel', '{d}/w.whl'],
             {'w.whl': b'not a zip'}, ['w.whl']),
        Case('real_run', 'k not a number', ['--k', 'x'], names=['--k']),
        Case('real_run', 'model folder missing', ['--model', '{d}/none', '--out', '{d}/r'],
             names=['none']),
        Case('world_study', 'unknown preset', ['--preset', 'huge'], names=['--preset']),
        Case('world_study', 'seeds not numbers', ['--seeds', 'x'], names=['--seeds']),
        Case('demo', 'an unknown study', ['--study', 'nope', '--out', '{d}/w'],
             names=['--study']),
        Case('eval_report_example', 'n-topics not a number', ['--n-topics', 'x'],
             names=['--n-topics']),
        Case('import_pairs', 'input missing', ['--format', 'trl', '{d}/none.jsonl', '--out',
                                               '{d}/o.jsonl'], names=['none.jsonl']),
        Case('import_pairs', 'TRL row without chosen', ['--format', 'trl', '{d}/t.jsonl',
                                                        '--out', '{d}/o.jsonl'],
             {'t.jsonl': lines([{'prompt': 'Q?', 'rejected': 'No.'}])}, ['t.jsonl:1', 'chosen']),
        Case('import_pairs', 'TRL rows in Latin-1', ['--format', 'trl', '{d}/t.jsonl', '--out',
                                                     '{d}/o.jsonl'], {'t.jsonl': LATIN1},
             ['t.jsonl:1', 'UTF-8']),
        Case('import_pairs', 'an unknown format', ['--format', 'csv', '{d}/t.jsonl', '--out',
                                                   '{d}/o.jsonl'], names=['--format']),
        Case('audit_judge', 'audit set missing', ['--judge', 'countries', '--set',
                                                  '{d}/none.jsonl'], names=['none.jsonl']),
        Case('audit_judge', 'audit set in Latin-1', ['--judge', 'countries', '--set',
                                                     '{d}/a.jsonl'], {'a.jsonl': LATIN1},
             ['a.jsonl:1', 'UTF-8']),
    ]
    for bench, flag in (('bench_annotate', '--sentences'), ('bench_dataset', '--ranks'),
                        ('bench_masks', '--records'), ('bench_sampling', '--questions'),
                        ('bench_train', '--steps'), ('bench_train_trl', '--steps')):
        cases.append(Case(bench, f'{flag} not a number', [flag, 'x'], names=[flag]))
    return cases


# ------------------------------------------------------------------------------ the shared inputs
def make_base(base: str, root: str, load: Callable, model: bool = True) -> None:
    """The valid inputs every case starts from (and damages): questions, samples, annotations,
    pairs, an evaluation folder, FActScore generations and knowledge, a tokenizer, a model."""
    import sqlite3
    os.makedirs(base, exist_ok=True)
    write = (lambda name, data: open(os.path.join(base, name), 'wb').write(data))
    write('questions.jsonl', lines([q(i) for i in range(3)]))
    write('samples.jsonl', lines([sample(i) for i in range(3)]))
    write('annotated.jsonl', lines([annotated(i) for i in range(3)]))
    write('pairs.jsonl', lines(read_sample_pairs(root)))
    write('generations.jsonl', lines([{'id': f'g{i}', 'topic': f'Person {i}',
                                       'response': RESP[0]} for i in range(2)]))
    write('knowledge.jsonl', lines([{'title': f'Person {i}', 'text': f'Person {i} was born in '
                                     f'Lyon. Person {i} won a prize.'} for i in range(3)]))
    with contextlib.closing(sqlite3.connect(os.path.join(base, 'other.db'))) as db:
        db.execute('CREATE TABLE pages (title TEXT, text TEXT)')
        db.commit()
    with quiet():
        load('eval_anah').main(['--questions', os.path.join(base, 'questions.jsonl'),
                                '--out-dir', os.path.join(base, 'eval'), '--model', 'fake',
                                '--n-boot', '20'], backend=EchoModel(), judge=KeywordAnnotator())
        if model:
            from maskdpo_xtuner.offline.tiny import build_tiny_model
            tok = build_tiny_model(os.path.join(base, 'model'),
                                   [os.path.join(root, 'data', 'sample_pairs.jsonl')])
            tok.save_pretrained(os.path.join(base, 'tokenizer'))


@contextlib.contextmanager
def quiet():
    with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):
        yield


# ------------------------------------------------------------------------------ running a case
def loader(root: str):
    cache = {}

    def load(name):
        if name not in cache:
            spec = importlib.util.spec_from_file_location(
                f'bad_inputs_{name}', os.path.join(root, 'tools', f'{name}.py'))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            cache[name] = mod
        return cache[name]
    return load


FAKES = {'sample': {'backend': EchoModel}, 'annotate': {'annotator': KeywordAnnotator},
         'eval_anah': {'backend': EchoModel, 'judge': KeywordAnnotator},
         'eval_factscore': {'backend': EchoModel, 'judge': FactJudge}}


@contextlib.contextmanager
def captured(path: str):
    """fd 1 and 2 (children included) and sys.stdout/err into ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, 'w+', encoding='utf-8', errors='replace') as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        # writes to fd 1 itself, never closed: a logging handler made during a case keeps it
        # and writes to the real stdout afterwards, as it would on the command line
        out = io.TextIOWrapper(io.FileIO(1, 'w', closefd=False), encoding='utf-8',
                               errors='replace', line_buffering=True)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                yield
        finally:
            out.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _materialize(case: Case, d: str, base: str):
    for name, data in case.files.items():
        path = os.path.join(d, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if data is None:
            continue
        if isinstance(data, tuple):  # ('copy', path under base)
            shutil.copy(os.path.join(base, data[1]), path)
            continue
        with open(path, 'wb') as f:
            f.write(data if isinstance(data, bytes) else str(data).encode('utf-8'))


def run_case(case: Case, load: Callable, base: str, work: str) -> Result:
    d = os.path.join(work, re.sub(r'[^A-Za-z0-9_.-]+', '_', case.id))
    os.makedirs(d, exist_ok=True)
    _materialize(case, d, base)
    argv = [a.replace('{d}', d).replace('{base}', base) for a in case.argv]
    names = [n.replace('{d}', d).replace('{base}', base) for n in case.names]
    log = os.path.join(d, 'output.txt')
    old_env = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    code, escaped, timed_out = None, None, False
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, case.timeout)
    t0 = time.monotonic()
    try:
        with captured(log):
            try:
                main = load(case.tool).main
                fakes = {k: v() for k, v in FAKES.get(case.tool, {}).items()}
                ret = main(argv, **fakes)
                code = ret if isinstance(ret, int) and not isinstance(ret, bool) else 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except CaseTimeout:
                timed_out = True
            except Exception as e:  # noqa: BLE001 - what the command line would print
                import traceback
                escaped = e
                traceback.print_exc()
                code = 1
    except CaseTimeout:
        timed_out = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.monotonic() - t0
    with open(log, encoding='utf-8', errors='replace') as f:
        output = f.read()
    return Result(case, classify(case, code, output, escaped, timed_out, names), code, seconds,
                  output)


def classify(case, code, output, escaped, timed_out, names) -> str:
    if timed_out:
        return 'hang'
    text = output + ('' if escaped is None else str(escaped))
    named = all(n in text for n in names)
    traceback = escaped is not None or 'Traceback (most recent call last)' in output
    if code == 0:
        return 'skipped (counted)' if case.skip and named else 'accepted'
    if traceback:
        return 'named+traceback' if named else 'bare'
    return 'named' if named else 'vague'


def run_all(root: str, work: str, only: Optional[str] = None, model: bool = True
            ) -> List[Result]:
    load = loader(root)
    base = os.path.join(work, 'base')
    make_base(base, root, load, model)
    results = []
    for case in build_cases(base, root):
        if only and only not in case.id:
            continue
        results.append(run_case(case, load, base, work))
    return results


def table(results: List[Result]) -> str:
    by_tool: Dict[str, Counter] = {}
    for r in results:
        by_tool.setdefault(r.case.tool, Counter())[r.outcome] += 1
    head = '| tool | cases | ' + ' | '.join(OUTCOMES) + ' |'
    rows = [head, '|' + '---|' * (len(OUTCOMES) + 2)]
    total = Counter()
    for tool, c in sorted(by_tool.items()):
        total.update(c)
        rows.append(f'| {tool} | {sum(c.values())} | ' + ' | '.join(
            str(c[o]) for o in OUTCOMES) + ' |')
    rows.append(f'| **all** | {sum(total.values())} | ' + ' | '.join(
        str(total[o]) for o in OUTCOMES) + ' |')
    return '\n'.join(rows)


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', default=os.path.dirname(HERE), help='the checkout whose tools run')
    p.add_argument('--only', help='run the cases whose id contains this')
    p.add_argument('--json', help='write every outcome here')
    p.add_argument('--work', help='folder for the cases (default: a temporary one)')
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix='bad_inputs_')
    t0 = time.monotonic()
    res = run_all(os.path.abspath(args.root), work, args.only)
    for r in res:
        if r.outcome not in ('named', 'skipped (counted)'):
            last = [x for x in r.output.strip().splitlines() if x.strip()][-1:] or ['']
            print(f'{r.outcome:>16}  {r.case.id}  ({r.seconds:.1f} s): {last[0][:150]}')
    print(table(res))
    print(f'{len(res)} cases in {time.monotonic() - t0:.0f} s; slowest: '
          + ', '.join(f'{r.case.id} {r.seconds:.1f} s'
                      for r in sorted(res, key=lambda r: -r.seconds)[:3]))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([{'id': r.case.id, 'outcome': r.outcome, 'code': r.code,
                        'seconds': round(r.seconds, 2), 'output': r.output[-2000:]}
                       for r in res], f, indent=1)
