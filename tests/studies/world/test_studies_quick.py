"""The paper's Tables 3, 5, 6 and the regime study end to end on the quick preset (slow): each
starts from a copy of one quick main study and must reuse its stages, add only its own work and
write its report beside the paper's numbers."""
import json
import os
import shutil

import pytest

from maskdpo_xtuner.io.jsonl import read_jsonl
from maskdpo_xtuner.studies.world.study import run_study

pytestmark = pytest.mark.slow
OPTS = dict(seeds=[0], train_batch_size=4)  # batch 4: the near / far halves have ~25 pairs
MAIN = ('world', 'base model', 'seed 0: sample 4 answers per train question',
        'seed 0: annotate with the world oracle', 'seed 0: build pairs')


@pytest.fixture(scope='module')
def quick_main(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('quick') / 'main')
    run_study('quick', out=out, **OPTS)
    return out


def copy_of(quick_main, tmp_path):
    out = str(tmp_path / 'study')
    shutil.copytree(quick_main, out)
    return out


def status(doc):
    out = {}
    for name, s in doc['stage_log']:
        out.setdefault(name, s)  # the first time a stage was met
    return out


def reused_main(doc):
    st = status(doc)
    assert all(st[name] == 'skipped' for name in MAIN), st
    assert st['seed 0: train mask-both_lr0.0001'] == 'skipped'


def test_source_study(quick_main, tmp_path):
    out = copy_of(quick_main, tmp_path)
    pooled = run_study('quick', out=out, study='source', **OPTS)
    doc = pooled['per_world'][0]
    reused_main(doc)
    st = status(doc)
    assert st['seed 0: train mask-both_lr0.0001_from-base1'] == 'ran'
    assert os.path.exists(os.path.join(out, 'world', '0', 'base1', 'model', 'config.json'))
    training = doc['per_seed'][0]['training']
    other = training['maskdpo, other base model']
    other_pairs = read_jsonl(os.path.join(out, 'world', '0', 'base1', 'seed0', 'pairs',
                                          'pairs.jsonl'))
    assert other['pairs'] == len(other_pairs) > 0
    assert read_jsonl(os.path.join(other['dir'], 'pairs.jsonl')) == other_pairs
    doc_arm = training['maskdpo, chosen from the document']
    assert doc_arm['properties']['chosen_hallucinated'] == 0.0
    assert doc_arm['pairs'] == training['maskdpo, own samples']['pairs']
    table = json.load(open(os.path.join(out, 'source', 'table3.json')))
    assert table['paper']['other'] == 59.43 and len(table['rows']) == 6
    for name in ('table3.md', 'table3.png', 'results.md'):
        assert os.path.getsize(os.path.join(out, 'source', name)) > 500


def test_nearfar_study(quick_main, tmp_path):
    out = copy_of(quick_main, tmp_path)
    pooled = run_study('quick', out=out, study='nearfar', embeddings=['model-name', 'random'],
                       **OPTS)
    doc = pooled['per_world'][0]
    reused_main(doc)
    assert status(doc)['topic groups (near / far)'] == 'ran'
    training = doc['per_seed'][0]['training']
    for emb in ('model-name', 'random'):
        near, far = training[f'near ({emb})'], training[f'far ({emb})']
        assert near['pairs'] == far['pairs'] > 0
        groups = json.load(open(os.path.join(out, 'world', '0', 'base0', 'topic_groups',
                                             'groups.json')))['groups'][emb]
        for side, arm in (('near', near), ('far', far)):
            topics = {p['id'].rsplit('-', 1)[0] for p in read_jsonl(
                os.path.join(arm['dir'], 'pairs.jsonl'))}
            assert topics <= set(groups[side])
    table = pooled['table']
    assert set(table['near_minus_far']) == {'model-name', 'random'}
    assert os.path.getsize(os.path.join(out, 'nearfar', 'table5.png')) > 500


def test_bestofn_study(quick_main, tmp_path):
    out = copy_of(quick_main, tmp_path)
    pooled = run_study('quick', out=out, study='bestofn', **OPTS)
    doc = pooled['per_world'][0]
    reused_main(doc)
    best = doc['per_seed'][0]['best_of_n']
    assert set(best) == {'base', 'dpo', 'maskdpo'}
    for arm, sets in best.items():
        for set_name, c in sets.items():
            assert list(c) == ['1', '2', '4', '8'], (arm, set_name)
            picked = [c[n]['response_score'] for n in c]
            assert all(b >= a - 1e-12 for a, b in zip(picked, picked[1:])), (arm, set_name)
    table = pooled['table']
    assert table['n'] == [1, 2, 4, 8]
    assert table['curves']['maskdpo']['in-domain'][8]['mean'] == \
        pytest.approx(best['maskdpo']['in-domain']['8']['score'])
    assert os.path.getsize(os.path.join(out, 'bestofn', 'table6.md')) > 500
    again = run_study('quick', out=out, study='bestofn', **OPTS)['per_world'][0]
    assert all(s == 'skipped' for _, s in again['stage_log'])  # resumable, cached


def test_regime_study(quick_main, tmp_path):
    out = copy_of(quick_main, tmp_path)
    report = run_study('quick', out=out, study='regime', regimes=['learnable'], **OPTS)
    assert set(report['gaps']) == {'default', 'learnable'}
    root = os.path.join(out, 'world', '0-learnable')
    assert os.path.exists(os.path.join(root, 'base0', 'model', 'config.json'))
    assert json.load(open(os.path.join(root, 'world', 'stage.json')))['inputs']['regime'] == \
        'learnable'
    # the regime world's questions are the default world's
    assert open(os.path.join(root, 'world', 'questions', 'test.jsonl')).read() == \
        open(os.path.join(out, 'world', '0', 'world', 'questions', 'test.jsonl')).read()
    default = json.load(open(os.path.join(out, 'world', '0', 'base0', 'results.json')))
    assert report['scores']['default']['maskdpo']['in domain greedy']['mean'] == \
        pytest.approx(default['aggregate']['maskdpo']['in-domain']['greedy']['score']['mean'])
    assert os.path.getsize(os.path.join(out, 'regime', 'regime.png')) > 500
