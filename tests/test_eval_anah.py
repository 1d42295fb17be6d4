"""maskdpo_xtuner.metrics, tools/eval_anah.py (scripted model and judge) and tools/report.py."""
import csv
import json
import math
import os

import pytest

from maskdpo_xtuner.annotate import SentenceLabel
from maskdpo_xtuner.io import read_jsonl, write_jsonl
from maskdpo_xtuner.metrics import aggregate, bootstrap_interval, run_metrics
from conftest import load_script


def annotated(*questions):
    """Records in tools/annotate.py's format; each question is a list of responses, each a
    list of labels (the sentence text does not matter to the metrics)."""
    return [{'id': i, 'question': f'Q{i}', 'responses': ['x'] * len(q),
             'annotations': [{'sentences': [{'start': 0, 'end': 1, 'text': 'x', 'label': lab}
                                            for lab in labels]} for labels in q]}
            for i, q in enumerate(questions)]


# ---------------------------------------------------------------------------------- metrics

def test_pooled_score_differs_from_per_response_mean():
    recs = annotated([['ok']], [['ok', 'contradictory', 'contradictory', 'unverifiable']])
    m = run_metrics(recs, n_boot=50)
    assert m['score'] == pytest.approx(2 / 5)                     # pooled: C / (C + I)
    assert m['mean_response_score'] == pytest.approx((1 + 1 / 4) / 2)
    assert (m['n_correct'], m['n_incorrect'], m['n_unparsed'], m['n_sentences']) == (2, 3, 0, 5)
    assert m['sentences_per_response'] == 2.5 and m['correct_per_response'] == 1.0
    assert m['incorrect_per_response'] == 1.5 and m['unparsed_per_response'] == 0
    assert (m['n_questions'], m['n_responses']) == (2, 2)
    assert m['labels']['contradictory'] == 2 and m['labels']['unverifiable'] == 1


def test_unparsed_excluded_or_counted_correct():
    recs = annotated([['ok', 'unparsed', 'contradictory'], ['nofact', 'unparsed']],
                     [['unparsed']])
    ex = run_metrics(recs, n_boot=50)
    assert ex['score'] == pytest.approx(2 / 3)                    # 2 correct, 1 incorrect
    assert ex['mean_response_score'] == pytest.approx((1 / 2 + 1) / 2)
    assert (ex['n_correct'], ex['n_unparsed'], ex['n_responses_unscored']) == (2, 3, 1)
    official = run_metrics(recs, unparsed_as='correct', n_boot=50)
    assert official['score'] == pytest.approx(1 - 1 / 6)          # 1 - incorrect / all
    assert official['mean_response_score'] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert (official['n_correct'], official['n_unparsed']) == (5, 3)
    with pytest.raises(ValueError, match='unparsed_as'):
        run_metrics(recs, unparsed_as='wrong')


def test_bootstrap_interval():
    correct, incorrect = [3, 0, 5, 1, 2, 4, 0, 2], [1, 2, 0, 3, 2, 1, 1, 2]
    point = sum(correct) / (sum(correct) + sum(incorrect))
    lo, hi = bootstrap_interval(correct, incorrect, n_boot=1000, seed=0)
    assert lo < point < hi and 0 <= lo and hi <= 1 and hi - lo > 0.1
    assert bootstrap_interval(correct, incorrect, n_boot=1000, seed=0) == (lo, hi)
    assert bootstrap_interval(correct, incorrect, n_boot=1000, seed=1) != (lo, hi)
    # a wider confidence gives a wider interval; one question gives no spread
    lo99, hi99 = bootstrap_interval(correct, incorrect, n_boot=1000, seed=0, confidence=0.99)
    assert lo99 <= lo and hi <= hi99
    assert bootstrap_interval([3], [1], n_boot=100) == (0.75, 0.75)
    assert bootstrap_interval([], [], n_boot=100) == (None, None)
    # run_metrics resamples questions, not responses or sentences
    m = run_metrics(annotated([['ok'] * 9 + ['contradictory']], [['contradictory']]), seed=0)
    # resamples hold question 0 twice (9/10), once (9/11, the point) or never (0/2)
    assert m['score'] == pytest.approx(9 / 11)
    assert (m['ci_low'], m['ci_high']) == (0.0, pytest.approx(0.9))


def test_aggregate_over_runs():
    runs = [{'score': 0.4, 'n_correct': 10}, {'score': 0.6, 'n_correct': 14},
            {'score': 0.5, 'n_correct': None}]
    agg = aggregate(runs, keys=('score', 'n_correct'))
    assert agg['score']['mean'] == pytest.approx(0.5) and agg['score']['n'] == 3
    assert agg['score']['std'] == pytest.approx(0.1)             # sample std, ddof = 1
    assert agg['n_correct'] == {'mean': 12.0, 'std': pytest.approx(math.sqrt(8)), 'n': 2}
    assert aggregate(runs[:1], keys=('score',))['score'] == {'mean': 0.4, 'std': None, 'n': 1}


# ------------------------------------------------------------------------ tools/eval_anah.py

QUESTIONS = [{'id': 'a', 'question': 'Who is A?', 'document': 'Doc A.'},
             {'id': 'b', 'question': 'Who is B?', 'document': 'Doc B.'},
             {'id': 'c', 'question': 'Who is C?', 'document': 'Doc C.'}]
# (seed, question id) -> answer; 'WRONG' is judged contradictory, '???' unparsed, else ok
ANSWERS = {(0, 'a'): 'A one. A two. A three.', (0, 'b'): 'B one. B WRONG.',
           (0, 'c'): 'C WRONG. C WRONG too.',
           (1, 'a'): 'A one.', (1, 'b'): 'B WRONG. B WRONG again.', (1, 'c'): 'C one. C ???.',
           (None, 'a'): 'A one.', (None, 'b'): 'B one.', (None, 'c'): 'C WRONG.'}


class ScriptedModel:
    def __init__(self):
        self.calls = []

    def generate(self, conversations, params, n=1):
        assert n == 1
        self.calls.append((len(conversations), params))
        ids = {q['question']: q['id'] for q in QUESTIONS}
        seed = None if not params.do_sample else params.seed
        return [[ANSWERS[seed, ids[conv[-1]['content']]]] for conv in conversations]


class ScriptedJudge:
    def __init__(self):
        self.calls = []

    def annotate(self, tasks):
        self.calls.append([t.sentence for t in tasks])
        assert all(t.document.startswith('Doc') for t in tasks)
        return [SentenceLabel('contradictory' if 'WRONG' in t.sentence else
                              'unparsed' if '???' in t.sentence else 'ok') for t in tasks]


def run_eval(tmp_path, out, extra=(), model=None, judge=None):
    qpath = str(tmp_path / 'questions.jsonl')
    write_jsonl(qpath, QUESTIONS)
    model, judge = model or ScriptedModel(), judge or ScriptedJudge()
    res = load_script('eval_anah').main(['--questions', qpath, '--model', 'policy',
                                       '--out-dir', str(out), '--n-boot', '200', *extra],
                                      backend=model, judge=judge)
    return res, model, judge


def test_eval_two_seeds_end_to_end_and_resume(tmp_path):
    out = tmp_path / 'eval'
    res, model, judge = run_eval(tmp_path, out, ['--seeds', '0', '1'])
    assert [r['run'] for r in res['runs']] == ['seed0', 'seed1']
    assert len(model.calls) == 2 and all(p.do_sample and p.top_k == 40 for _, p in model.calls)
    assert [p.seed for _, p in model.calls] == [0, 1]
    assert sum(map(len, judge.calls)) == 7 + 5
    s0, s1 = res['runs']
    assert s0['score'] == pytest.approx(4 / 7)                    # 4 correct, 3 incorrect
    assert s0['mean_response_score'] == pytest.approx((1 + 0.5 + 0) / 3)
    assert (s0['n_correct'], s0['n_incorrect'], s0['n_sentences']) == (4, 3, 7)
    assert s0['sentences_per_response'] == pytest.approx(7 / 3)
    assert s1['score'] == pytest.approx(2 / 4) and s1['n_unparsed'] == 1
    assert s1['sentences_per_response'] == pytest.approx(5 / 3)
    agg = res['aggregate']
    assert agg['score']['mean'] == pytest.approx((4 / 7 + 0.5) / 2)
    assert agg['score']['std'] == pytest.approx(abs(4 / 7 - 0.5) / math.sqrt(2))
    assert agg['n_incorrect']['mean'] == 2.5

    # files: per-run responses and annotations, metrics in three formats
    resp = read_jsonl(str(out / 'seed1' / 'responses.jsonl'))
    assert [r['responses'] for r in resp] == [[ANSWERS[1, q['id']]] for q in QUESTIONS]
    ann = read_jsonl(str(out / 'seed1' / 'annotated.jsonl'))
    assert [s['label'] for s in ann[2]['annotations'][0]['sentences']] == ['ok', 'unparsed']
    with open(out / 'metrics.json') as f:
        assert json.load(f)['aggregate'] == agg
    with open(out / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['run'] for r in rows] == ['seed0', 'seed1', 'mean', 'std']
    assert float(rows[0]['score']) == pytest.approx(4 / 7)
    md = (out / 'metrics.md').read_text()
    assert '| seed0 | 57.14 [' in md and '| mean ± std | 53.57 ± 5.05 |' in md

    # run again: everything is done, no generation or annotation call
    res2, model2, judge2 = run_eval(tmp_path, out, ['--seeds', '0', '1'])
    assert model2.calls == [] and judge2.calls == []
    assert res2['runs'] == res['runs']
    # a half-finished annotation file: only the missing question is annotated again
    lines = (out / 'seed1' / 'annotated.jsonl').read_text().splitlines(True)
    (out / 'seed1' / 'annotated.jsonl').write_text(''.join(lines[:2]) + lines[2][:20])
    res3, model3, judge3 = run_eval(tmp_path, out, ['--seeds', '0', '1'])
    assert model3.calls == [] and judge3.calls == [['C one.', 'C ???.']]
    assert res3['runs'] == res['runs']
    # other settings in the same directory are refused
    with pytest.raises(SystemExit, match='other settings'):
        run_eval(tmp_path, out, ['--seeds', '0', '--temperature', '0.5'])


def test_eval_greedy_default_and_official_unparsed(tmp_path):
    res, model, _ = run_eval(tmp_path, tmp_path / 'g', ['--unparsed-as', 'correct'])
    assert [r['run'] for r in res['runs']] == ['greedy'] and len(model.calls) == 1
    params = model.calls[0][1]
    assert not params.do_sample and params.top_k == 1
    assert res['runs'][0]['score'] == pytest.approx(2 / 3)
    assert res['aggregate']['score']['std'] is None
    assert res['settings']['unparsed_as'] == 'correct'


# --------------------------------------------------------------------------- tools/report.py

def test_report_table_and_plot(tmp_path):
    run_eval(tmp_path, tmp_path / 'base')
    run_eval(tmp_path, tmp_path / 'sampled', ['--seeds', '0', '1'])
    md, png = tmp_path / 'r' / 'report.md', tmp_path / 'report.png'
    text = load_script('report').main(['--runs', 'base=' + str(tmp_path / 'base'),
                                     'sampled=' + str(tmp_path / 'sampled' / 'metrics.json'),
                                     '--out', str(md), '--plot', str(png)])
    assert md.read_text() == text
    lines = [ln for ln in text.splitlines() if ln.startswith('| ')]
    assert lines[0].startswith('| Model | Score % (95% CI or ± std) | Sent./resp.')
    base, sampled = lines[1].split(' | '), lines[2].split(' | ')
    assert base[0] == '| base' and base[1].startswith('66.67 [') and base[-1] == '1 |'
    assert base[2:5] == ['1.00', '0.67', '0.33']                 # sentences, cor., inc. / resp
    assert sampled[1] == '53.57 ± 5.05' and sampled[-1] == '2 |'
    assert sampled[2] == '2.00 ± 0.47'
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(png) > 10_000
    with pytest.raises(SystemExit, match='NAME=PATH'):
        load_script('report').main(['--runs', str(tmp_path / 'base')])


def test_report_links_the_answers_view(tmp_path):
    run_eval(tmp_path, tmp_path / 'base')
    md, view = tmp_path / 'r' / 'report.md', tmp_path / 'r' / 'html' / 'answers.html'
    text = load_script('report').main(['--runs', 'base=' + str(tmp_path / 'base'),
                                       '--out', str(md), '--view', str(view)])
    assert '[html/answers.html](html/answers.html)' in text
    page = view.read_text(encoding='utf-8')
    assert 'C WRONG.' in page and '"contradictory"' in page and '"base"' in page
