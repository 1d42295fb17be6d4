"""Length limits on every model input and judge step (maskdpo_xtuner/io/limits.py): an over-long
response is refused naming record and field, or skipped and counted, before any judge call and
in bounded memory. Before, a 200,000-character response made the ANAH annotator build every
sentence's dialogue around the whole response (5 GB, 300 s, no output)."""
import json
import tracemalloc

import pytest

from maskdpo_xtuner.io.validate import RecordError
from maskdpo_xtuner.pipeline import AnnotatorSpec, annotate
from maskdpo_xtuner.pipeline.factscore_eval import load_generations

LONG = 'Ada was born in Lyon. ' * 9_091  # 200,002 characters, 9,091 sentences


class CountingJudge:
    """A judge backend that answers every ANAH step at once and counts what it was sent."""

    def __init__(self):
        self.conversations = self.chars = 0

    def generate(self, conversations, params, n=1, seeds=None):
        self.conversations += len(conversations)
        self.chars += sum(len(m['content']) for c in conversations for m in c)
        return [['<Facts>'] if 'fact' in c[-1]['content'].lower() else ['<Correct>']
                for c in conversations]


def write(path, records):
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return str(path)


def record(i, response):
    return {'id': f'q{i}', 'question': 'Who was Ada?', 'document': 'Ada was born in Lyon.',
            'responses': [response]}


def test_an_over_long_response_is_refused_before_the_judge(tmp_path):
    judge = CountingJudge()
    inp = write(tmp_path / 's.jsonl', [record(0, 'Ada was born in Lyon.'), record(1, LONG)])
    tracemalloc.start()
    with pytest.raises(RecordError, match=r"s\.jsonl:2: \(id 'q1'\) field 'responses\[0\]': "
                                          r'200,002 characters, over the limit of 32,000 '
                                          r'characters \(MASKDPO_MAX_RESPONSE_CHARS'):
        annotate(inp, str(tmp_path / 'a.jsonl'), AnnotatorSpec('anah'), judge, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert judge.conversations == 0 and peak < 50 * 2 ** 20  # reading the file, no prompts


def test_skip_counts_it_and_annotates_the_rest(tmp_path, capsys):
    judge = CountingJudge()
    inp = write(tmp_path / 's.jsonl', [record(0, 'Ada was born in Lyon.'), record(1, LONG)])
    summary = annotate(inp, str(tmp_path / 'a.jsonl'), AnnotatorSpec('anah'), judge,
                       progress=False, on_error='skip')
    assert summary['questions'] == 1 and summary['sentences'] == 1
    assert 'too_long: 1' in capsys.readouterr().err
    assert judge.chars < 20_000  # one short sentence, never the 200,000 characters


def test_limits_are_set_by_environment_and_checked(tmp_path, monkeypatch):
    inp = write(tmp_path / 's.jsonl', [record(0, 'One. Two. Three. Four.')])
    monkeypatch.setenv('MASKDPO_MAX_SENTENCES', '3')
    with pytest.raises(RecordError, match=r"field 'responses\[0\]': 4 sentences, over the limit "
                                          r'of 3 sentences \(MASKDPO_MAX_SENTENCES'):
        annotate(inp, str(tmp_path / 'a.jsonl'), AnnotatorSpec('anah'), CountingJudge(),
                 progress=False)
    monkeypatch.setenv('MASKDPO_MAX_SENTENCES', 'many')
    with pytest.raises(ValueError, match=r"MASKDPO_MAX_SENTENCES='many': expected a positive"):
        annotate(inp, str(tmp_path / 'b.jsonl'), AnnotatorSpec('anah'), CountingJudge(),
                 progress=False)


def test_a_5mb_factscore_response_is_refused_at_once(tmp_path):
    gen = write(tmp_path / 'g.jsonl', [{'topic': 'Ada', 'response': 'Ada was born. ' * 375_000}])
    with pytest.raises(RecordError, match=r"g\.jsonl:1: field 'response': 5,250,000 characters"):
        load_generations(gen)
    assert load_generations(gen, on_error='skip') == []
