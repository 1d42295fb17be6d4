"""maskdpo_xtuner.evaluation.metrics, tools/eval_anah.py (scripted model and judge) and tools/report.py."""
import csv
import json
import math
import os

import pytest

from maskdpo_xtuner.annotate import SentenceLabel
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.evaluation.metrics import (SUMMARY_HEADER, aggregate, bootstrap_interval,
                                               run_metrics, summary_cells)
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
    ex = run_metrics(recs, unparsed_as='excluded', n_boot=50)
    assert ex['score'] == pytest.approx(2 / 3)                    # 2 correct, 1 incorrect
    assert ex['mean_response_score'] == pytest.approx((1 / 2 + 1) / 2)
    assert (ex['n_correct'], ex['n_unparsed'], ex['n_responses_unscored']) == (2, 3, 1)
    official = run_metrics(recs, unparsed_as='correct', n_boot=50)
    assert official['score'] == pytest.approx(1 - 1 / 6)          # 1 - incorrect / all
    assert official['mean_response_score'] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert (official['n_correct'], official['n_unparsed']) == (5, 3)
    with pytest.raises(ValueError, match='unparsed_as'):
        run_metrics(recs, unparsed_as='wrong')


def test_default_score_is_the_papers_and_label_shares_are_reported():
    # issue 16, point 4: 4 ok, 1 nofact, 3 contradictory, 1 unverifiable, 1 unparsed.
    # Official eval.py: 1 - 4/10 = 60.00 (unparsed counted correct); parsed only: 5/9 = 55.56
    recs = annotated([['ok', 'ok', 'nofact', 'contradictory', 'unparsed'],
                      ['ok', 'contradictory']],
                     [['ok', 'contradictory', 'unverifiable']])
    m = run_metrics(recs, n_boot=50)
    assert m['score'] == m['score_official'] == pytest.approx(0.6)
    assert m['score_parsed'] == pytest.approx(5 / 9)
    assert run_metrics(recs, unparsed_as='excluded', n_boot=50)['score'] == pytest.approx(5 / 9)
    shares = {lab: m[f'share_{lab}'] for lab in ('ok', 'nofact', 'contradictory',
                                                 'unverifiable', 'unparsed')}
    assert shares == {'ok': 0.4, 'nofact': 0.1, 'contradictory': 0.3, 'unverifiable': 0.1,
                      'unparsed': 0.1}
    assert m['per_question']['counts'] == [[3, 1, 2, 0, 1, 2], [1, 0, 1, 1, 0, 1]]
    # the paper's score with its interval is the first column of every table, then the
    # parsed-only score, and the label shares (ok, contra., unverif., nofact, unparsed)
    cells = summary_cells([m])
    assert cells[0].startswith('60.00 [') and cells[1] == '55.56'
    assert cells[6:11] == ['40.0', '30.0', '10.0', '10.0', '10.0']
    assert "paper's" in SUMMARY_HEADER[0] and SUMMARY_HEADER[6:11] == (
        'ok %', 'contra. %', 'unverif. %', 'nofact %', 'unparsed %')


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

    def generate(self, conversations, params, n=1, seeds=None):
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
    # the paper's default: the unparsed sentence counts as correct (3 of 5); parsed only: 2 of 4
    assert s1['score'] == pytest.approx(3 / 5) and s1['n_unparsed'] == 1
    assert s1['score_parsed'] == pytest.approx(2 / 4)
    assert s1['sentences_per_response'] == pytest.approx(5 / 3)
    agg = res['aggregate']
    assert agg['score']['mean'] == pytest.approx((4 / 7 + 0.6) / 2)
    assert agg['score']['std'] == pytest.approx(abs(4 / 7 - 0.6) / math.sqrt(2))
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
    # pooled over both seeds: 12 sentences, 5 incorrect -> 7/12; per-run 4/7 and 3/5
    assert '| seed0 | 57.14 [' in md and '| mean ± std | 58.33 [' in md
    assert '| 58.57 ± 2.02 |' in md

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
    with pytest.raises(SystemExit, match='made by another job(.|\n)*settings.temperature'):
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

JUDGE = {'annotator': 'anah', 'judge_model': 'anah-v2', 'templates': 'auto'}


def write_metrics(path, *runs_records, judge=JUDGE, **kw):
    runs = [dict(run_metrics(recs, n_boot=200, judge=judge, **kw), run=f'seed{i}', seed=i)
            for i, recs in enumerate(runs_records)]
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, 'metrics.json'), 'w') as f:
        json.dump({'runs': runs, 'aggregate': aggregate(runs), 'settings': {}}, f)
    return str(path)


# model A and B on the same two questions (A: 2/3 and 1/2 correct, B: 1/3 and 0)
RECS_A = annotated([['ok', 'ok', 'contradictory']], [['ok', 'unverifiable']])
RECS_B = annotated([['ok', 'contradictory', 'contradictory']], [['contradictory',
                                                                  'unverifiable']])


def test_report_paired_difference_with_question_bootstrap(tmp_path):
    # issue 16, point 8. With two questions a resample holds q0 twice (p = 1/4), both (1/2)
    # or q1 twice (1/4), so the 2.5% / 97.5% quantiles are the single-question differences:
    # q0: 2/3 - 1/3 = 1/3, q1: 1/2 - 0 = 1/2; the point is pooled: 3/5 - 1/5 = 2/5
    a, b = write_metrics(tmp_path / 'a', RECS_A), write_metrics(tmp_path / 'b', RECS_B)
    text = load_script('report').main(['--runs', f'B={b}', f'A={a}', '--n-boot', '1000'])
    lines = [ln for ln in text.splitlines() if ln.startswith('| ')]
    assert lines[0].startswith("| Model | ANAH score % [95% CI: percentile bootstrap over "
                               "questions, 1000 resamples] (paper's: 1 − inc./all")
    row_b, row_a = lines[1].split(' | '), lines[2].split(' | ')
    assert row_a[0] == '| A' and row_a[1] == '60.00 [50.00, 66.67]'
    assert row_a[7:12] == ['60.0', '20.0', '20.0', '0.0', '0.0']   # ok/contra/unverif/nofact/unp
    assert row_b[1] == '20.00 [0.00, 33.33]'
    paired = [ln for ln in lines if ln.startswith('| A |') and ln is not lines[2]][0]
    cells = paired.split(' | ')
    assert cells[1] == '+40.00 [33.33, 50.00]'
    assert cells[-2] == '0.000' and cells[-1] == '2 |'             # P(Δ ≤ 0), questions
    assert 'Model − B' in text


def test_report_pools_seeds_and_shows_their_spread_apart(tmp_path):
    # two seeds of A: pooled question by question, the spread of per-run scores in its column
    a = write_metrics(tmp_path / 'a', RECS_A, annotated([['ok', 'ok', 'ok']], [['ok', 'ok']]))
    b = write_metrics(tmp_path / 'b', RECS_B)
    text = load_script('report').main(['--runs', f'A={a}', f'B={b}', '--baseline', 'B'])
    row_a = [ln for ln in text.splitlines() if ln.startswith('| A |')][0].split(' | ')
    assert row_a[1].startswith('80.00 [')                   # 8 of 10 sentences pooled
    assert row_a[3] == '80.00 ± 28.28'                       # per run 60 and 100
    assert row_a[-1] == '2 |'


def test_report_refuses_runs_that_differ(tmp_path):
    a = write_metrics(tmp_path / 'a', RECS_A)
    other_judge = write_metrics(tmp_path / 'j', RECS_B, judge=dict(JUDGE, judge_model='gpt'))
    with pytest.raises(SystemExit, match='judge'):
        load_script('report').main(['--runs', f'A={a}', f'B={other_judge}'])
    other_q = write_metrics(tmp_path / 'q', annotated([['ok']], [['ok']], [['ok']]))
    with pytest.raises(SystemExit, match='questions'):
        load_script('report').main(['--runs', f'A={a}', f'B={other_q}'])
    unknown = write_metrics(tmp_path / 'u', RECS_B, judge=None)
    with pytest.raises(SystemExit, match='judge not recorded'):
        load_script('report').main(['--runs', f'A={a}', f'B={unknown}'])
    text = load_script('report').main(['--runs', f'A={a}', f'B={other_judge}',
                                     '--allow-mismatch'])
    assert 'Not comparable' in text and "judge.judge_model = 'gpt'" in text
    assert "A/seed0" in text and "judge.judge_model = 'anah-v2'" in text  # both values


def _fs(path, scores, gamma=0.0, judge='j'):
    """A factscore.json from (supported, not supported) per topic key, its config in the
    form the pipeline writes (maskdpo_xtuner/pipeline/factscore_eval.py)."""
    from maskdpo_xtuner.evaluation.factscore import aggregate as fs_aggregate
    details = [{'key': k, 'topic': k, 'abstained': False, 'n_facts': s + u, 'n_supported': s,
                'n_not_supported': u, 'n_unparsed': 0, 'sentences': []}
               for k, (s, u) in scores.items()]
    os.makedirs(path, exist_ok=True)
    prompt = {'file': 'p.json', 'sha256': 'sha256:p'}
    with open(os.path.join(path, 'factscore.json'), 'w') as f:
        json.dump({'metrics': fs_aggregate(details, gamma),
                   'config': {'judge': {'backend': 'openai', 'model': judge,
                                        'fingerprint': {'backend': 'openai', 'name': judge}},
                              'knowledge': {'path': 'kb.jsonl', 'sha256': 'sha256:k'},
                              'extract_prompt': prompt, 'verify_prompt': prompt}}, f)
    return str(path)


def test_report_factscore_interval_seeds_and_paired_difference(tmp_path):
    # A, seed 0: t0 1, t1 1/2; seed 1: t0 1/2, t1 0  -> per seed 75 and 25, pooled 2/4
    # B: t0 0, t1 1/4 -> 1/8. Δ = 3/8; resamples t0,t0: 3/4 - 0, t1,t1: 1/4 - 1/4 = 0
    a0 = _fs(tmp_path / 'a0', {'t0': (1, 0), 't1': (1, 1)})
    a1 = _fs(tmp_path / 'a1', {'t0': (1, 1), 't1': (0, 1)})
    b = _fs(tmp_path / 'b', {'t0': (0, 1), 't1': (1, 3)})
    text = load_script('report').main(['--factscore', f'B={b}', f'A={a0},{a1}'])
    lines = [ln for ln in text.splitlines() if ln.startswith('| ')]
    assert "FActScore's: gamma 0" in lines[0]
    # issue 23, point 7: the interval says its level and what is resampled
    assert '[95% CI: percentile bootstrap over topics, 1000 resamples]' in lines[0]
    row_a = lines[2].split(' | ')
    assert row_a[0] == '| A' and row_a[1] == '50.00 [25.00, 75.00]'
    assert row_a[2] == '50.00 ± 35.36' and row_a[-1] == '2 |'
    paired = lines[-1].split(' | ')
    assert paired[0] == '| A' and paired[1] == '+37.50 [0.00, 75.00]'
    assert 0.2 < float(paired[2]) < 0.3                       # P(Δ ≤ 0) = P(t1, t1) = 1/4
    other = _fs(tmp_path / 'o', {'t0': (0, 1), 't1': (1, 3)}, judge='other')
    with pytest.raises(SystemExit, match="judge.model = 'j', but B.*judge.model = 'other'"):
        load_script('report').main(['--factscore', f'B={other}', f'A={a0}'])


def test_report_table_and_plot(tmp_path):
    run_eval(tmp_path, tmp_path / 'base')
    run_eval(tmp_path, tmp_path / 'other')
    md, png = tmp_path / 'r' / 'report.md', tmp_path / 'report.png'
    text = load_script('report').main(['--runs', 'base=' + str(tmp_path / 'base'),
                                     'other=' + str(tmp_path / 'other' / 'metrics.json'),
                                     '--out', str(md), '--plot', str(png)])
    assert md.read_text() == text
    base = [ln for ln in text.splitlines() if ln.startswith('| base |')][0].split(' | ')
    assert base[1].startswith('66.67 [') and base[-1] == '1 |'
    assert base[4:7] == ['1.00', '0.67', '0.33']                 # sentences, cor., inc. / resp
    assert '| other | +0.00 [0.00, 0.00] |' in text           # the same answers
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(png) > 10_000
    with pytest.raises(SystemExit, match='NAME=PATH'):
        load_script('report').main(['--runs', str(tmp_path / 'base')])
    # greedy and sampled runs are not compared
    run_eval(tmp_path, tmp_path / 'sampled', ['--seeds', '0', '1'])
    with pytest.raises(SystemExit, match='decoding'):
        load_script('report').main(['--runs', 'base=' + str(tmp_path / 'base'),
                                  'sampled=' + str(tmp_path / 'sampled')])


def test_example_report_of_the_docs_runs(tmp_path):
    # docs/evaluation.md's example: scripted policies, world oracle, eval_anah and report
    text = load_script('eval_report_example').main(['--out-dir', str(tmp_path), '--n-topics', '8'])
    assert '| concise | +' in text and '## FActScore' in text
    assert (tmp_path / 'report.md').read_text() == text


@pytest.mark.parametrize('n_models', [1, 2])
def test_plot_titles_do_not_overlap(tmp_path, n_models):
    # issue 23, point 7: with one or two models the two panel titles ran into each other
    import matplotlib.pyplot as plt
    from maskdpo_xtuner.evaluation.report import figure
    models = {f'm{i}': json.load(open(write_metrics(tmp_path / f'm{i}', RECS_A) +
                                      '/metrics.json'))['runs'] for i in range(n_models)}
    fig = figure(models, 'A title', 100, 0, 0.95)
    renderer = fig.canvas.get_renderer()
    t1, t2 = (ax.title.get_window_extent(renderer) for ax in fig.axes[:2])
    page = fig.bbox
    assert t1.x1 < t2.x0, (t1, t2)                                  # side by side, apart
    assert page.x0 <= t1.x0 and t2.x1 <= page.x1                    # inside the figure
    assert '95% percentile bootstrap over questions' in fig.axes[0].get_title().replace('\n', ' ')
    plt.close(fig)


class NoFactsJudge:
    """A chat backend that answers every ANAH-v2 fact-check prompt with '<No Facts>'."""

    def generate(self, conversations, params, n=1, seeds=None):
        return [['<No Facts>'] for _ in conversations]


def test_report_refuses_edited_templates_under_the_same_name(tmp_path):
    # issue 23, point 4: the judge's templates are compared by content, not by file name
    from maskdpo_xtuner.annotate.anah import PROMPT_DIR
    tpl = tmp_path / 'templates.json'
    tpl.write_text(open(os.path.join(PROMPT_DIR, 'anah_v2_style_en.json')).read())
    args = ['--annotator', 'anah', '--templates', str(tpl), '--judge-model', 'j']
    run_eval(tmp_path, tmp_path / 'a', args, judge=NoFactsJudge())
    tpl.write_text(tpl.read_text().replace('meticulous', 'careless'))
    run_eval(tmp_path, tmp_path / 'b', args, judge=NoFactsJudge())
    with pytest.raises(SystemExit, match=r"judge\.templates_sha256 = 'sha256:.*', but "):
        load_script('report').main(['--runs', f'A={tmp_path / "a"}', f'B={tmp_path / "b"}'])
    run_eval(tmp_path, tmp_path / 'c', args, judge=NoFactsJudge())  # same content: comparable
    load_script('report').main(['--runs', f'B={tmp_path / "b"}', f'C={tmp_path / "c"}'])
