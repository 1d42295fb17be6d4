"""Where the pairs come from (sources.py, paper Table 3): pairs whose chosen answer the world
writes from the document, checked sentence by sentence and read back by the training dataset."""
import json

import pytest

from maskdpo_xtuner.dataset.records import read_pairs
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.pairs import make_record, question_rng
from maskdpo_xtuner.studies.world import World, WorldConfig
from maskdpo_xtuner.studies.world.settings import arms, other_base_seed, preset, spec_name
from maskdpo_xtuner.studies.world.sources import doc_chosen_pairs, labelled, source_pairs

SMALL = dict(n_person=40, n_organisation=20, n_place=20, n_event=20, n_cities=20)


def test_document_written_chosen_answers_replace_only_the_chosen_side(tmp_path):
    world = World.generate(WorldConfig(**SMALL))
    x, y = [t for t in world.split('train') if t.kind == 'person'][:2]
    records = []
    for topic, other in ((x, y), (y, x)):
        q = world.questions(topic)[1]
        opener = f'Here is what I know about {topic.name}.'
        chosen = labelled(f'{opener} {topic.name} was born in {topic.facts["born"]}. '
                          f'{topic.name} grew up in {other.facts["city"]}.', topic)
        rejected = labelled(f'{opener} {topic.name} was married to {other.name}. '
                            f'{other.name} was born in {other.facts["born"]}.', topic)
        records.append(make_record({'id': q['id'], 'question': q['question']}, chosen, rejected))
    write_jsonl(str(tmp_path / 'pairs.jsonl'), records)
    summary = doc_chosen_pairs(world, str(tmp_path / 'pairs.jsonl'), str(tmp_path / 'doc.jsonl'), 3)
    out = read_jsonl(str(tmp_path / 'doc.jsonl'))
    assert summary['pairs'] == 2 and summary['mean_chosen_score'] == 1.0
    for old, new, topic in zip(records, out, (x, y)):
        text = new['chosen'][0]['content']
        assert text == world.answer(topic, question_rng(3, old['id']))
        assert new['chosen_item']['type'] == ['nofact'] + ['ok'] * 6
        assert [text[a:b] for a, b in new['chosen_item']['spans']] == new['chosen_item']['sents']
        for key in ('id', 'prompt', 'rejected', 'rejected_item', 'rejected_score'):
            assert new[key] == old[key], key
        assert old['rejected_item']['type'][1] != 'ok'  # a wrong spouse, then another subject
    pairs, report = read_pairs(str(tmp_path / 'doc.jsonl'))  # what training reads
    assert report.kept == 2 and [p.chosen for p in pairs] == [
        r['chosen'][0]['content'] for r in out]
    assert json.load(open(tmp_path / 'doc.jsonl.summary.json'))['pairs'] == 2


def test_source_arms_and_names():
    s = preset('quick')
    a = arms('source', s)
    assert other_base_seed(s) == s.pretrain.seed + 1
    assert 'source' not in a['maskdpo, own samples']  # the main study's Mask-DPO, reused
    assert a['maskdpo, other base model']['source'] == 'base1'
    assert spec_name(a['maskdpo, chosen from the document']) == 'mask-both_lr0.0001_from-doc'
    with pytest.raises(ValueError, match='unknown pairs source'):
        source_pairs(None, 'internlm', 0)
