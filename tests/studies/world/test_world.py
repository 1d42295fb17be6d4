"""The synthetic world: deterministic generation, splits, templates the oracle reads back, the
oracle's labels on hand-made sentences, the study's stage cache and data subsets, and (slow) the
quick preset of the whole study end to end, then reused stage by stage."""
import dataclasses
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from maskdpo_xtuner.annotate import SentenceTask
from maskdpo_xtuner.io.jsonl import write_jsonl
from maskdpo_xtuner.annotate.split import split_sentences
from maskdpo_xtuner.studies.world import KINDS, World, WorldConfig, WorldOracle, parse
from maskdpo_xtuner.studies.world.pretrain import PretrainConfig, pretrain
from maskdpo_xtuner.studies.world.world import OPENER
from maskdpo_xtuner.studies.world.masks import write_masks
from maskdpo_xtuner.studies.world.pooled import write_pooled
from maskdpo_xtuner.studies.world.properties import PROPERTIES, answer_stats, pair_properties
from maskdpo_xtuner.studies.world.results import aggregate_results
from maskdpo_xtuner.studies.world.settings import preset, spec
from maskdpo_xtuner.pipeline.stages import Stages
from maskdpo_xtuner.studies.world.study import Study, run_study

from conftest import ROOT  # noqa: E402
SMALL = dict(n_person=40, n_organisation=20, n_place=20, n_event=20, n_cities=20)


@pytest.fixture(scope='module')
def world():
    return World.generate(WorldConfig(**SMALL))


# ------------------------------------------------------------------------------ generation
def test_generation_is_deterministic(tmp_path):
    """Same seed, same world JSON, also in another process (whose string hashing differs:
    PYTHONHASHSEED); another seed, another world."""
    code = ('import sys; from maskdpo_xtuner.studies.world import World, WorldConfig; '
            f'World.generate(WorldConfig(seed=int(sys.argv[2]), **{SMALL!r})).save(sys.argv[1])')
    paths = {}
    for name, seed, hashseed in (('a', 0, '1'), ('b', 0, '2'), ('c', 1, '1')):
        paths[name] = str(tmp_path / f'{name}.json')
        subprocess.run([sys.executable, '-c', code, paths[name], str(seed)], check=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=ROOT))
    text = {k: open(p, encoding='utf-8').read() for k, p in paths.items()}
    World.generate(WorldConfig(seed=0, **SMALL)).save(str(tmp_path / 'here.json'))
    assert open(tmp_path / 'here.json', encoding='utf-8').read() == text['a']
    assert text['a'] == text['b']
    assert text['a'] != text['c']
    loaded = World.load(paths['a'])  # and it round-trips
    loaded.save(str(tmp_path / 'again.json'))
    assert open(tmp_path / 'again.json', encoding='utf-8').read() == text['a']


def test_splits_are_disjoint_by_topic_and_cover_all(world):
    names = [t.name for t in world.topics]
    assert len(set(names)) == len(names)  # a topic's name identifies it
    splits = {s: {t.name for t in world.split(s)} for s in ('sft', 'train', 'val', 'test')}
    for a in splits:
        assert splits[a], a
        for b in splits:
            assert a == b or not splits[a] & splits[b], (a, b)
    assert set().union(*splits.values()) == set(names)
    for s in splits:  # stratified: every kind in every split
        assert {t.kind for t in world.split(s)} == set(KINDS), s


def test_topic_ids_are_unique(world):
    ids = [t.id for t in world.topics]
    assert len(set(ids)) == len(ids)


def test_study_question_ids_are_unique(world):
    ids = [q['id'] for t in world.topics for ood in (False, True)
           for q in world.questions(t, ood)]
    assert len(set(ids)) == len(ids)


# ------------------------------------------------------------------------------ templates
def test_every_template_parses_back_to_its_fact(world):
    for topic in world.topics:
        for attr, (_, _, answer, paraphrases) in KINDS[topic.kind].items():
            for template in [answer] + paraphrases:
                sentence = template.format(s=topic.name, v=topic.facts[attr])
                assert parse(sentence, topic.kind) == (topic.name, attr, topic.facts[attr],
                                                       True), sentence


def test_answers_and_documents_split_and_parse_back(world):
    rng = random.Random(0)
    for topic in world.topics:
        texts = [world.answer(topic, rng), world.document(topic, rng, full=True),
                 world.reference_document(topic), world.document(topic, rng)]
        for i, text in enumerate(texts):
            sents = [s.text for s in split_sentences(text, lang='en')]
            if i == 0:
                assert sents[0] == OPENER.format(s=topic.name)
                sents = sents[1:]
            facts = [parse(s, topic.kind) for s in sents]
            assert None not in facts, (text, sents)
            assert all(f[0] == topic.name and f[3] for f in facts), text
            assert all(topic.facts[f[1]] == f[2] for f in facts), text
            if i < 3:  # answers and full documents state every fact exactly once
                assert sorted(f[1] for f in facts) == sorted(topic.facts), text


# ------------------------------------------------------------------------------ base model
def test_base_model_is_prompted_as_it_was_trained(world, tmp_path):
    """The generation prompt (what sampling and evaluation feed the model) tokenizes as the
    prefix of the trained conversation, with no unknown token, and answers decode back exactly."""
    from transformers import AutoTokenizer
    out = str(tmp_path / 'base')
    pretrain(world, out, PretrainConfig(steps=1, batch_size=2, hidden_size=16, num_layers=1,
                                        intermediate_size=32, num_heads=2), progress=False)
    tok = AutoTokenizer.from_pretrained(out)
    rng = random.Random(0)
    for topic in world.topics[::7]:
        for q in world.questions(topic) + world.questions(topic, ood=True):
            msgs = [{'role': 'user', 'content': q['question']}]
            answer = world.answer(topic, rng)
            head = tok.apply_chat_template(msgs, add_generation_prompt=True)
            full = tok.apply_chat_template(msgs + [{'role': 'assistant', 'content': answer}])
            assert full[:len(head)] == head, tok.convert_ids_to_tokens(head)[-4:]
            assert tok.unk_token_id is None or tok.unk_token_id not in full + head, \
                tok.convert_ids_to_tokens(head)[-4:]
            assert tok.decode(full[len(head):], skip_special_tokens=True).strip() == answer


# ------------------------------------------------------------------------------ oracle
def _label(response, q):
    tasks = [SentenceTask(question=q['question'], sentence=s.text, response=response,
                          meta={'id': q['id'], 'sentence': k, 'record': q})
             for k, s in enumerate(split_sentences(response, lang='en'))]
    return [(lab.label, lab.trace['reason']) for lab in WorldOracle().annotate(tasks)]


def test_oracle_labels_hand_made_sentences(world):
    people = world.split('test')
    x = next(t for t in people if t.kind == 'person')
    y = next(t for t in world.topics if t.kind == 'person' and t is not x
             and t.facts['city'] != x.facts['city'])
    q = world.questions(x)[0]
    X, f = x.name, x.facts
    response = ' '.join([
        f'Here is what I know about {X}.',             # the opener
        f'{X} was born in {f["born"]}.',               # true
        f'{X} grew up in {y.facts["city"]}.',          # a neighbour's value
        f'{X} was born in {f["born"]}.',               # the same fact again
        f'In {f["born"]}, {X} was born.',              # ... even in another template
        f'{y.name} was born in {y.facts["born"]}.',    # about someone else
        f'{X} is based in {f["city"]}.',               # an organisation's attribute
        'The weather was lovely that year.',           # not a sentence the world writes
        f'Here is what I know about {X}.',             # the opener again
        f'The hometown of {X} is {f["city"]}.',        # true (a document paraphrase)
    ])
    assert _label(response, q) == [
        ('nofact', 'opener'), ('ok', 'true'), ('contradictory', 'wrong_value'),
        ('unverifiable', 'repeat'), ('unverifiable', 'repeat'),
        ('unverifiable', 'other_subject'), ('unverifiable', 'not_an_attribute_of_this_kind'),
        ('unverifiable', 'unreadable'), ('unverifiable', 'repeat'), ('ok', 'true')]
    # the taught answer style is all correct: the opener, then every fact once
    answer = world.answer(x, random.Random(1))
    assert _label(answer, q) == [('nofact', 'opener')] + [('ok', 'true')] * len(f)
    # an opener about another topic is not this answer's opener
    assert _label(f'Here is what I know about {y.name}.', q) == \
        [('unverifiable', 'other_subject')]


# ------------------------------------------------------------------------------ study pieces
def test_stage_cache_skips_redoes_and_resumes(tmp_path, capsys):
    stages, calls = Stages(), []
    d = str(tmp_path / 'stage')

    def work(tag):
        def fn():
            calls.append(tag)
            with open(os.path.join(d, 'out.txt'), 'a') as f:
                f.write(tag)
        return fn
    k1 = stages.run('s', d, {'x': 1}, work('a'))
    assert stages.run('s', d, {'x': 1}, work('b')) == k1  # same inputs: skipped
    k2 = stages.run('s', d, {'x': 2}, work('c'))            # changed: cleared and redone
    assert k2 != k1 and open(os.path.join(d, 'out.txt')).read() == 'c'
    # an interrupted stage: redone from scratch, or resumed (output kept) if resumable
    with open(os.path.join(d, 'stage.json')) as f:
        rec = json.load(f)
    rec['done'] = False
    with open(os.path.join(d, 'stage.json'), 'w') as f:
        json.dump(rec, f)
    stages.run('s', d, {'x': 2}, work('d'), resumable=True)
    assert open(os.path.join(d, 'out.txt')).read() == 'cd'
    rec['done'] = False
    with open(os.path.join(d, 'stage.json'), 'w') as f:
        json.dump(rec, f)
    stages.run('s', d, {'x': 2}, work('e'))
    assert open(os.path.join(d, 'out.txt')).read() == 'e'
    assert calls == ['a', 'c', 'd', 'e']
    assert [s for _, s in stages.log] == ['ran', 'skipped', 'ran', 'resumed', 'ran']


def test_scaling_subsets_are_deterministic_and_sized(tmp_path):
    settings = preset('quick')
    study = Study(settings, str(tmp_path), [0], 'scaling')
    study.build_world()
    train = study.world.split('train')
    qs = [q for t in train for q in study.world.questions(t)]
    study.pairs_file = str(tmp_path / 'pairs.jsonl')
    write_jsonl(study.pairs_file, [{'id': q['id'], 'topic': q['topic']} for q in qs])

    def subset(seed, **kw):
        return [p['id'] for p in study.subset_pairs(spec(**kw), seed)]
    assert subset(0) == [q['id'] for q in qs]
    for frac, n in (('1/3', 1), ('2/3', 2)):
        ids = subset(0, topics=frac)
        assert ids == subset(0, topics=frac)
        topics = {p.rsplit('-', 1)[0] for p in ids}
        assert len(ids) == 3 * len(topics)  # every question of the chosen topics
        assert abs(len(topics) - len(train) * n / 3) <= len(KINDS)
        assert subset(1, topics=frac) != ids
        by_q = subset(0, questions=n)
        assert len(by_q) == n * len(train)  # n questions of every topic
        assert len({p.rsplit('-', 1)[0] for p in by_q}) == len(train)
        assert abs(len(by_q) - len(ids)) <= 3 * len(KINDS)  # the same amount of data
    assert set(subset(0, topics='1/3')) < set(subset(0, topics='2/3'))
    assert set(subset(0, questions=1)) < set(subset(0, questions=2))


# ------------------------------------------------------------------------------ worlds axis
def test_world_and_base_seed_lay_out_the_cache(tmp_path):
    """World W, base seed B live in world/W/baseB; two base models of one world share its world
    stage; another world seed is another world."""
    def study(w, b):
        s = preset('quick')
        s.world = dataclasses.replace(s.world, seed=w)
        s.pretrain = dataclasses.replace(s.pretrain, seed=b)
        st = Study(s, str(tmp_path), [0])
        st.build_world()
        return st
    a, b, c = study(1, 1), study(1, 2), study(2, 2)
    assert a.out == str(tmp_path / 'world' / '1' / 'base1')
    assert b.out == str(tmp_path / 'world' / '1' / 'base2')
    assert [s for _, s in b.stages.log] == ['skipped']  # the world built for a is reused
    assert os.path.exists(tmp_path / 'world' / '2' / 'world' / 'world.json')
    assert [t.facts for t in a.world.topics] == [t.facts for t in b.world.topics]
    assert [t.facts for t in a.world.topics] != [t.facts for t in c.world.topics]
    with pytest.raises(ValueError, match='one base seed per world'):
        run_study('quick', seeds=[0], out=str(tmp_path), worlds=[0, 1], base_seeds=[0])


def _doc(world, base, scores, props=None):
    """A per-world study doc with given scores: {seed: {arm: score}} (every set/decoding)."""
    per_seed = {}
    for seed, arm_scores in scores.items():
        res = {arm: {s: {d: {'score': v, 'sentences': 6.0, 'facts': 3.0}
                         for d in ('greedy', 'sampled')} for s in ('in-domain', 'ood')}
               for arm, v in arm_scores.items()}
        stats = {'answers': 1, 'sentences': 6.0, 'facts': 3.0, 'other_subject': 0.0,
                 'attributes': {'person.born': {'correct': 1.0, 'wrong': 0.0, 'absent': 0.0}}}
        per_seed[seed] = {'results': res, 'properties': (props or {}).get(seed, {
            'pairs': 1, **{k: None for k in PROPERTIES}}),
            'answers': {arm: {s: {d: stats for d in ('greedy', 'sampled')}
                              for s in ('in-domain', 'ood')} for arm in arm_scores}}
    arms_ = {'base': None, 'dpo': spec('none'), 'maskdpo': spec('both')}
    return {'study': 'main', 'preset': 'quick', 'eval_split': 'test', 'world': world,
            'base_seed': base, 'seeds': list(scores), 'settings': {}, 'arms': arms_,
            'per_seed': per_seed, 'aggregate': aggregate_results(per_seed, arms_), 'seconds': 1}


def test_pooled_gap_is_paired_by_world_and_seed_with_t_intervals(tmp_path):
    from scipy import stats
    gaps = {(0, 0): 0.02, (0, 1): 0.04, (1, 0): -0.01, (1, 1): 0.01, (2, 0): 0.05, (2, 1): 0.03}
    docs = [_doc(w, w if w < 2 else 7, {s: {'base': 0.3 + w / 10, 'dpo': 0.5 + w / 10 + s / 100,
                                            'maskdpo': 0.5 + w / 10 + s / 100 + gaps[w, s]}
                                        for s in (0, 1)}) for w in (0, 1, 2)]
    doc = write_pooled(docs, str(tmp_path))
    p = doc['paired']['maskdpo']['in-domain/greedy']
    flat = np.array(list(gaps.values()))
    assert p['pairs']['mean'] == pytest.approx(flat.mean(), abs=1e-12)
    half = stats.t.ppf(0.975, 5) * flat.std(ddof=1) / np.sqrt(6)
    assert p['pairs']['low'] == pytest.approx(flat.mean() - half, abs=1e-12)
    means = np.array([0.03, 0.0, 0.04])  # per world; world 1's gaps cancel
    half = stats.t.ppf(0.975, 2) * means.std(ddof=1) / np.sqrt(3)
    assert p['worlds']['high'] == pytest.approx(means.mean() + half, abs=1e-12)
    assert p['per_world'] == pytest.approx({'w0': 0.03, 'w1': 0.0, 'w2-b7': 0.04}, abs=1e-12)
    assert p['worlds_positive'] == pytest.approx(2 / 3)  # 0.0 is not positive
    assert p['pairs_positive'] == pytest.approx(5 / 6)
    # where one more world should land: wider than the interval of the mean, by sqrt(n + 1)
    half = stats.t.ppf(0.975, 2) * means.std(ddof=1) * np.sqrt(1 + 1 / 3)
    assert p['new_world']['low'] == pytest.approx(means.mean() - half, abs=1e-12)
    md = open(tmp_path / 'results.md').read()
    assert '| in-domain/greedy | +2.33 |' in md and 'w2-b7' in md
    assert '| 2 of 3 | 5 of 6 |' in md
    assert open(tmp_path / 'results.png', 'rb').read(4) == b'\x89PNG'
    # pooled means are over all runs; the spread is between the per-world means
    assert doc['aggregate']['dpo']['ood']['sampled']['score']['mean'] == \
        pytest.approx(np.mean([0.5 + w / 10 + s / 100 for w in (0, 1, 2) for s in (0, 1)]))
    assert '| dpo | 60.5 ± 10.0 |' in md


def test_pooled_report_of_one_run_warns_nothing(tmp_path):
    """The demo's case: one world, one seed, so no interval to draw or label (its plot printed
    matplotlib's 'No artists with labels' warning)."""
    import warnings
    doc = _doc(0, 0, {0: {'base': 0.3, 'dpo': 0.5, 'maskdpo': 0.55}})
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        write_pooled([doc], str(tmp_path))
    assert open(tmp_path / 'results.png', 'rb').read(4) == b'\x89PNG'


def test_spread_fits_the_world_gap_on_properties_measured_before_training(tmp_path):
    """Per-world gaps built as 0.2 x the base model's OOD score: the slope is found with an
    interval that excludes 0; a property unrelated to the gap gets one that covers 0."""
    from maskdpo_xtuner.studies.world.spread import spread, spread_markdown, write_spread
    rng = random.Random(1)
    docs = []
    for w in range(6):
        base = 0.2 + 0.1 * w
        noise = rng.random()
        gap = 0.2 * base + 0.002 * (w % 2)
        props = {s: {'pairs': 10, 'mixed_chosen': noise, 'base_knowledge': rng.random(),
                     'chosen_hallucinated': 0.5, 'rejected_correct': rng.random(),
                     'subject_confusion': rng.random()} for s in (0, 1)}
        docs.append(_doc(w, w, {s: {'base': base, 'dpo': 0.6, 'maskdpo': 0.6 + gap}
                                for s in (0, 1)}, props))
    doc = write_pooled(docs, str(tmp_path))
    sp = spread(doc)
    f = sp['fits']['ood/greedy']['base_ood']
    assert f['slope'] == pytest.approx(0.2, abs=0.01) and f['low'] > 0
    assert sp['fits']['ood/greedy']['chosen_hallucinated']['r'] is None  # no spread: no fit
    g = sp['fits']['ood/greedy']['mixed_chosen']
    assert g['low'] < g['slope'] < g['high']
    assert [r['world'] for r in sp['rows']] == [f'w{w}' for w in range(6)]
    assert f['needs'] is None  # an exact relation holds with any one world left out
    assert '| base_ood (' in spread_markdown(sp)
    write_spread(doc, str(tmp_path))
    assert open(tmp_path / 'spread.png', 'rb').read(4) == b'\x89PNG'


def test_spread_names_the_one_world_a_slope_rests_on():
    """Nine worlds with no relation and one far away that alone makes the slope: the interval
    excludes 0, but not without that world, and the table says so."""
    from maskdpo_xtuner.studies.world.spread import fit_worlds, _slope
    rng = random.Random(3)
    pts = [(f'w{w}', 0.45 + 0.01 * rng.random(), 0.01 * rng.random()) for w in range(9)]
    pts.insert(4, ('w9', 0.15, 0.12))  # low property, large gap
    f = fit_worlds(pts)
    assert f['high'] < 0 and f['needs'] == 'w9'
    assert _slope(f).endswith(f'* (not without w9), r {f["r"]:+.2f}')
    g = fit_worlds([(f'w{w}', 0.1 * w, 0.02 * w + 0.001 * rng.random()) for w in range(10)])
    assert g['low'] > 0 and g['needs'] is None and '* (not' not in _slope(g)


def test_masks_property_is_chosen_on_validation_not_test(tmp_path):
    """Validation gaps follow mixed_chosen, test gaps follow base_knowledge: the study picks
    mixed_chosen (the validation choice) and reports the test fit against it."""
    rng = random.Random(0)
    props, val_scores, test_scores = {}, {}, {}
    for w in range(3):
        props[w], val_scores[w], test_scores[w] = {}, {}, {}
        for s in range(2):
            mix, know = rng.random(), rng.random()
            props[w][s] = {'pairs': 10, 'mixed_chosen': mix, 'base_knowledge': know,
                           'chosen_hallucinated': 0.5, 'rejected_correct': 0.1,
                           'subject_confusion': rng.random() / 10}
            val_scores[w][s] = {'base': 0.3, 'dpo': 0.5, 'maskdpo': 0.5 + 0.1 * mix}
            test_scores[w][s] = {'base': 0.3, 'dpo': 0.5, 'maskdpo': 0.5 + 0.1 * know}
    val = [_doc(w, w, val_scores[w], props[w]) for w in range(3)]
    test = [_doc(w, w, test_scores[w], props[w]) for w in range(3)]
    doc = write_masks(val, test, str(tmp_path))
    assert doc['chosen'] == 'mixed_chosen'
    assert doc['validation']['mixed_chosen']['r'] == pytest.approx(1.0)
    assert doc['validation']['mixed_chosen']['slope'] == pytest.approx(0.1)
    assert doc['test']['in-domain/sampled']['r'] < 0.99  # test follows another property
    assert len(doc['rows']) == 6
    assert '| mixed_chosen (chosen) |' in open(tmp_path / 'results.md').read()


def test_pair_properties_and_answer_stats_count_exactly(world, tmp_path):
    x = next(t for t in world.split('train') if t.kind == 'person')
    y = next(t for t in world.topics if t.kind == 'person' and t is not x
             and t.facts['city'] != x.facts['city'] and t.facts['born'] != x.facts['born'])
    q = world.questions(x)[0]
    X, f = x.name, x.facts
    right = f'Here is what I know about {X}. {X} was born in {f["born"]}. {X} grew up in {f["city"]}.'
    mixed = f'Here is what I know about {X}. {X} was born in {f["born"]}. {X} grew up in {y.facts["city"]}.'
    other = (f'Here is what I know about {X}. {y.name} was born in {y.facts["born"]}. '
             f'{y.name} grew up in {y.facts["city"]}. {X} was born in {y.facts["born"]}.')
    write_jsonl(str(tmp_path / 'ann.jsonl'), [dict(q, responses=[right, mixed, other])])
    item = (lambda *types: {'type': ['nofact', *types]})
    write_jsonl(str(tmp_path / 'pairs.jsonl'), [
        {'id': q['id'], 'chosen_item': item('ok', 'contradictory'),
         'rejected_item': item('unverifiable', 'unverifiable', 'contradictory')},
        {'id': q['id'], 'chosen_item': item('ok', 'ok'),
         'rejected_item': item('ok', 'contradictory')}])
    pr = pair_properties(str(tmp_path / 'pairs.jsonl'), str(tmp_path / 'ann.jsonl'))
    assert pr['pairs'] == 2 and pr['mixed_chosen'] == 0.5
    assert pr['chosen_hallucinated'] == 0.25 and pr['rejected_correct'] == 0.2
    # about the asked subject: 3 true, 2 wrong values (the other subject's lines do not count)
    assert pr['base_knowledge'] == pytest.approx(3 / 5)
    assert pr['subject_confusion'] == pytest.approx(1 / 3)  # 2 of 3 fact sentences elsewhere
    st = answer_stats([str(tmp_path / 'ann.jsonl')])
    assert st['answers'] == 3 and st['sentences'] == pytest.approx(10 / 3)
    assert st['facts'] == pytest.approx(3 / 3) and st['other_subject'] == pytest.approx(1 / 3)
    born, city = st['attributes']['person.born'], st['attributes']['person.city']
    assert (born['correct'], born['wrong']) == pytest.approx((2 / 3, 1 / 3))
    assert (city['correct'], city['wrong'], city['absent']) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert st['attributes']['person.award'] == {'correct': 0.0, 'wrong': 0.0, 'absent': 1.0}
    assert set(st['attributes']) == {f'person.{a}' for a in KINDS['person']}


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_quick_preset_end_to_end_then_reused(tmp_path, monkeypatch):
    out = str(tmp_path / 'study')
    pooled = run_study('quick', seeds=[0], out=out)
    doc = pooled['per_world'][0]
    root = os.path.join(out, 'world', '0', 'base0')  # world 0, base seed 0 (the world's)
    for d in (out, root):  # pooled and per world
        for name in ('results.md', 'results.json', 'results.png'):
            assert os.path.getsize(os.path.join(d, name)) > 200, (d, name)
        with open(os.path.join(d, 'results.png'), 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    md = open(os.path.join(root, 'results.md'), encoding='utf-8').read()
    for arm in ('base', 'dpo', 'maskdpo'):
        assert any(line.startswith(f'| {arm} |') for line in md.splitlines()), arm
    assert '| in-domain/greedy |' in open(os.path.join(out, 'results.md')).read()
    with open(os.path.join(root, 'results.json')) as f:
        saved = json.load(f)
    assert set(saved['aggregate']) == {'base', 'dpo', 'maskdpo'}
    for arm, sets in saved['aggregate'].items():
        assert set(sets) == {'in-domain', 'ood'}
        for set_name, decs in sets.items():
            for dec in ('greedy', 'sampled'):
                m = decs[dec]
                assert 0 <= m['score']['mean'] <= 1 and m['sentences']['mean'] > 0, \
                    (arm, set_name, dec)
    run = saved['per_seed']['0']
    assert run['pairs']['pairs'] > 0 and run['properties']['pairs'] == run['pairs']['pairs']
    for arm in ('dpo', 'maskdpo'):  # xtuner trained and converted each arm
        t = run['training'][arm]
        assert t['steps'] > 0 and t['pairs'] == run['pairs']['pairs']
        assert os.path.exists(os.path.join(t['dir'], 'hf', 'config.json'))
        stats = run['answers'][arm]['in-domain']['greedy']
        assert stats['answers'] > 0 and len(stats['attributes']) == 6 * len(KINDS)
        # the oracle's unique correct facts per answer, re-read from the saved answers
        assert abs(stats['facts'] - saved['aggregate'][arm]['in-domain']['greedy']['facts'][
            'mean']) < 1e-9
    # one world: the pooled means are that world's
    assert pooled['aggregate'] == doc['aggregate']
    assert run['training']['dpo']['dir'] != run['training']['maskdpo']['dir']
    assert all(status == 'ran' for _, status in doc['stage_log'])
    assert len(doc['stage_log']) == 2 + 3 + 2 + 3 * 4  # world, base, data, train, evals

    # the same command again: every stage is reused, no output is rewritten
    watched = [os.path.join(root, 'model', 'model.safetensors'),
               os.path.join(root, 'seed0', 'sample', 'responses.jsonl'),
               os.path.join(run['training']['maskdpo']['dir'], 'hf', 'config.json')]
    mtimes = [os.path.getmtime(p) for p in watched]
    again = run_study('quick', seeds=[0], out=out)['per_world'][0]
    assert sorted(n for n, _ in again['stage_log']) == sorted(n for n, _ in doc['stage_log'])
    assert all(status == 'skipped' for _, status in again['stage_log'])
    assert [os.path.getmtime(p) for p in watched] == mtimes
    assert again['aggregate'] == saved['aggregate']

    # annotator code changed but its labels did not: annotation and pairs are redone, the
    # trained models (keyed by the pairs' content) and their evaluations are kept
    from maskdpo_xtuner.studies.world import study as study_mod
    real = study_mod.code_hash
    monkeypatch.setattr(study_mod, 'code_hash',
                        lambda stage: 'edited' if stage == 'annotate' else real(stage))
    third = run_study('quick', seeds=[0], out=out)['per_world'][0]
    status = dict(third['stage_log'])
    assert status['seed 0: annotate with the world oracle'] == 'ran'
    assert status['seed 0: build pairs'] == 'ran'
    assert [s for n, s in third['stage_log'] if ': train ' in n or 'evaluate' in n] == \
        ['skipped'] * (2 + 3 * 4)
    assert third['aggregate'] == saved['aggregate']
