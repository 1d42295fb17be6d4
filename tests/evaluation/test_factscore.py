"""FActScore-style evaluation: knowledge, retrieval, parsing, scoring, batching and the CLI."""
import json
import math
import os
import re
import sqlite3

import pytest

from maskdpo_xtuner.evaluation.factscore import (FactScorer, aggregate, is_abstention,
                                                 length_penalty, parse_facts, parse_verdict)
from maskdpo_xtuner.evaluation.retrieval import (SQLITE_SEPARATOR, KnowledgeSource, _tokenize,
                                                 retrieval_query, split_passages)
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from conftest import load_script


eval_factscore = load_script('eval_factscore')

LINA = ['Lina Moreau is a French sculptor born in Lyon in 1961. '
        'She studied at the Beaux-Arts school in Paris.',
        'In 1990 Moreau moved to Montreal, where she taught ceramics for twenty years. '
        'Her students founded the Argile collective.',
        'Moreau received the Prix Rodin in 2004 for her bronze series Tides. '
        'The series is shown in the Lyon museum.']
TOMAS = ['Tomas Berg is a Swedish chess player born in Uppsala in 1975.',
         'He became a grandmaster in 1998. Berg won the Nordic championship three times.']
WORDS = 12  # passage size in the tests: about one sentence per passage

RESPONSES = {
    'Lina Moreau': 'Lina Moreau is a French sculptor born in Lyon. She received the Prix Rodin '
                   'in 2004. She won an Olympic medal in rowing.',
    'Tomas Berg': 'Tomas Berg is a Swedish chess player. He became a grandmaster in 1998. '
                  'He won the Nordic championship five times.',
}
EXTRACT = {  # sentence -> the judge's extraction answer (default: "- <sentence>")
    'Lina Moreau is a French sculptor born in Lyon.':
        'Here are the facts:\n- Lina Moreau is a French sculptor\n'
        '- Lina Moreau is a French sculptor born in Lyon',
    'She received the Prix Rodin in 2004.': '1. Moreau received the Prix Rodin in 2004.',
    'She won an Olympic medal in rowing.':
        '- Lina Moreau won an Olympic medal in rowing.\n- Lina Moreau rowed competitively.',
    'Here is a short bio.': 'None',
}
VERIFY = {'Lina Moreau rowed competitively.': 'I am not sure.'}  # -> unparsed
# Lina: 3 supported, 1 not, 1 unparsed -> 3/4; Tomas: 2 supported, 1 not -> 2/3
EXPECTED = 100 * (3 / 4 + 2 / 3) / 2
# with FActScore's default length penalty (gamma 10; n = all facts: Lina 5, Tomas 3)
EXPECTED_G10 = 100 * (3 / 4 * math.exp(1 - 10 / 5) + 2 / 3 * math.exp(1 - 10 / 3)) / 2


class FakeJudge:
    """Extracts facts from a script (default: the sentence itself) and answers True when the
    fact, without its final period, is in one of the shown passages; counts generate calls."""

    def __init__(self):
        self.calls = []  # (stage, number of conversations, params)

    def generate(self, conversations, params, n=1, seeds=None):
        assert n == 1
        outs, stages = [], set()
        for conv in conversations:
            user = conv[-1]['content']
            if 'True or False?' in user:
                stages.add('verify')
                fact = re.search(r'Input: (.*) True or False\?', user).group(1)
                shown = ' '.join(re.findall(r'Text: (.*)', user)).lower()
                outs.append(VERIFY.get(fact, 'True' if fact.lower().rstrip('.') in shown
                                       else 'False'))
            else:
                stages.add('extract')
                sentence = user.split('Sentence: ')[-1]
                outs.append(EXTRACT.get(sentence, '- ' + sentence))
        assert len(stages) == 1, 'one generate call mixed both stages'
        self.calls.append((stages.pop(), len(conversations), params))
        return [[o] for o in outs]


class FakeModel:
    def __init__(self):
        self.calls = []

    def generate(self, conversations, params, n=1, seeds=None):
        self.calls.append((conversations, params))
        return [[RESPONSES[re.match(r'Tell me a bio of (.*)\.$', c[-1]['content']).group(1)]]
                for c in conversations]


@pytest.fixture
def knowledge_files(tmp_path):
    """The same knowledge as JSONL (an article with a list of paragraphs, and passages with a
    repeated title) and as a FActScore-layout SQLite file."""
    jsonl = str(tmp_path / 'kb.jsonl')
    write_jsonl(jsonl, [{'title': 'Lina Moreau', 'text': LINA}] +
                [{'title': 'Tomas Berg', 'text': t} for t in TOMAS])
    db = str(tmp_path / 'kb.db')
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE documents (title PRIMARY KEY, text);')
    for title, paras in (('Lina Moreau', LINA), ('Tomas Berg', TOMAS)):
        con.execute('INSERT INTO documents VALUES (?, ?)',
                    (title, SQLITE_SEPARATOR.join(f'<s>{p}</s>' for p in paras)))
    con.commit()
    con.close()
    return {'jsonl': jsonl, 'db': db}


# ------------------------------------------------------------------------ knowledge

def test_split_passages_packs_sentences_and_cuts_only_long_ones():
    assert split_passages(['One two three. Four five.', 'Six seven.'], 5) == \
        ['One two three. Four five.', 'Six seven.']  # units are never merged
    assert split_passages('One two three. Four five six.', 4) == ['One two three.',
                                                                  'Four five six.']
    assert split_passages('a b c d e f g h i j. Kl m. N o', 4) == \
        ['a b c d', 'e f g h', 'i j. Kl m.', 'N o']


@pytest.mark.parametrize('fmt', ['jsonl', 'db'])
def test_knowledge_formats_and_bm25_retrieval(knowledge_files, fmt):
    ks = KnowledgeSource(knowledge_files[fmt], passage_words=WORDS)
    passages = ks.passages('Lina Moreau')
    assert len(passages) == 6 and passages[0].startswith('Lina Moreau is a French sculptor')
    assert all('<s>' not in p and '</s>' not in p for p in passages)
    assert ks.passages('Tomas Berg') == ['Tomas Berg is a Swedish chess player born in Uppsala '
                                         'in 1975.', 'He became a grandmaster in 1998.',
                                         'Berg won the Nordic championship three times.']
    for fact, want in [('She taught ceramics in Montreal.', 'Montreal'),
                       ('Moreau received the Prix Rodin in 2004.', 'Prix Rodin'),
                       ('Her students founded a collective.', 'Argile')]:
        (best, score), *_ = ks.retrieve('Lina Moreau', 'Lina Moreau ' + fact, k=5)
        assert want in passages[best] and score > 0
    assert len(ks.retrieve('Tomas Berg', 'Tomas Berg chess', k=5)) == 3  # k > passages
    assert 'Nobody Known' not in ks and 'Lina Moreau' in ks
    with pytest.raises(KeyError):
        ks.retrieve('Nobody Known', 'x')


ADA = ['Ada Brook is a painter.', 'Ada Brook grew up on a farm.',
       'In 1990 she won the Hale Prize for a large mural in Bergen.', 'The farm had goats.',
       'Her brother became a teacher.', 'Critics praised the colours.']


def test_retrieval_query_does_not_repeat_the_topic(tmp_path):
    # issue 16, point 6: with "topic + fact" the name counts twice and the evidence (passage 2)
    # ranks third, behind the two passages that only mention the name
    kb = str(tmp_path / 'ada.jsonl')
    write_jsonl(kb, [{'title': 'Ada Brook', 'text': ADA}])
    ks = KnowledgeSource(kb, 256)
    fact = 'Ada Brook won the Hale Prize.'
    assert [i for i, _ in ks.retrieve('Ada Brook', 'Ada Brook ' + fact, k=3)] == [0, 1, 2]

    class Judge:
        def generate(self, convs, params, n=1, seeds=None):
            return [['- ' + fact] if 'True or False?' not in c[-1]['content'] else ['True']
                    for c in convs]
    rec, = FactScorer(Judge(), ks).score([{'topic': 'Ada Brook', 'response': fact}])
    assert rec['facts'][0]['passages'][0] == 2
    assert retrieval_query('Ada Brook', 'She won a prize.') == 'Ada Brook She won a prize.'
    assert retrieval_query('Ada Brook', 'Brook won.') == 'Ada Brook won.'


def test_tokenizer_keeps_one_character_tokens():
    # digits and initials matter to facts; bm25s's default pattern drops them
    assert _tokenize(['J. K. Rowling was born in 5 BC, a year.']) == [
        ['j', 'k', 'rowling', 'born', '5', 'bc', 'year']]


def test_jsonl_knowledge_keeps_only_requested_topics(knowledge_files):
    ks = KnowledgeSource(knowledge_files['jsonl'], WORDS, topics={'Tomas Berg'})
    assert 'Tomas Berg' in ks and 'Lina Moreau' not in ks


# ------------------------------------------------------------------------ parsing

def test_parse_facts():
    answer = ('Here are the atomic facts:\n- Fact one.\n* Fact two.\n2. Fact three.\n'
              '(4) Fact four.\n- Fact one.\nNote: junk line\n\n-\n• Fact five.')
    assert parse_facts(answer) == (['Fact one.', 'Fact two.', 'Fact three.', 'Fact four.',
                                    'Fact five.'], 'ok')
    assert parse_facts('None') == ([], 'none')
    assert parse_facts('None.') == ([], 'none')
    assert parse_facts('- None') == ([], 'none')
    assert parse_facts('') == ([], 'none')
    assert parse_facts('Sure!') == ([], 'unparsed')


def test_parse_facts_unmarked_lines_bold_and_none_as_a_whole_word():
    # issue 16, point 7: lines without a marker are facts (they were lost as "unparsed")
    assert parse_facts('Lina Moreau was born in Lyon.\nShe is a sculptor.') == (
        ['Lina Moreau was born in Lyon.', 'She is a sculptor.'], 'ok')
    assert parse_facts('Here are the facts:\nLina Moreau was born in Lyon.\nIs that all?') == (
        ['Lina Moreau was born in Lyon.'], 'ok')
    # "Nonetheless" is not "None"
    assert parse_facts('Nonetheless - she won the prize.') == (
        ['Nonetheless - she won the prize.'], 'ok')
    assert parse_facts('None of it is a fact.') == ([], 'none')
    assert parse_facts('No facts.') == ([], 'none')
    # markdown bold does not leak into the facts
    assert parse_facts('- **Born** in 1900.\n- Died in **Paris**.\n- __Won__ a prize.') == (
        ['Born in 1900.', 'Died in Paris.', 'Won a prize.'], 'ok')


@pytest.mark.parametrize('answer,label', [
    ('True', 'supported'), ('False.', 'not_supported'), ('**True**', 'supported'),
    ('Output: False', 'not_supported'), ('false', 'not_supported'),
    ('The statement is true.', 'supported'), ('It is not true.', 'not_supported'),
    ('I am not sure.', 'unparsed'), ('Maybe', 'unparsed'), ('', 'unparsed'),
    ('The answer is True, not False.', 'unparsed'),
    # issue 16, point 2: a negation anywhere in the keyword's clause, or a hedge
    ('The passages do not say it is true.', 'not_supported'),
    ('There is no evidence that this is true.', 'not_supported'),
    ("The fact is not mentioned, so I can't say it's true.", 'not_supported'),
    ('Partially true', 'not_supported'), ('It is probably true.', 'not_supported'),
    ("It isn't false.", 'unparsed'), ('Not true, but not false either.', 'unparsed'),
    ('It is not mentioned, but the passage says it is true.', 'supported'),
    ('True. Nothing contradicts it.', 'supported')])
def test_parse_verdict(answer, label):
    assert parse_verdict(answer, {'supported': ['True'], 'not_supported': ['False']}) == label


@pytest.mark.parametrize('response,abstains', [
    ("I'm not familiar with Lina Moreau.", True),
    ('I’m sorry, but I don’t have any information about Tomas Berg.', True),
    ("I couldn't find any information on Tomas Berg. He may be a private person.", True),
    ('I do not know who that is.', True),
    ("I'm unable to find reliable sources about her.", True),
    ('I’m unable to provide a biography of a private individual.', True),
    ('There is no public information about Lina Moreau.', True),
    ('', True),
    ("Lina Moreau is a sculptor. I don't know much else about her.", False),
    ('Tomas Berg is a Swedish chess player.', False),
    # issue 16, point 1: hedges followed by facts are answers, not abstentions
    ("I don't know much about his early life, but John Smith was a British actor born in "
     "1950.", False),
    ('There is no public information about her childhood, but she was born in 1960.', False),
    ("I'm not sure who you mean, but ... Luis Suarez was born in 1987.", False),
    ("I don't know the details of his youth. He was born in 1950.", False),
    ("I'm sorry, I don't know who that is; however, Smith is a common name.", False)])
def test_abstention(response, abstains):
    assert is_abstention(response) is abstains


def test_prompts_render_demos_and_passages():
    from maskdpo_xtuner.evaluation.factscore import (EXTRACT_PROMPT, VERIFY_PROMPT,
                                                     extraction_conversation, load_prompt,
                                                     verification_conversation)
    ep = load_prompt(EXTRACT_PROMPT)
    conv = extraction_conversation(ep, 'Lina Moreau', 'She was born in {topic}.')
    assert conv[0]['role'] == 'system' and len(conv) == 2 + 2 * len(ep['demos'])
    answers = [m['content'] for m in conv if m['role'] == 'assistant']
    assert 'None' in answers and all(a == 'None' or a.startswith('- ') for a in answers)
    assert conv[-1]['content'].endswith('Sentence: She was born in {topic}.')  # not re-filled
    assert 'about Lina Moreau' in conv[-1]['content']
    conv = verification_conversation(load_prompt(VERIFY_PROMPT), 'Lina Moreau',
                                     'Lina Moreau lives in Lyon.', ['best {fact}', 'second'])
    user = conv[-1]['content']
    assert user.endswith('Input: Lina Moreau lives in Lyon. True or False?\nOutput:')
    assert user.index('Text: second') < user.index('Text: best {fact}')  # best nearest


# ------------------------------------------------------------------------ scoring

def _detail(sup, uns, unp=0, abstained=False):
    n = sup + uns + unp
    return {'abstained': abstained, 'responding': n > 0, 'n_facts': n, 'n_supported': sup,
            'n_not_supported': uns, 'n_unparsed': unp,
            'sentences': [{'extraction': 'unparsed'}] if unp else []}


def test_aggregate_is_a_per_response_mean_and_length_penalty():
    details = [_detail(1, 0), _detail(1, 3), _detail(0, 0, abstained=True),
               _detail(0, 0, unp=2), _detail(0, 0)]
    m = aggregate(details, gamma=0)
    assert m['factscore'] == pytest.approx(100 * (1 + 1 / 4) / 2)  # 62.5
    cor, inc = m['correct_per_response'], m['incorrect_per_response']
    assert (cor, inc) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert 100 * cor / (cor + inc) == pytest.approx(40.0)  # ratio of mean counts differs
    assert m['facts_per_response'] == pytest.approx(7 / 3)
    assert m['response_ratio'] == pytest.approx(3 / 5)
    assert (m['n_responses'], m['n_responding'], m['n_scored']) == (5, 3, 2)
    assert (m['n_abstained'], m['n_no_facts'], m['unparsed_facts']) == (1, 1, 2)
    assert m['unparsed_extractions'] == 1

    assert length_penalty(4, 10) == pytest.approx(math.exp(-1.5))
    assert length_penalty(1, 10) == pytest.approx(math.exp(-9))
    assert length_penalty(10, 10) == length_penalty(12, 10) == length_penalty(3, 0) == 1.0
    m10 = aggregate(details, gamma=10)
    assert m10['factscore'] == pytest.approx(100 * (math.exp(-9) + 0.25 * math.exp(-1.5)) / 2)
    assert m10['factscore_no_penalty'] == pytest.approx(62.5)
    assert aggregate([])['factscore'] is None


def test_length_penalty_defaults_to_factscore_gamma_and_counts_all_facts():
    # issue 16, point 3: gamma = 10 by default; n = all facts, unparsed verdicts included
    details = [_detail(1, 3, unp=6), _detail(2, 0)]
    m = aggregate(details)
    assert m['gamma'] == 10
    # n = 10 facts: no penalty (FActScore: 1 when n >= gamma); n = 2: exp(1 - 10 / 2)
    assert m['factscore'] == pytest.approx(100 * (1 / 4 + math.exp(-4)) / 2)
    assert m['factscore_no_penalty'] == pytest.approx(100 * (1 / 4 + 1) / 2)
    assert [r['score'] for r in m['per_response']] == [pytest.approx(0.25),
                                                       pytest.approx(math.exp(-4))]


def test_abstentions_are_scored_by_default_and_reported_both_ways():
    # FActScore's default detects no abstention: a flagged response is scored like any other
    details = [_detail(1, 1, abstained=True), _detail(3, 1)]
    m = aggregate(details, gamma=0)
    assert m['factscore'] == pytest.approx(100 * (1 / 2 + 3 / 4) / 2)
    assert m['factscore_abstention_detected'] == pytest.approx(75.0)
    assert m['response_ratio'] == 1.0 and m['response_ratio_abstention_detected'] == 0.5
    assert m['n_abstained'] == 1


def test_judge_errors_are_not_no_fact_responses():
    # issue 16, point 7: a response whose every extraction answer is unparsed is a judge error:
    # left out of the response ratio instead of counting as a response without facts
    error = dict(_detail(0, 0), sentences=[{'extraction': 'unparsed'}] * 2)
    nofact = dict(_detail(0, 0), sentences=[{'extraction': 'none'}])
    m = aggregate([_detail(2, 0), error, nofact], gamma=0)
    assert m['n_judge_errors'] == 1 and m['n_no_facts'] == 1
    assert m['response_ratio'] == pytest.approx(1 / 2)             # 1 responding of 2 valid
    assert m['unparsed_extractions'] == 2


def _items():
    return [{'key': 'a', 'topic': 'Lina Moreau', 'response': RESPONSES['Lina Moreau']},
            {'key': 'b', 'topic': 'Tomas Berg', 'response': RESPONSES['Tomas Berg']},
            {'key': 'c', 'topic': 'Tomas Berg', 'response': "I'm not familiar with him."},
            {'key': 'd', 'topic': 'Lina Moreau', 'response': 'Here is a short bio.'}]


def test_scorer_one_call_per_stage_and_details(knowledge_files):
    judge = FakeJudge()
    recs = FactScorer(judge, KnowledgeSource(knowledge_files['jsonl'], WORDS)).score(_items())
    # 3 + 3 + 1 + 1 sentences (the abstention is judged too); 5 + 3 + 1 facts
    assert [(s, n) for s, n, _ in judge.calls] == [('extract', 8), ('verify', 9)]
    assert all(not p.do_sample and p.top_k == 1 for _, _, p in judge.calls)
    lina, tomas, abst, nofact = recs
    assert [f['label'] for f in lina['facts']] == ['supported', 'supported', 'supported',
                                                   'not_supported', 'unparsed']
    assert (lina['n_supported'], lina['n_not_supported'], lina['n_unparsed']) == (3, 1, 1)
    assert lina['score'] == pytest.approx(3 / 4) and tomas['score'] == pytest.approx(2 / 3)
    assert abst['abstained'] and abst['responding'] and abst['n_not_supported'] == 1
    assert not nofact['abstained'] and not nofact['responding'] and not nofact['judge_error']
    assert nofact['sentences'][0]['extraction'] == 'none'
    prix = lina['facts'][2]
    assert len(prix['passages']) == 5 and 'Prix Rodin' in lina['passages'][str(
        prix['passages'][0])]
    m = aggregate(recs, gamma=0)
    assert m['factscore'] == pytest.approx(100 * (3 / 4 + 2 / 3 + 0) / 3)
    assert m['factscore_abstention_detected'] == pytest.approx(EXPECTED)


def test_scorer_batch_size_splits_calls(knowledge_files):
    judge = FakeJudge()
    FactScorer(judge, KnowledgeSource(knowledge_files['jsonl'], WORDS),
               batch_size=3).score(_items())
    assert [(s, n) for s, n, _ in judge.calls] == [('extract', 3), ('extract', 3),
                                                   ('extract', 2), ('verify', 3),
                                                   ('verify', 3), ('verify', 3)]


# ------------------------------------------------------------------------ CLI

def _run(tmp_path, knowledge, extra, model=None, judge=None, name='out'):
    out = str(tmp_path / name)
    metrics = eval_factscore.main(['--knowledge', knowledge, '--out-dir', out,
                                   '--passage-words', str(WORDS)] + extra,
                                  backend=model, judge=judge)
    return out, metrics


@pytest.mark.parametrize('fmt', ['jsonl', 'db'])
def test_cli_entities_end_to_end_and_resume(tmp_path, knowledge_files, fmt):
    ents = tmp_path / 'entities.txt'
    ents.write_text('Lina Moreau\n\nTomas Berg\n')
    model, judge = FakeModel(), FakeJudge()
    out, m = _run(tmp_path, knowledge_files[fmt], ['--entities', str(ents), '--model', 'fake'],
                  model, judge)
    (convs, params), = model.calls
    assert convs == [[{'role': 'user', 'content': 'Tell me a bio of Lina Moreau.'}],
                     [{'role': 'user', 'content': 'Tell me a bio of Tomas Berg.'}]]
    assert not params.do_sample and params.top_k == 1
    assert [(s, n) for s, n, _ in judge.calls] == [('extract', 6), ('verify', 8)]
    assert m['factscore'] == pytest.approx(EXPECTED_G10) and m['n_no_knowledge'] == 0
    assert m['factscore_no_penalty'] == pytest.approx(EXPECTED) and m['gamma'] == 10
    saved = json.load(open(os.path.join(out, 'factscore.json')))
    assert saved['metrics']['factscore'] == pytest.approx(EXPECTED_G10)
    assert saved['config']['decoding'] == 'greedy'
    assert 'FActScore' in open(os.path.join(out, 'factscore.md')).read()
    details = read_jsonl(os.path.join(out, 'factscore_details.jsonl'))
    assert [d['topic'] for d in details] == ['Lina Moreau', 'Tomas Berg']
    assert all(f['passages'] and f['answer'] for d in details for f in d['facts'])

    model2, judge2 = FakeModel(), FakeJudge()  # re-run: everything is already done
    _, m2 = _run(tmp_path, knowledge_files[fmt], ['--entities', str(ents), '--model', 'fake'],
                 model2, judge2)
    assert model2.calls == [] and judge2.calls == [] and m2 == m


def test_cli_sampler_format_partial_resume_and_gamma(tmp_path, knowledge_files):
    gens = str(tmp_path / 'gens.jsonl')
    write_jsonl(gens, [{'id': 1, 'topic': 'Lina Moreau',
                        'responses': [RESPONSES['Lina Moreau'], 'ignored']},
                       {'id': 2, 'topic': 'Tomas Berg', 'response': RESPONSES['Tomas Berg']}])
    out, m = _run(tmp_path, knowledge_files['db'], ['--generations', gens, '--chunk', '1',
                                                    '--gamma', '0'], judge=FakeJudge())
    assert m['factscore'] == pytest.approx(EXPECTED)
    path = os.path.join(out, 'factscore_details.jsonl')
    lines = open(path).read().splitlines()
    with open(path, 'w') as f:  # the run was killed while writing the second record
        f.write(lines[0] + '\n' + lines[1][:40])
    judge = FakeJudge()
    _, m2 = _run(tmp_path, knowledge_files['db'], ['--generations', gens, '--gamma', '10'],
                 judge=judge)
    assert [(s, n) for s, n, _ in judge.calls] == [('extract', 3), ('verify', 3)]  # Tomas only
    assert [d['key'] for d in read_jsonl(path)] == ['1', '2']
    assert m2['factscore_no_penalty'] == pytest.approx(EXPECTED)
    assert m2['factscore'] == pytest.approx(EXPECTED_G10)


def test_cli_missing_topic_fails_early_or_is_skipped(tmp_path, knowledge_files):
    ents = tmp_path / 'entities.jsonl'
    write_jsonl(str(ents), [{'topic': 'Lina Moreau'}, {'topic': 'Nobody Known'}])
    model, judge = FakeModel(), FakeJudge()
    with pytest.raises(SystemExit, match='Nobody Known'):
        _run(tmp_path, knowledge_files['jsonl'], ['--entities', str(ents), '--model', 'f'],
             model, judge)
    assert model.calls == [] and judge.calls == []
    _, m = _run(tmp_path, knowledge_files['jsonl'],
                ['--entities', str(ents), '--model', 'f', '--skip-missing-topics'], model,
                judge)
    assert m['n_no_knowledge'] == 1 and m['n_responses'] == 1
    assert m['factscore_no_penalty'] == pytest.approx(75.0)


def test_gamma_has_one_default():
    # issue 23, point 6: the API said 0.0 while the docs and the CLI say FActScore's 10
    from maskdpo_xtuner.evaluation.factscore import DEFAULT_GAMMA
    from maskdpo_xtuner.pipeline.factscore_eval import FactScoreSettings
    cli = eval_factscore.parse_args(['--knowledge', 'k', '--out-dir', 'o', '--entities', 'e',
                                     '--judge-model', 'j'])
    assert FactScoreSettings(knowledge='k', out_dir='o').gamma == cli.gamma == DEFAULT_GAMMA == 10


def test_report_refuses_runs_by_another_judge_knowledge_or_prompt(tmp_path, knowledge_files):
    # issue 23, point 4: report.py compared judge_backend/judge_model, which the pipeline never
    # wrote, the knowledge source by path and the prompts by file name
    from maskdpo_xtuner.evaluation.factscore import VERIFY_PROMPT
    report = load_script('report').main
    gens = str(tmp_path / 'gens.jsonl')
    write_jsonl(gens, [{'id': 1, 'topic': 'Lina Moreau', 'response': RESPONSES['Lina Moreau']}])
    verify = tmp_path / 'verify.json'
    verify.write_text(open(VERIFY_PROMPT).read())
    kb = knowledge_files['jsonl']
    common = ['--generations', gens, '--verify-prompt', str(verify)]
    a, _ = _run(tmp_path, kb, common + ['--judge-model', 'judge-a'], judge=FakeJudge(), name='a')
    saved = json.load(open(os.path.join(a, 'factscore.json')))['config']
    assert saved['judge']['model'] == 'judge-a' and saved['judge']['decoding']['verify']
    assert saved['knowledge']['sha256'].startswith('sha256:')
    b, _ = _run(tmp_path, kb, common + ['--judge-model', 'judge-b'], judge=FakeJudge(), name='b')
    with pytest.raises(SystemExit, match="judge.model = 'judge-b', but A .*'judge-a'"):
        report(['--factscore', f'A={a}', f'B={b}'])
    verify.write_text(verify.read_text().replace('True or False?', 'True or False? '))
    c, _ = _run(tmp_path, kb, common + ['--judge-model', 'judge-a'], judge=FakeJudge(), name='c')
    with pytest.raises(SystemExit, match='verify_prompt = '):
        report(['--factscore', f'A={a}', f'C={c}'])
    verify.write_text(open(VERIFY_PROMPT).read())
    with open(kb, 'a') as f:  # the same knowledge file, other content
        f.write(json.dumps({'title': 'Lina Moreau', 'text': ['She also sang.']}) + '\n')
    d, _ = _run(tmp_path, kb, common + ['--judge-model', 'judge-a'], judge=FakeJudge(), name='d')
    with pytest.raises(SystemExit, match='knowledge = '):
        report(['--factscore', f'A={a}', f'D={d}'])
    text = report(['--factscore', f'A={a}', f'D={d}', '--allow-mismatch'])
    assert 'knowledge' in text.split('Not comparable')[1]
