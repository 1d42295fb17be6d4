"""maskdpo_xtuner.pairs and tools/build_pairs.py: scores, selection, filters, tie-breaks, format."""
import json
import random

import pytest

from maskdpo_xtuner.annotate import SentenceLabel
from maskdpo_xtuner.dataset import read_pairs
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.pairs import build_pairs
from conftest import load_script
from maskdpo_xtuner.pipeline import annotate_chunk


def rec(qid, responses, question='Q?', **extra):
    """An annotated record; each response is a list of (sentence, label), joined by spaces."""
    texts, anns = [], []
    for sents in responses:
        text, items = '', []
        for s, lab in sents:
            text += ' ' if text else ''
            items.append({'start': len(text), 'end': len(text) + len(s), 'text': s,
                          'label': lab, 'reference': ''})
            text += s
        texts.append(text)
        anns.append({'sentences': items})
    return {'id': qid, 'question': question, 'responses': texts, 'annotations': anns, **extra}


def good(tag, n=1):
    return [(f'{tag} fact {i} holds.', 'ok') for i in range(n)]


def bad(tag, n=1, label='contradictory'):
    return [(f'{tag} claim {i} is false.', label) for i in range(n)]


def test_scores_and_selection():
    r = rec('q1', [good('A', 1) + bad('A', 1),                       # 0.5
                   good('B', 1) + [('B has no fact.', 'nofact')],    # 1.0 (nofact is correct)
                   bad('C', 2, 'unverifiable') + good('C', 1)])      # 1/3
    (pair,), s = build_pairs([r])
    assert pair['chosen'][0]['content'] == r['responses'][1]
    assert pair['rejected'][0]['content'] == r['responses'][2]
    assert pair['chosen_score'] == 1.0 and pair['rejected_score'] == pytest.approx(1 / 3)
    assert pair['chosen_item']['type'] == ['ok', 'nofact']
    assert pair['rejected_item']['type'] == ['unverifiable', 'unverifiable', 'ok']
    assert pair['prompt'] == [{'role': 'user', 'content': 'Q?'}]
    assert pair['id'] == 'q1' and set(pair) == {
        'id', 'prompt', 'chosen', 'rejected', 'chosen_item', 'rejected_item', 'chosen_score',
        'rejected_score'}
    for side in ('chosen', 'rejected'):
        text, item = pair[side][0]['content'], pair[f'{side}_item']
        assert [text[a:b] for a, b in item['spans']] == item['sents']
    assert s['pairs'] == 1 and s['mean_chosen_score'] == 1.0
    # the record's own prompt (from tools/sample.py) is used when present
    msgs = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Q?'}]
    (pair,), _ = build_pairs([dict(r, prompt=msgs)])
    assert pair['prompt'] == msgs


def test_each_filter_and_exclusion_is_counted():
    recs = [
        rec('keep', [good('k', 2), good('k2') + bad('k2')]),
        # same text, annotated differently (a stochastic judge)
        rec('identical', [good('i') + bad('i'), good('i') + bad('i')]),
        rec('no_correct', [bad('n1', 2), bad('n2', 1)]),
        rec('no_hallucination', [good('h1', 2), good('h2', 1)]),
        rec('equal', [good('e1') + bad('e1'), good('e2') + bad('e2')]),
        rec('one_left', [good('o', 2), good('o') + [('o x.', 'unparsed')], []]),
    ]
    recs[1]['annotations'][1]['sentences'][0]['label'] = 'contradictory'
    pairs, s = build_pairs(recs)
    assert [p['id'] for p in pairs] == ['keep']
    assert s['dropped'] == {'fewer_than_two_responses': 1, 'identical': 1,
                            'chosen_no_correct': 1, 'rejected_no_hallucination': 1,
                            'equal_scores': 1}
    assert s['responses_excluded'] == {'no_sentences': 1, 'unparsed': 1}
    assert s['questions'] == 6 and s['responses'] == 13
    # equal scores can be kept (the masks still give a sentence-level signal)
    pairs, s = build_pairs(recs, keep_equal_scores=True)
    assert [p['id'] for p in pairs] == ['keep', 'equal'] and s['dropped']['equal_scores'] == 0
    # a copy of the chosen text is not picked as rejected when another worst response exists
    r = rec('dup', [good('d') + bad('d'), good('d') + bad('d'), good('x') + bad('x')])
    for seed in range(10):
        pairs, s = build_pairs([r], seed=seed, keep_equal_scores=True)
        assert len(pairs) == 1 and pairs[0]['chosen'] != pairs[0]['rejected']

def test_unparsed_error_names_question_and_response():
    r = rec('q7', [good('a', 2), good('b') + [('b y.', 'unparsed')]])
    with pytest.raises(ValueError, match=r"question 'q7' response 1 has unparsed"):
        build_pairs([r], unparsed='error')


def test_bad_span_is_an_error():
    r = rec('q', [good('a', 2), good('b') + bad('b')])
    r['annotations'][1]['sentences'][1]['start'] += 1
    with pytest.raises(ValueError, match=r"question 'q' response 1 sentence 1: span"):
        build_pairs([r])


@pytest.mark.parametrize('start, end, field', [(-21, -1, 'start'), (5, 999, 'end'),
                                                (9, 4, 'end'), (0, 30, 'start')])
def test_spans_out_of_range_reversed_or_overlapping_are_errors(start, end, field):
    """In memory too: a span is checked as in files (before, a negative span holding the text
    and overlapping spans gave pairs)."""
    r = rec('q', [good('a', 2), good('b') + bad('b')])
    text = r['responses'][1]
    s = r['annotations'][1]['sentences'][1]
    s.update(start=start, end=end, text=text[start:end])
    with pytest.raises(ValueError, match=rf"question 'q': field 'annotations\[1\]\.sentences"
                                         rf"\[1\]\.{field}'"):
        build_pairs([r])


def tied_records(n=30):
    """Questions with three perfect answers of different lengths and one bad one."""
    return [rec(f'q{i}', [good(f'{i}-a', 1), good(f'{i}-bb', 2), good(f'{i}-ccc', 3),
                          bad(f'{i}-z', 2)]) for i in range(n)]


def shuffled(records, rng):
    out = []
    for r in records:
        order = list(range(len(r['responses'])))
        rng.shuffle(order)
        out.append(dict(r, responses=[r['responses'][j] for j in order],
                        annotations=[r['annotations'][j] for j in order]))
    rng.shuffle(out)
    return out


def chosen_by_id(records, **kw):
    return {p['id']: p['chosen'][0]['content'] for p in build_pairs(records, **kw)[0]}


def test_tie_break_deterministic_and_seeded():
    recs = tied_records()
    base = chosen_by_id(recs, seed=1)
    assert len(base) == 30
    rng = random.Random(0)
    for _ in range(3):  # neither question order nor response order matters
        assert chosen_by_id(shuffled(recs, rng), seed=1) == base
    assert chosen_by_id(recs, seed=2) != base  # another seed picks differently
    assert len(set(base.values())) > 1 and len({v.split()[0] for v in base.values()}) == 30
    picked = {v.split()[0].split('-')[1] for v in base.values()}
    assert picked == {'a', 'bb', 'ccc'}  # all three tied answers get picked somewhere
    longest = chosen_by_id(shuffled(recs, rng), tie_break='longest', seed=3)
    assert all(v == recs[int(k[1:])]['responses'][2] for k, v in longest.items())
    shortest = chosen_by_id(recs, tie_break='shortest')
    assert all(v == recs[int(k[1:])]['responses'][0] for k, v in shortest.items())


class KeywordAnnotator:
    """'WRONG' in a sentence: contradictory; '???': unparsed; otherwise ok."""

    def annotate(self, tasks):
        return [SentenceLabel('contradictory' if 'WRONG' in t.sentence else
                              'unparsed' if '???' in t.sentence else 'ok') for t in tasks]


def test_cli_output_loads_with_read_pairs(tmp_path):
    """Real annotation records (tools/annotate.py's splitter and format) -> pairs -> read_pairs."""
    samples = [
        {'id': 1, 'question': 'Who was Ada?', 'prompt': [{'role': 'user', 'content': 'Who?'}],
         'responses': ['Ada was a mathematician.  She was WRONG here.\n1. Ada wrote notes.',
                       'Ada was born in 1815. Ada lived in London.',
                       'Ada ??? maybe.\n\nShe did it.', '']},
        {'id': 'zh', 'question': '林晓是谁？', 'lang': 'zh',
         'responses': ['林晓是化学家。她出生于杭州。', '林晓是WRONG。她出生于WRONG。']},
        {'id': 3, 'question': 'Q3', 'responses': ['All fine here.', 'Also fine.']},
    ]
    anns = annotate_chunk(KeywordAnnotator(), samples, {})
    write_jsonl(str(tmp_path / 'ann.jsonl'), anns)
    out = str(tmp_path / 'pairs.jsonl')
    summary = load_script('build_pairs').main(['--input', str(tmp_path / 'ann.jsonl'),
                                             '--out', out, '--seed', '5'])
    assert summary['pairs'] == 2 and summary['dropped']['rejected_no_hallucination'] == 1
    assert summary['responses_excluded'] == {'no_sentences': 1, 'unparsed': 1}
    with open(out + '.summary.json') as f:
        assert json.load(f) == summary
    recs = read_jsonl(out)
    assert recs[0]['chosen'][0]['content'] == samples[0]['responses'][1]
    assert recs[0]['rejected_item']['sents'] == ['Ada was a mathematician.',
                                                 'She was WRONG here.', 'Ada wrote notes.']
    assert recs[1]['chosen_score'] == 1.0 and recs[1]['rejected_score'] == 0.0
    pairs, report = read_pairs(out)
    assert report.kept == 2 and not report.dropped and report.loose_matches == 0
    assert pairs[0].rejected_sentences == [(0, 24, False), (26, 45, True), (49, 65, False)]
    assert pairs[0].prompt == [{'role': 'user', 'content': 'Who?'}]
    assert [p.meta['id'] for p in pairs] == [1, 'zh']
