"""ANAH-v2 protocol annotator, scores and tools/annotate.py, against a scripted fake backend."""
import copy
import json
import re

import pytest

from maskdpo_xtuner.annotate import (AnahV2Annotator, SentenceTask, is_hallucinated_label,
                                     load_annotator, load_templates, pooled_score, response_score,
                                     response_stats)
from maskdpo_xtuner.annotate.anah import match_answer
from maskdpo_xtuner.generation.base import SamplingParams
from maskdpo_xtuner.io.jsonl import read_jsonl
from conftest import load_script

EN = {'facts': '<Facts Present>', 'nofact': '<No Facts>', 'noref': '<No Reference Information>',
      'ok': '<No Hallucination>', 'contra': '<Contradictory>', 'unver': '<Unverifiable>'}
ZH = {'facts': '<有事实>', 'nofact': '<无事实>', 'noref': '<无参考信息>', 'ok': '<无幻觉>',
      'contra': '<矛盾>', 'unver': '<无法验证>'}


class FakeBackend:
    """Answers by pattern-matching the prompt: the first rule whose key occurs in the sentence
    under review (read from the first user turn) gives the answer of the current step (the
    number of user turns so far). Records every call and its conversations."""

    def __init__(self, rules, default=None, fail_on_call=None):
        self.rules, self.default = rules, default
        self.calls, self.fail_on_call = [], fail_on_call

    def generate(self, conversations, params, n=1, seeds=None):
        self.calls.append(copy.deepcopy(conversations))
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt('simulated kill')
        assert n == 1 and not params.do_sample
        out = []
        for conv in conversations:
            users = [m['content'] for m in conv if m['role'] == 'user']
            m = re.search(r'(?:Sentence under review|待审查的句子)[:：]\n(.*?)\n\n', users[0], re.S)
            sentence = m.group(1) if m else users[0]  # custom templates: the whole prompt
            answers = next((a for key, a in self.rules.items() if key in sentence), self.default)
            assert answers is not None, f'no rule for {sentence!r}'
            out.append([answers[len(users) - 1]])
        return out


def task(sentence, lang='en', **kw):
    return SentenceTask(question=kw.get('question', 'Who was Ada Lovelace?'), sentence=sentence,
                        response=kw.get('response', 'RESPONSE-TEXT'),
                        document=kw.get('document', 'DOC-TEXT'), lang=lang)


def outcome_script(k):
    """Sentence key -> answers of steps 1-3 for each final label, in keyword set ``k``."""
    return {'S-nofact': (k['nofact'],), 'S-noref': (k['facts'], k['noref']),
            'S-ok': (k['facts'], 'point A <SEP> point B', k['ok']),
            'S-contra': (k['facts'], 'point C', k['contra']),
            'S-unver': (k['facts'], 'point D', k['unver'])}


EXPECTED = {'S-nofact': ('nofact', ''), 'S-noref': ('unverifiable', ''),
            'S-ok': ('ok', 'point A <SEP> point B'), 'S-contra': ('contradictory', 'point C'),
            'S-unver': ('unverifiable', 'point D')}


@pytest.mark.parametrize('lang,keys,marker', [('en', EN, 'Sentence under review'),
                                               ('zh', ZH, '待审查的句子')])
def test_each_step_outcome(lang, keys, marker):
    backend = FakeBackend(outcome_script(keys))
    sentences = list(EXPECTED)
    labels = AnahV2Annotator(backend).annotate([task(s, lang) for s in sentences])
    assert [(lab.label, lab.reference) for lab in labels] == [EXPECTED[s] for s in sentences]
    # the task's language picked the template set: the prompts are in that language
    assert all(marker in conv[1]['content'] for conv in backend.calls[0])
    assert all(conv[0]['role'] == 'system' for conv in backend.calls[0])
    # the raw answers of every step that ran are kept
    steps = ('fact_check', 'reference', 'judge')
    assert {k: v for k, v in labels[2].trace.items() if k in steps} == dict(zip(
        steps, outcome_script(keys)['S-ok']))
    assert [k for k in labels[0].trace if k in steps] == ['fact_check']
    assert labels[2].trace['parsing'] == 'official'
    assert labels[2].trace['other_parsing'] == {'parsing': 'tolerant', 'label': 'ok'}


def test_per_sentence_language_in_one_batch():
    backend = FakeBackend({'S-en': (EN['nofact'],), 'S-zh': (ZH['nofact'],)})
    labels = AnahV2Annotator(backend).annotate([task('S-en', 'en'), task('S-zh', 'zh')])
    assert [lab.label for lab in labels] == ['nofact', 'nofact']
    (en, zh), = backend.calls
    assert 'Sentence under review' in en[1]['content'] and '待审查的句子' in zh[1]['content']


@pytest.mark.parametrize('answers,step', [
    (('I think so',), 'fact_check'),
    (('<Facts Present> <No Facts>',), 'fact_check'),   # two categories: ambiguous
    (('<有事实>', '   '), 'reference'),                 # empty extraction
    ((EN['facts'], 'p', 'not contradictory'), 'judge'),  # negation is not the keyword
    ((EN['facts'], 'p', 'Hallucination'), 'judge'),
])
def test_unparsed_at_each_step(answers, step):
    # the tolerant rule (the official one reads each of these otherwise: below)
    lab, = AnahV2Annotator(FakeBackend({'S': answers}), parsing='tolerant').annotate([task('S')])
    assert lab.label == 'unparsed' and lab.trace['unparsed_at'] == step
    steps = [k for k in lab.trace if k in ('fact_check', 'reference', 'judge')]
    assert steps == ['fact_check', 'reference', 'judge'][:len(answers)]
    assert [lab.trace[k] for k in steps] == list(answers)
    assert is_hallucinated_label(lab.label) is None


# issue 23, point 3: hand-made judge answers where ANAH-v2's official parsing (eval.py: exact
# '<No Facts>' at step 1, then substring tests on the answer without spaces, ok before
# contradictory before unverifiable) and the tolerant keyword match disagree, and some where
# they agree. (answers of steps 1-3, official label, tolerant label)
PARSING_CASES = [
    (('I think so', 'p', '<No Hallucination>'), 'ok', 'unparsed'),
    (('<Facts Present> <No Facts>', 'p', '<Contradictory>'), 'contradictory', 'unparsed'),
    (('no facts', 'p', '<No Hallucination>'), 'ok', 'nofact'),  # official: not '<No Facts>'
    (('<No Facts>',), 'nofact', 'nofact'),
    ((EN['facts'], 'p', 'not contradictory'), 'contradictory', 'unparsed'),
    ((EN['facts'], 'p', 'Hallucination'), 'unparsed', 'unparsed'),
    ((EN['facts'], 'p', 'No hallucination, nothing contradictory'), 'ok', 'ok'),
    ((EN['facts'], 'p', 'It is unverifiable or contradictory'), 'contradictory', 'unparsed'),
    ((EN['facts'], 'There is no reference information here.', '<No Hallucination>'),
     'unverifiable', 'ok'),
    ((EN['facts'], 'p', '[Contradictory] the year is wrong'), 'contradictory', 'contradictory'),
    ((EN['facts'], 'p', 'The sentence is unverifiable.'), 'unverifiable', 'unparsed'),
]


@pytest.mark.parametrize('answers,official,tolerant', PARSING_CASES)
def test_official_parsing_is_the_default_and_the_other_is_kept(answers, official, tolerant):
    lab, = AnahV2Annotator(FakeBackend({'S': answers})).annotate([task('S')])
    assert lab.label == official and lab.trace['parsing'] == 'official'
    other = lab.trace['other_parsing']
    assert other['parsing'] == 'tolerant'
    # the tolerant label from the same raw answers, or None where it needs a step not taken
    assert other['label'] == tolerant or (other['label'] is None and len(
        [k for k in lab.trace if k in ('fact_check', 'reference', 'judge')]) < len(answers))
    lab2, = AnahV2Annotator(FakeBackend({'S': answers}), parsing='tolerant').annotate([task('S')])
    assert lab2.label == tolerant
    assert lab2.trace['other_parsing']['label'] in (official, None)
    assert sum(o != t for _, o, t in PARSING_CASES) == 7   # the 7 of 11


class ChoosingBackend(FakeBackend):
    """A backend with choose(): the first choice that its script's answer contains."""

    def __init__(self, rules):
        super().__init__(rules)
        self.chosen = []

    def choose(self, conversations, choices, max_new_tokens=32):
        free = [a[0] for a in self.generate(conversations, SamplingParams.greedy())]
        self.chosen.append(choices)
        return [next((c for c in choices if c.strip('<>').lower() in a.lower()), choices[-1])
                for a in free]


def test_constrained_verdicts_always_parse():
    backend = ChoosingBackend({'S1': ('Facts present, I think', 'point', 'contradictory'),
                               'S2': ('nothing here: no facts', 'x', 'y')})
    labels = AnahV2Annotator(backend, constrain=True).annotate([task('S1'), task('S2')])
    assert [x.label for x in labels] == ['contradictory', 'nofact']
    assert backend.chosen[0] == ['<Facts Present>', '<No Facts>']
    assert backend.chosen[-1] == ['<No Hallucination>', '<Contradictory>', '<Unverifiable>']
    with pytest.raises(ValueError, match='choose'):
        AnahV2Annotator(FakeBackend({}), constrain=True)


@pytest.mark.parametrize('answer,expected', [
    ('<Contradictory>', 'contradictory'), ('  contradictory. ', 'contradictory'),
    ('[CONTRADICTORY] the year is wrong', 'contradictory'), ('**Unverifiable**', 'unverifiable'),
    ('No  hallucination', 'ok'), ('【矛盾】', 'contradictory'), ('无法验证。', 'unverifiable'),
    ('<无幻觉>', 'ok'), ('not contradictory', None), ('无矛盾', None), ('The answer is', None),
    ('<Contradictory> or <Unverifiable>', None), ('', None)])
def test_match_answer_tolerates_format_not_meaning(answer, expected):
    ann = AnahV2Annotator(None)
    assert match_answer(answer, ann.answers['judge']) == expected


def test_batching_one_call_per_step():
    n = 7
    rules = {f'S{i}-': (EN['facts'], f'pt{i}', EN['ok']) for i in range(n)}
    backend = FakeBackend(rules)
    labels = AnahV2Annotator(backend).annotate([task(f'S{i}-') for i in range(n)])
    assert [lab.label for lab in labels] == ['ok'] * n
    assert [len(c) for c in backend.calls] == [n, n, n]
    # early stops shrink the later calls; only pending sentences are sent
    rules.update({'S0-': (EN['nofact'],), 'S1-': (EN['facts'], EN['noref'])})
    backend = FakeBackend(rules)
    AnahV2Annotator(backend).annotate([task(f'S{i}-') for i in range(n)])
    assert [len(c) for c in backend.calls] == [7, 6, 5]
    assert all('S0-' not in conv[1]['content'] for conv in backend.calls[1])
    # batch_size chunks each step
    backend = FakeBackend(rules)
    AnahV2Annotator(backend, batch_size=3).annotate([task(f'S{i}-') for i in range(n)])
    assert [len(c) for c in backend.calls] == [3, 3, 1, 3, 3, 3, 2]


def test_multi_turn_history():
    backend = FakeBackend({'S-ok': (EN['facts'], 'point A', EN['ok'])})
    AnahV2Annotator(backend, templates='en').annotate(
        [task('S-ok', question='Q?', response='FULL RESPONSE', document='THE DOC')])
    conv = backend.calls[2][0]
    assert [m['role'] for m in conv] == ['system', 'user', 'assistant', 'user', 'assistant',
                                         'user']
    assert conv[:4] == backend.calls[1][0] and conv[:2] == backend.calls[0][0]
    assert [conv[2]['content'], conv[4]['content']] == ['<Facts Present>', 'point A']
    assert all(s in conv[1]['content'] for s in ('Q?', 'FULL RESPONSE', 'S-ok'))
    assert 'THE DOC' in conv[3]['content'] and 'THE DOC' not in conv[1]['content']


def test_templates_bundled_and_custom(tmp_path):
    both = load_templates('auto')
    assert set(both) == {'en', 'zh'}
    assert load_templates('zh') == {'*': both['zh']}
    # a forced set is used whatever the task's language
    backend = FakeBackend({'S': (EN['nofact'],)})
    AnahV2Annotator(backend, templates='en').annotate([task('S', 'zh')])
    assert 'Sentence under review' in backend.calls[0][0][1]['content']

    custom = {'steps': {
        'fact_check': {'template': 'F {question}|{sentence} {"json": 1}',
                       'answers': {'facts': ['YES'], 'nofact': 'NO'}},
        'reference': {'template': 'R {document}', 'answers': {'none': ['NONE']}},
        'judge': {'template': 'J {reference}', 'answers': {'ok': ['TRUE'],
                                                            'contradictory': ['FALSE'],
                                                            'unverifiable': ['UNKNOWN']}}}}
    path = tmp_path / 't.json'
    path.write_text(json.dumps(custom))
    backend = FakeBackend({'S1': ('yes', 'pts', 'false'), 'S2': ('No.',)})
    labels = AnahV2Annotator(backend, templates=str(path), parsing='tolerant').annotate(
        [task('S1', question='Q', document='D'), task('S2', 'zh')])
    assert [lab.label for lab in labels] == ['contradictory', 'nofact']
    conv = backend.calls[2][0]
    assert conv[0] == {'role': 'user', 'content': 'F Q|S1 {"json": 1}'}  # no system prompt
    assert conv[2]['content'] == 'R D' and conv[4]['content'] == 'J pts'
    # a bundled keyword means nothing to a custom set
    lab, = AnahV2Annotator(FakeBackend({'S': (EN['nofact'],)}), str(path),
                           parsing='tolerant').annotate([task('S')])
    assert lab.label == 'unparsed'
    del custom['steps']['judge']['answers']['unverifiable']
    with pytest.raises(ValueError, match='judge.answers.unverifiable'):
        load_templates(custom)
    with pytest.raises(ValueError, match="lang 'fr'"):
        AnahV2Annotator(backend).annotate([task('S', 'fr')])


def test_scores():
    assert [is_hallucinated_label(x) for x in
            ('ok', 'nofact', 'contradictory', 'unverifiable', 'unparsed')] == \
        [False, False, True, True, None]
    with pytest.raises(ValueError):
        is_hallucinated_label('maybe')
    labels = ['ok', 'nofact', 'contradictory', 'unparsed', 'unverifiable']
    assert response_score(labels) == pytest.approx(2 / 4)  # unparsed left out, not "correct"
    assert response_stats(labels) == {'n_sentences': 5, 'n_hallucinated': 2, 'n_unparsed': 1,
                                      'score': 0.5}
    assert response_score([]) is None and response_score(['unparsed']) is None
    assert pooled_score([['ok'], ['contradictory', 'ok', 'ok']]) == pytest.approx(3 / 4)


def test_load_annotator():
    backend = FakeBackend({})
    ann = load_annotator('anah', backend=backend, templates='zh')
    assert isinstance(ann, AnahV2Annotator) and ann.backend is backend
    ann = load_annotator('maskdpo_xtuner.annotate.anah:AnahV2Annotator', backend=backend)
    assert isinstance(ann, AnahV2Annotator)
    for bad in ('nope', 'maskdpo_xtuner.annotate.anah:Nope'):
        with pytest.raises(ValueError):
            load_annotator(bad, backend=backend)


# ------------------------------------------------------------------------ tools/annotate.py

# sentence keywords -> scripted answers (any other sentence: facts, a point, ok)
CLI_RULES = {'Hello': (EN['nofact'],), '1815': (EN['facts'], EN['noref']),
             '1900': (EN['facts'], 'born 1815', EN['contra']),
             '你好': (ZH['nofact'],), '法国': (ZH['facts'], '巴黎是法国首都', ZH['contra'])}
CLI_DEFAULT = (EN['facts'], 'a point', EN['ok'])
QUESTIONS = [
    {'id': 1, 'question': 'Who was Ada Lovelace?', 'document': 'Ada ... born 1815.',
     'topic': 'ada', 'responses': ['Hello! Ada was born in 1815. She died in 1900.',
                                   'Ada was a mathematician.']},
    {'id': 'q2', 'question': '巴黎是哪个国家的首都？', 'lang': 'zh',
     'responses': ['你好。巴黎是法国的首都。']},
    {'id': 3, 'question': 'Where is Lyon?', 'responses': ['Lyon is in France.', '']},
]
DOCS = [{'id': 'q2', 'document': '巴黎是法国首都。'}, {'id': 3, 'document': 'Lyon, France.'}]


@pytest.fixture
def cli_files(tmp_path):
    def dump(name, recs):
        p = tmp_path / name
        p.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in recs))
        return str(p)
    return dump('in.jsonl', QUESTIONS), dump('docs.jsonl', DOCS), str(tmp_path / 'out.jsonl')


def run_cli(inp, docs, out, backend, *extra):
    argv = ['--input', inp, '--out', out, '--chunk-questions', '2', *extra]
    argv += ['--documents', docs] if docs else []
    return load_script('annotate').main(argv, backend=backend)


def test_cli_end_to_end(cli_files, capsys):
    inp, docs, out = cli_files
    backend = FakeBackend(CLI_RULES, CLI_DEFAULT)
    summary = run_cli(inp, docs, out, backend)
    recs = read_jsonl(out)
    assert [r['id'] for r in recs] == [1, 'q2', 3]
    for rec, q in zip(recs, QUESTIONS):
        assert {k: rec[k] for k in q} == q  # input fields (incl. responses) kept
        assert len(rec['annotations']) == len(q['responses'])
        for ann, resp in zip(rec['annotations'], q['responses']):
            assert all(resp[s['start']:s['end']] == s['text'] for s in ann['sentences'])
    labels = [[s['label'] for s in a['sentences']] for r in recs for a in r['annotations']]
    assert labels == [['nofact', 'unverifiable', 'contradictory'], ['ok'],
                      ['nofact', 'contradictory'], ['ok'], []]
    first = recs[0]['annotations'][0]
    assert (first['n_sentences'], first['n_hallucinated'], first['score']) == (3, 2, 1 / 3)
    assert first['sentences'][2]['reference'] == 'born 1815'
    assert recs[2]['annotations'][1] == {'sentences': [], 'n_sentences': 0,
                                         'n_hallucinated': 0, 'n_unparsed': 0, 'score': None}
    # documents: the line's own, else --documents; the zh question got the zh prompts
    prompts = [c[-1]['content'] for call in backend.calls for c in call if len(c) == 4]
    assert any('Ada ... born 1815.' in p for p in prompts)
    assert any('巴黎是法国首都。' in p and '文档' in p for p in prompts)
    # 2 chunks of questions, at most one generate call per step each
    assert [len(c) for c in backend.calls] == [6, 4, 3, 1, 1, 1]
    assert summary['labels'] == {'ok': 2, 'nofact': 2, 'contradictory': 2, 'unverifiable': 1,
                                 'unparsed': 0}
    assert 'unparsed' in capsys.readouterr().out


def test_cli_reports_unparsed(cli_files, capsys):
    inp, docs, out = cli_files
    summary = run_cli(inp, docs, out, FakeBackend({}, ('gibberish',) * 3), '--save-trace')
    assert summary['labels']['unparsed'] == 7 and summary['pooled_score'] is None
    # the official rules take anything but '<No Facts>' as facts present and any step-2
    # answer as the reference: the sentence is unparsed at the last step
    assert read_jsonl(out)[0]['annotations'][0]['sentences'][0]['trace'] == {
        'fact_check': 'gibberish', 'reference': 'gibberish', 'judge': 'gibberish',
        'unparsed_at': 'judge', 'parsing': 'official',
        'other_parsing': {'parsing': 'tolerant', 'label': 'unparsed'}}
    assert 'WARNING: 7 unparsed' in capsys.readouterr().out


def test_cli_missing_document_names_id(cli_files):
    inp, _, out = cli_files
    backend = FakeBackend(CLI_RULES, CLI_DEFAULT)
    with pytest.raises(SystemExit, match=r"\['q2', 3\]"):
        run_cli(inp, None, out, backend)
    assert backend.calls == []


def test_cli_resume_after_kill(cli_files, tmp_path):
    inp, docs, out = cli_files
    run_cli(inp, docs, str(tmp_path / 'ref.jsonl'), FakeBackend(CLI_RULES, CLI_DEFAULT))
    expected = read_jsonl(str(tmp_path / 'ref.jsonl'))
    # killed during the second chunk: the first chunk's 2 questions are written
    with pytest.raises(SystemExit) as ctrl_c:  # a Ctrl-C ends the tool with 130, no traceback
        run_cli(inp, docs, out, FakeBackend(CLI_RULES, CLI_DEFAULT, fail_on_call=4))
    assert ctrl_c.value.code == 130
    assert read_jsonl(out) == expected[:2]
    # killed while writing: one complete line and a half-written one
    lines = open(out, encoding='utf-8').read().splitlines(keepends=True)
    with open(out, 'w', encoding='utf-8') as f:
        f.write(lines[0] + lines[1][:len(lines[1]) // 2])
    backend = FakeBackend(CLI_RULES, CLI_DEFAULT)
    run_cli(inp, docs, out, backend)
    assert read_jsonl(out) == expected
    sent = [c[-1]['content'] for call in backend.calls for c in call if len(c) == 2]
    assert not any('Ada' in s for s in sent)  # question 1 was not annotated again
    # restarted on a finished file: nothing to do, nothing written twice
    backend = FakeBackend(CLI_RULES, CLI_DEFAULT)
    run_cli(inp, docs, out, backend)
    assert read_jsonl(out) == expected and backend.calls == []
