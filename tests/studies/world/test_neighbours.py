"""Near / far topic groups (neighbours.py, paper Table 5): distances, equal halves per kind,
the world's structure as an embedding, the base model's pooled hidden states, and the training
subsets (equally many pairs for near and far)."""
import hashlib
import json

import numpy as np
import pytest

from maskdpo_xtuner.io.jsonl import write_jsonl
from maskdpo_xtuner.studies.world import KINDS, World, WorldConfig
from maskdpo_xtuner.studies.world.neighbours import (EMBEDDINGS, group_topics, model_embeddings,
                                                     nearest_distance, split_near_far,
                                                     structure_features, topic_groups)
from maskdpo_xtuner.studies.world.pretrain import PretrainConfig, pretrain
from maskdpo_xtuner.studies.world.settings import arms, preset, spec, spec_name
from maskdpo_xtuner.studies.world.study import Study

SMALL = dict(n_person=40, n_organisation=20, n_place=20, n_event=20, n_cities=20)


@pytest.fixture(scope='module')
def world():
    return World.generate(WorldConfig(**SMALL))


def test_nearest_distance_is_one_minus_the_best_cosine():
    emb = {'a': np.array([1.0, 0.0]), 'b': np.array([1.0, 1.0]), 'c': np.array([0.0, 2.0]),
           'x': np.array([3.0, 0.0]), 'y': np.array([-1.0, 0.0])}
    d = nearest_distance(emb, ['a', 'b', 'c'], ['x', 'y'])
    assert d['a'] == pytest.approx(0.0, abs=1e-15)
    assert d['b'] == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-15)
    assert d['c'] == pytest.approx(1.0, abs=1e-15)


def test_near_and_far_are_equal_halves_of_each_kind(world):
    rng = np.random.default_rng(0)
    dist = {t.id: float(rng.random()) for t in world.split('train')}
    g = split_near_far(world, dist)
    assert len(g['near']) == len(g['far']) and not set(g['near']) & set(g['far'])
    kind = {t.id: t.kind for t in world.topics}
    for k in KINDS:
        near = [i for i in g['near'] if kind[i] == k]
        far = [i for i in g['far'] if kind[i] == k]
        n = sum(t.kind == k for t in world.split('train'))
        assert len(near) == len(far) == n // 2
        assert max(dist[i] for i in near) <= min(dist[i] for i in far)


def test_the_worlds_structure_links_topics_that_share_values_or_name_each_other(world):
    feats = structure_features(world)
    person = next(t for t in world.topics if t.kind == 'person')
    org = world.by_name[person.facts['employer']]
    assert f'organisation={org.name}' in feats[person.id] & feats[org.id]
    assert f'year={person.facts["born"]}' in feats[person.id]
    assert f'city={person.facts["city"]}' in feats[person.id]
    assert 'kind=person' in feats[person.id] and 'kind=person' not in feats[org.id]


def test_groups_from_a_base_model_and_the_model_embedding_is_its_pooled_last_layer(world,
                                                                                    tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir = str(tmp_path / 'base')
    pretrain(world, model_dir, PretrainConfig(steps=2, batch_size=4, hidden_size=16,
                                              num_layers=1, intermediate_size=32, num_heads=2),
             progress=False)
    event = next(t for t in world.topics if t.kind == 'event')  # 'X Fair': two tokens
    text = world.reference_document(event)
    emb = model_embeddings(model_dir, {'n': event.name, 'd': text, 'x': 'a'}, batch_size=2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    for key, t in (('n', event.name), ('d', text)):
        ids = torch.tensor([tok.encode(t, add_special_tokens=False)])
        with torch.no_grad():
            h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
        assert np.allclose(emb[key], h.double().mean(0).numpy(), atol=1e-5), key
    doc = topic_groups(world, model_dir, 0, str(tmp_path / 'g' / 'groups.json'))
    train = {t.id for t in world.split('train')}
    assert set(doc['groups']) == set(EMBEDDINGS)
    for name, g in doc['groups'].items():
        assert len(g['near']) == len(g['far']) > 0 and set(g['near'] + g['far']) <= train
        assert g['near_distance'] <= g['far_distance'], name
        assert doc['near_agreement'][name][name] == 1.0
    assert json.load(open(tmp_path / 'g' / 'groups.json'))['groups'] == doc['groups']
    assert group_topics(str(tmp_path / 'g' / 'groups.json'), 'far:random') == \
        set(doc['groups']['random']['far'])
    with pytest.raises(ValueError, match='unknown topic group'):
        group_topics(str(tmp_path / 'g' / 'groups.json'), 'middle:random')


def test_near_and_far_train_on_equally_many_pairs_of_their_own_topics(tmp_path):
    study = Study(preset('quick'), str(tmp_path), [0], 'nearfar')
    study.build_world()
    train = [t for t in study.world.split('train')]
    half = len(train) // 2
    study.groups_file = str(tmp_path / 'groups.json')
    near, far = [t.id for t in train[:half]], [t.id for t in train[half:2 * half]]
    with open(study.groups_file, 'w') as f:
        json.dump({'groups': {'random': {'near': near, 'far': far}}}, f)
    # every question of the near topics has a pair, only the first of the far ones
    pairs = [{'id': q['id']} for t in train for q in study.world.questions(t)
             if t.id in near or q['id'].endswith('-q0')]
    study.pairs_file = str(tmp_path / 'pairs.jsonl')
    write_jsonl(study.pairs_file, pairs)
    got = {side: study.subset_pairs(spec(group=f'{side}:random'), 0) for side in ('near', 'far')}
    assert len(got['near']) == len(got['far']) == len(far)  # the smaller group's count
    assert {p['id'].rsplit('-', 1)[0] for p in got['near']} <= set(near)
    assert {p['id'].rsplit('-', 1)[0] for p in got['far']} == set(far)
    assert got['near'] == study.subset_pairs(spec(group='near:random'), 0)  # deterministic
    assert got['near'] != study.subset_pairs(spec(group='near:random'), 1)
    # a group's training is keyed by the pairs it trains on, not by the code that chose them
    study.groups_key = 'built'
    keys = {side: study.training_data(spec(group=f'{side}:random'), 0, 'pairs-all')
            for side in ('near', 'far')}
    h = hashlib.sha256(json.dumps(got['far'], sort_keys=True).encode()).hexdigest()[:16]
    assert keys['far'] == f'pairs-{h}' and keys['near'] != keys['far']


def test_nearfar_arms_and_spec_names():
    s = preset('quick')
    a = arms('nearfar', s)
    assert a['near (model-name)']['group'] == 'near:model-name'
    assert spec_name(a['far (world-structure)']) == 'mask-both_lr0.0001_far-world-structure'
    s.embeddings = ['random']
    assert [n for n in arms('nearfar', s) if '(' in n] == ['near (random)', 'far (random)']
    s.embeddings = ['openai']
    with pytest.raises(ValueError, match='unknown embedding'):
        arms('nearfar', s)
    # the specs of earlier studies keep exactly their keys (their stage keys do not move)
    assert set(spec('both')) == {'mask', 'end', 'lr', 'topics', 'questions'}
