"""Regime worlds (regime.py): the default world is exactly today's, a regime world differs only in
how often its documents state each attribute, and it lives in its own folder and stage keys."""
import dataclasses
import hashlib
import json
import os
import random
from dataclasses import asdict

import pytest

from maskdpo_xtuner.pipeline.stages import code_hash, hash_inputs
from maskdpo_xtuner.studies.world import KINDS, World, WorldConfig
from maskdpo_xtuner.studies.world.regime import (DEFAULT, PROFILES, RegimeWorld, frequencies,
                                                 regime_key)
from maskdpo_xtuner.studies.world.settings import preset
from maskdpo_xtuner.studies.world.study import Study

SMALL = dict(n_person=40, n_organisation=20, n_place=20, n_event=20, n_cities=20)
# sha256 of the default world's JSON and of one rendering of every topic's document (random.Random
# (0), topics in order), computed with world.py as it was before the regime studies existed
# (commit 20e3877): a change here re-keys every cached world study
DEFAULT_WORLD_JSON = '762cfe3339f17437bf107f72b4433ab54d12e21289255727e99647e06d4e48c2'
DEFAULT_DOCUMENTS = 'd3dbdf939d53bd976c372ca193c7f8101f666b946c4e960eb8276a3f255d8c31'


def test_the_default_world_is_todays(tmp_path):
    world = World.generate(WorldConfig())
    world.save(str(tmp_path / 'w.json'))
    assert hashlib.sha256(open(tmp_path / 'w.json', 'rb').read()).hexdigest() == DEFAULT_WORLD_JSON
    rng = random.Random(0)
    docs = ' | '.join(world.document(t, rng) for t in world.topics)
    assert hashlib.sha256(docs.encode()).hexdigest() == DEFAULT_DOCUMENTS
    # and a regime world with the default frequencies renders the very same documents
    regime, rng = RegimeWorld(world, None), random.Random(0)
    assert ' | '.join(regime.document(t, rng) for t in world.topics) == docs
    assert DEFAULT == (0.95, 0.9, 0.6, 0.35, 0.25, 0.15)


def test_a_profile_changes_only_how_often_documents_state_each_attribute():
    world = World.generate(WorldConfig(**SMALL))
    learnable = RegimeWorld(world, 'learnable')
    assert learnable.topics is world.topics  # the same topics, facts, splits and questions
    rng = random.Random(1)
    for topic in world.topics[:10]:  # full documents state everything, whatever the profile
        assert learnable.document(topic, random.Random(5), full=True) == \
            world.document(topic, random.Random(5), full=True)
    counts = {attr: 0 for attr in KINDS['person']}
    people = [t for t in world.topics if t.kind == 'person']
    n = 0
    for _ in range(50):
        for t in people:
            text = learnable.document(t, rng)
            n += 1
            for attr in counts:
                counts[attr] += t.facts[attr] in text and any(
                    tpl.format(s=t.name, v=t.facts[attr]) in text
                    for tpl in [KINDS['person'][attr][2]] + KINDS['person'][attr][3])
    for attr, freq in zip(KINDS['person'], PROFILES['learnable']):
        assert abs(counts[attr] / n - freq) < 0.04, (attr, counts[attr] / n, freq)
    assert frequencies(None)['place']['twin'] == 0.15
    assert frequencies('learnable')['place']['twin'] == PROFILES['learnable'][5]
    with pytest.raises(ValueError, match='unknown regime'):
        frequencies('paper-ish')


def test_a_regime_world_has_its_own_folder_and_the_default_key_is_unchanged(tmp_path):
    def study(regime):
        s = preset('quick')
        s.regime = regime
        st = Study(s, str(tmp_path), [0])
        st.build_world()
        return st
    default, learnable = study(None), study('learnable')
    assert default.world_root == str(tmp_path / 'world' / '0')
    assert learnable.world_root == str(tmp_path / 'world' / '0-learnable')
    # the default world's stage inputs are exactly those before regimes existed
    inputs = {'config': asdict(preset('quick').world), 'code': code_hash('world')}
    with open(tmp_path / 'world' / '0' / 'world' / 'stage.json') as f:
        assert json.load(f)['inputs'] == json.loads(json.dumps(inputs))
    assert default.world_key == hash_inputs(inputs)
    assert learnable.world_key != default.world_key
    with open(tmp_path / 'world' / '0-learnable' / 'world' / 'stage.json') as f:
        assert json.load(f)['inputs'] == json.loads(json.dumps({**inputs, **regime_key(
            'learnable')}))
    assert isinstance(learnable.world, RegimeWorld) and not isinstance(default.world, RegimeWorld)
    assert [dataclasses.asdict(t) for t in learnable.world.topics] == \
        [dataclasses.asdict(t) for t in default.world.topics]
    for split in ('train', 'test'):  # the same questions, so the two are compared one to one
        assert open(learnable._questions(split)).read() == open(default._questions(split)).read()
    assert os.path.exists(tmp_path / 'world' / '0-learnable' / 'world' / 'world.json')


def test_a_profile_is_keyed_by_its_frequencies_and_the_rendering_code(monkeypatch):
    key = regime_key('learnable')
    assert key['frequencies']['person']['award'] == PROFILES['learnable'][5]
    monkeypatch.setitem(PROFILES, 'another', (0.9,) * 6)  # adding a profile re-keys no other
    assert regime_key('learnable') == key
    monkeypatch.setitem(PROFILES, 'learnable', (0.9,) * 6)  # changing one re-keys it
    assert regime_key('learnable') != key
