"""Bad input gets an error naming file, line and field; 'skip' drops it and counts why;
the paper's filters drop pairs with counts."""
import json

import pytest

from maskdpo_xtuner.dataset import build_maskdpo_dataset, maskdpo_map_fn, read_pairs
from maskdpo_xtuner.dataset.records import RecordError, validate_record
from maskdpo_xtuner.labels import is_hallucinated


def good(**over):
    rec = {'prompt': [{'role': 'user', 'content': 'Who was Ada?'}],
           'chosen': [{'role': 'assistant', 'content': 'Ada was a mathematician. She wrote notes.'}],
           'rejected': [{'role': 'assistant', 'content': 'Ada was a painter. She wrote notes.'}],
           'chosen_item': {'sents': ['Ada was a mathematician.', 'She wrote notes.'],
                           'type': ['no_hallucination', 'hallucination']},
           'rejected_item': {'sents': ['Ada was a painter.', 'She wrote notes.'],
                             'type': ['contradictory', 'ok']}}
    rec.update(over)
    return rec


def write(tmp_path, records, name='d.jsonl'):
    path = tmp_path / name
    with open(path, 'w') as f:
        for r in records:
            f.write(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
            f.write('\n')
    return str(path)


BAD = {
    'unknown_label': (good(chosen_item={'sents': ['Ada was a mathematician.'], 'type': ['true']}),
                      'chosen_item.type[0]'),
    'length_mismatch': (good(rejected_item={'sents': ['Ada was a painter.'], 'type': ['ok', 'ok']}),
                        'rejected_item'),
    'sentence_not_found': (good(chosen_item={'sents': ['Ada was a poet.'], 'type': ['ok']}),
                           'chosen_item.sents[0]'),
    'bad_message': (good(prompt=[{'role': 'robot', 'content': 'hi'}]), 'prompt[0]'),
    'missing_field': (good(rejected_item=None) | {'rejected_item': {'sents': ['x']}},
                      'rejected_item.type'),
    'bad_span': (good(chosen_item={'sents': ['Ada was a mathematician.'], 'type': ['ok'],
                                   'spans': [[1, 25]]}), 'chosen_item.spans[0]'),
}


@pytest.mark.parametrize('reason', sorted(BAD))
def test_each_bad_record_names_file_line_and_field(tmp_path, reason):
    rec, field = BAD[reason]
    path = write(tmp_path, [good(), good(), rec])
    with pytest.raises(RecordError) as err:
        read_pairs(path)
    assert err.value.reason == reason
    assert err.value.line == 3 and err.value.field == field
    assert f'{path}:3' in str(err.value) and repr(field) in str(err.value)


def test_bad_json_and_unparsed_label(tmp_path):
    path = write(tmp_path, [good(), '{"prompt": ['])
    with pytest.raises(RecordError, match=r'd.jsonl:2: .*invalid JSON'):
        read_pairs(path)
    rec = good(chosen_item={'sents': ['Ada was a mathematician.'], 'type': ['unparsed']})
    with pytest.raises(RecordError, match='unknown label'):
        validate_record(rec)


def test_skip_policy_counts_reasons(tmp_path):
    recs = [good()] + [BAD[r][0] for r in sorted(BAD)] + ['not json', good()]
    pairs, report = read_pairs(write(tmp_path, recs), on_error='skip')
    assert len(pairs) == report.kept == 2
    assert dict(report.dropped) == {**{r: 1 for r in BAD}, 'bad_json': 1}
    assert 'bad_span' in report.summary()


def test_label_vocabularies():
    for label in ('hallucination', 'contradictory', 'unverifiable'):
        assert is_hallucinated(label)
    for label in ('no_hallucination', 'ok', 'nofact'):
        assert not is_hallucinated(label)
    with pytest.raises(ValueError):
        is_hallucinated('unparsed')


def test_spans_and_string_messages_and_whitespace_insensitive_match():
    text = 'Ada Lovelace  was a mathematician.\n1. She wrote Note G.'
    rec = {'prompt': 'Who was Ada?', 'chosen': text, 'rejected': text,
           'chosen_item': {'sents': ['Ada Lovelace was a mathematician.', 'She wrote Note G.'],
                           'type': ['ok', 'hallucination']},
           'rejected_item': {'sents': ['Ada Lovelace  was a mathematician.', 'She wrote Note G.'],
                             'type': ['ok', 'hallucination'], 'spans': [[0, 34], [38, 55]]}}
    pair = validate_record(rec)
    assert pair.prompt == [{'role': 'user', 'content': 'Who was Ada?'}]
    assert pair.chosen_sentences == [(0, 34, False), (38, 55, True)]  # found despite '  '
    assert pair.loose_matches == 1
    assert pair.rejected_sentences == pair.chosen_sentences
    mapped = maskdpo_map_fn(rec)
    assert mapped['chosen_item']['spans'] == [[0, 34], [38, 55]]
    assert validate_record(mapped).chosen_sentences == pair.chosen_sentences


def test_filters_drop_with_counts(tmp_path, bpe_tokenizer):
    no_correct = good(chosen_item={'sents': ['Ada was a mathematician.', 'She wrote notes.'],
                                   'type': ['hallucination', 'unverifiable']})
    no_halluc = good(rejected_item={'sents': ['Ada was a painter.', 'She wrote notes.'],
                                    'type': ['ok', 'nofact']})
    same = good(rejected=good()['chosen'], rejected_item=good()['chosen_item'])
    long_prompt = good(prompt=[{'role': 'user', 'content': 'Who was Ada? ' * 200}])
    path = write(tmp_path, [good(), no_correct, no_halluc, same, long_prompt, good()])
    ds = build_maskdpo_dataset(path, bpe_tokenizer, max_length=300, progress=False)
    assert len(ds) == 2
    assert ds.report['filtered'] == {'no_correct_in_chosen': 1,
                                     'no_hallucinated_in_rejected': 1,
                                     'identical_responses': 1, 'prompt_too_long': 1}
    kept = build_maskdpo_dataset(path, bpe_tokenizer, max_length=300, progress=False,
                                 filters=['prompt_too_long'])
    assert len(kept) == 5 and kept.report['filtered'] == {'prompt_too_long': 1}


def test_filter_sees_truncation(tmp_path, bpe_tokenizer):
    """A rejected whose only hallucinated sentence is cut off by max_length is dropped."""
    long_ok = ' '.join(['She wrote notes.'] * 40)
    rec = good(rejected=long_ok + ' Ada was a painter.',
               rejected_item={'sents': [long_ok, 'Ada was a painter.'],
                              'type': ['ok', 'contradictory']})
    path = write(tmp_path, [good(), rec])
    ds = build_maskdpo_dataset(path, bpe_tokenizer, max_length=120, progress=False)
    assert ds.report['filtered'] == {'no_hallucinated_in_rejected': 1}


def test_dataset_map_fn_converts_other_formats(tmp_path, bpe_tokenizer):
    raw = {'q': 'Who was Ada?', 'good': good()['chosen'][0]['content'],
           'bad': good()['rejected'][0]['content'],
           'good_sents': good()['chosen_item'], 'bad_sents': good()['rejected_item']}

    def convert(r):
        return {'prompt': r['q'], 'chosen': r['good'], 'rejected': r['bad'],
                'chosen_item': r['good_sents'], 'rejected_item': r['bad_sents']}

    path = write(tmp_path, [raw, {'q': 'broken'}])
    with pytest.raises(RecordError, match=r'd.jsonl:2: .*dataset_map_fn raised KeyError'):
        build_maskdpo_dataset(path, bpe_tokenizer, dataset_map_fn=convert, progress=False)
    ds = build_maskdpo_dataset(path, bpe_tokenizer, dataset_map_fn=convert, on_error='skip',
                               progress=False)
    assert len(ds) == 1 and ds.report['invalid'] == {'map_fn_failed': 1}


def test_sample_file_is_valid_and_has_both_vocabularies():
    from conftest import SAMPLE
    pairs, report = read_pairs(SAMPLE)
    assert report.kept == len(pairs) >= 30 and not report.dropped
    labels = set()
    with open(SAMPLE) as f:
        for line in f:
            rec = json.loads(line)
            labels |= set(rec['chosen_item']['type']) | set(rec['rejected_item']['type'])
    assert {'hallucination', 'no_hallucination', 'ok', 'contradictory'} <= labels
