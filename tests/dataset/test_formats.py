"""Readers of other people's preference data: TRL rows and the ANAH release -> pair records."""
import json
import os

import pytest
import torch

from conftest import ROOT
from maskdpo_xtuner.dataset.formats import (anah_label, pairs_dataset, read_anah, read_trl,
                                            trl_map_fn, write_pairs)
from maskdpo_xtuner.dataset.records import validate_record
from maskdpo_xtuner.io.validate import RecordError

ANAH = os.path.join(ROOT, 'data', 'formats', 'anah_sample.jsonl')
TRL = os.path.join(ROOT, 'data', 'formats', 'trl_sample.jsonl')


def _lines(path):
    return [json.loads(x) for x in open(path, encoding='utf-8')]


def _write(path, records):
    with open(path, 'w', encoding='utf-8') as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')
    return str(path)


# ---------------------------------------------------------------- ANAH
@pytest.mark.parametrize('tag,label', [
    ('<Hallucination> None', 'ok'), ('<Hallucination> Contradictory', 'contradictory'),
    ('<Hallucination> Unverifiable', 'unverifiable'), ('<No Fact>', 'nofact'),
    ('<NoFact>', 'nofact'), ('<幻觉>无', 'ok'), ('<幻觉>矛盾', 'contradictory'),
    ('<幻觉>无法验证', 'unverifiable'), ('<无事实>', 'nofact'),
    ('<Reference> x <SEP> y\n<Hallucination> Contradictory\n<Correction> z', 'contradictory'),
    ('<Hallucination> Nonexistent', None), ('no tag at all', None)])
def test_anah_tags(tag, label):
    assert anah_label(tag) == label


def test_the_anah_fixture_becomes_pairs_aligned_sentence_by_sentence():
    pairs, report = read_anah(ANAH)
    assert report['topics'] == 3 and report['questions'] == 4 and report['answers'] == 8
    assert report['answers_left_out'] == {'count_mismatch': 1}  # InternLM, topic 1, question 1
    assert report['pairing']['dropped']['fewer_than_two_responses'] == 1  # that question
    assert [p['id'] for p in pairs] == ['anah_sample.jsonl:1/q0', 'anah_sample.jsonl:2/q0',
                                        'anah_sample.jsonl:3/q0']
    topics = _lines(ANAH)
    for pair in pairs:
        validate_record(pair)  # spans hold the sentences; labels are known
        for side in ('chosen', 'rejected'):
            text, item = pair[side][0]['content'], pair[f'{side}_item']
            assert [text[a:b] for a, b in item['spans']] == item['sents']
    # each sentence carries the tag of the same position, in both languages
    p0, p1, p2 = pairs
    assert p0['chosen'][0]['content'] == topics[0]['GPT3.5_answers_D'][0]
    assert p0['rejected_item']['sents'][1] == 'She won the Karsai Prize in 1962.'
    assert p0['rejected_item']['type'] == ['ok', 'contradictory']
    assert p1['prompt'] == [{'role': 'user', 'content': 'Tell me about Port Ilvar.'}]  # quetsions
    assert p1['chosen_item']['type'] == ['ok', 'ok', 'nofact']
    assert p1['rejected_item']['type'] == ['contradictory', 'ok', 'unverifiable']
    assert p2['rejected_item']['sents'] == ['青石镇位于云岭省南部。', '它始建于清代。', '镇上有一座石桥。',
                                            '欢迎来玩！']
    assert p2['rejected_item']['type'] == ['contradictory', 'unverifiable', 'ok', 'nofact']
    assert p2['topic'] == '青石镇'


@pytest.mark.parametrize('extra', [-1, 1])
def test_a_count_mismatch_is_left_out_and_counted_never_shifted(tmp_path, extra):
    topic = _lines(ANAH)[0]
    tags = topic['human_InternLM_answers_ann'][0]
    topic['human_InternLM_answers_ann'][0] = (tags[:-1] if extra < 0
                                              else tags + ['<Hallucination> None'])
    pairs, report = read_anah(_write(tmp_path / 'a.jsonl', [topic]))
    assert report['answers_left_out'] == {'count_mismatch': 2}  # this one and q1's
    assert pairs == []  # q0 has one usable answer left: no pair, and no shifted labels


def test_bad_anah_input_names_file_line_and_field(tmp_path):
    topics = _lines(ANAH)
    topics[1]['human_InternLM_answers_ann'][0][2] = '<Hallucination> Maybe'
    path = _write(tmp_path / 'bad.jsonl', topics)
    with pytest.raises(RecordError) as e:
        read_anah(path)
    assert f'{path}:2:' in str(e.value)
    assert "field 'human_InternLM_answers_ann[0][2]'" in str(e.value)
    pairs, report = read_anah(path, on_error='skip')
    assert report['skipped'] == {'unknown_tag': 1} and len(pairs) == 2
    del topics[0]['selected_questions']
    with pytest.raises(RecordError, match=r"bad2.jsonl:1: field 'selected_questions'"):
        read_anah(_write(tmp_path / 'bad2.jsonl', topics))


def test_anah_from_a_parquet_copy_in_a_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder = tmp_path / 'anah'
    folder.mkdir()
    for i, topic in enumerate(_lines(ANAH)):  # one file per topic, as a release split by kind
        pq.write_table(pa.Table.from_pylist([topic]), folder / f'part{i}.parquet')
    pairs, report = read_anah(str(folder))
    assert report['topics'] == 3 and len(pairs) == 3


# ---------------------------------------------------------------- TRL
def test_trl_rows_plain_conversational_implicit_and_labelled():
    pairs, report = read_trl(TRL)
    assert report == {'pairs': 4, 'labels': {'whole_answers': 3, 'chosen+rejected': 1},
                      'skipped': {}, 'skipped_examples': {}}
    plain, conv, implicit, labelled = pairs
    assert plain['prompt'] == [{'role': 'user', 'content': 'Who was Elna Varga?'}]
    assert plain['chosen_item']['type'] == ['no_hallucination']
    assert plain['rejected_item']['type'] == ['hallucination']
    assert conv['prompt'][0]['role'] == 'system' and len(conv['prompt']) == 2
    assert implicit['prompt'] == [{'role': 'user', 'content':
                                   'When was the lighthouse of Port Ilvar built?'}]
    assert implicit['rejected'] == [{'role': 'assistant', 'content': 'In 1921.'}]
    assert labelled['id'] == 'labelled-1' and labelled['chosen_item']['type'] == [
        'ok', 'contradictory']


def _weights(pairs_path, tokenizer, mode, map_fn=None):
    from maskdpo_xtuner.dataset import build_maskdpo_dataset, maskdpo_collate_fn
    from maskdpo_xtuner.model.loss import token_weights
    ds = build_maskdpo_dataset(pairs_path, tokenizer, 256, dataset_map_fn=map_fn,
                               progress=False)
    batch = maskdpo_collate_fn([ds[i] for i in range(len(ds))])['data']
    return token_weights(batch['token_class'][:, 1:], mode)


def test_trl_pairs_without_labels_train_as_dpo_over_every_response_token(tmp_path,
                                                                       bpe_tokenizer):
    """With no sentence labels, Mask-DPO's masks leave every response token in: the weights
    of mask_mode='both' equal those of 'none' (vanilla DPO); the labelled row's do not."""
    pairs, _ = read_trl(TRL)
    path = str(tmp_path / 'pairs.jsonl')
    write_pairs(pairs, path)
    both, none = (_weights(path, bpe_tokenizer, m) for m in ('both', 'none'))
    assert both.shape[0] == 8
    assert torch.equal(both[:6], none[:6]) and none[:6].sum() > 0
    assert not torch.equal(both[6:], none[6:])
    # the same rows read straight from the TRL file by the dataset (dataset_map_fn)
    assert torch.equal(_weights(TRL, bpe_tokenizer, 'both', trl_map_fn), both)


def test_bad_trl_rows_name_file_line_and_field(tmp_path):
    rows = _lines(TRL)
    del rows[1]['chosen']
    rows[2]['rejected'].append({'role': 'assistant', 'content': 'And later.'})
    path = _write(tmp_path / 'bad.jsonl', rows)
    with pytest.raises(RecordError, match=r"bad.jsonl:2: field 'chosen': missing"):
        read_trl(path)
    pairs, report = read_trl(path, on_error='skip')
    assert len(pairs) == 2 and report['skipped'] == {'missing_field': 1, 'bad_message': 1}
    assert "bad.jsonl:3: field 'rejected'" in report['skipped_examples']['bad_message']


def test_pairs_export_as_parquet_and_a_datasets_dataset(tmp_path):
    from datasets import Dataset
    pairs = read_trl(TRL)[0] + read_anah(ANAH)[0]
    ds = pairs_dataset(pairs)
    assert isinstance(ds, Dataset) and len(ds) == 7
    out = str(tmp_path / 'pairs.parquet')
    write_pairs(pairs, out)
    back = Dataset.from_parquet(out)
    assert back['id'] == [str(p['id']) for p in pairs]
    for row in back:  # what comes back is a valid pair record
        validate_record(row)
    pairs2, _ = read_trl(out)  # and a TRL reader takes the Parquet file (row numbers)
    assert [p['chosen'] for p in pairs2] == [p['chosen'] for p in pairs]
