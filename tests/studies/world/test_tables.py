"""The reports of the paper's Tables 3, 5, 6 and the regime study (tables.py) and the main bar
chart (results.py), on study docs with made-up scores whose differences are known."""
import json
import os

import numpy as np
import pytest

from maskdpo_xtuner.studies.world.properties import PROPERTIES
from maskdpo_xtuner.studies.world.results import aggregate_results, plot_results, t_half
from maskdpo_xtuner.studies.world.settings import arms, preset
from maskdpo_xtuner.studies.world.tables import (PAPER, write_bestofn, write_nearfar,
                                                 write_regime, write_source)

CELLS = [(s, d) for s in ('in-domain', 'ood') for d in ('greedy', 'sampled')]
PROPS = {'pairs': 100, **{k: 0.25 for k in PROPERTIES}}


def _doc(world, study, arms_, score, seeds=(0, 1), **extra):
    """A per-world doc whose arm scores are ``score(arm, world, seed)`` in every cell."""
    per_seed = {}
    for s in seeds:
        per_seed[s] = {
            'results': {a: {c: {d: {'score': score(a, world, s), 'sentences': 6.0, 'facts': 3.0}
                                for d in ('greedy', 'sampled')} for c in ('in-domain', 'ood')}
                        for a in arms_},
            'training': {a: {'properties': dict(PROPS, chosen_hallucinated=0.1)}
                         if len(sp) > 5 else {}  # a source or group: its own pairs
                         for a, sp in arms_.items() if sp is not None},
            'properties': dict(PROPS)}
    return {'study': study, 'preset': 'quick', 'eval_split': 'test', 'world': world,
            'base_seed': world, 'seeds': list(seeds), 'arms': arms_, 'per_seed': per_seed,
            'settings': {'embeddings': ['model-name', 'random']},
            'aggregate': aggregate_results(per_seed, arms_), **extra}


def test_table3_puts_the_worlds_differences_beside_the_papers(tmp_path):
    a = arms('source', preset('quick'))
    own, other, doc_arm = list(a)[1:]
    shift = {'base': -0.2, own: 0.0, other: -0.03, doc_arm: 0.01}
    docs = [_doc(w, 'source', a, lambda arm, w_, s: 0.6 + shift[arm] + w_ / 100 + s / 1000)
            for w in (0, 1, 2)]
    out = write_source(docs, str(tmp_path))
    g = out['gaps'][other]['in-domain/greedy']
    assert g['mean'] == pytest.approx(-0.03) and g['over'] == 'worlds' and g['n'] == 3
    assert g['low'] == pytest.approx(-0.03) and g['positive'] == 0.0  # no spread over worlds
    md = open(tmp_path / 'table3.md').read()
    assert '| other samples minus own | -18.10 | -3.0 [-3.0, -3.0] |' in md
    assert f'| {doc_arm} | +1.0 [+1.0, +1.0] |' in md
    assert out['pairs'][other]['chosen_hallucinated'] == pytest.approx(0.1)
    assert out['pairs'][own]['chosen_hallucinated'] == pytest.approx(0.25)  # the study's own
    assert PAPER['table3']['other'] == 59.43
    assert open(tmp_path / 'table3.png', 'rb').read(4) == b'\x89PNG'


def test_table5_reads_the_groups_and_pairs_near_with_far(tmp_path):
    a = arms('nearfar', preset('quick'))
    docs = []
    for w in (0, 1):
        d = tmp_path / f'w{w}'
        os.makedirs(d / 'topic_groups')
        groups = {e: {'near': ['a'], 'far': ['b'], 'near_distance': 0.1, 'far_distance': 0.2}
                  for e in ('model-name', 'model-document', 'world-structure', 'random')}
        agree = {e: {f: 1.0 for f in groups} for e in groups}
        json.dump({'groups': groups, 'near_agreement': agree, 'train_topics': 2,
                   'test_topics': 1}, open(d / 'topic_groups' / 'groups.json', 'w'))
        near_gain = {0: 0.04, 1: 0.02}[w]  # model-name: near beats far by 3 points on average
        docs.append(_doc(w, 'nearfar', a, lambda arm, w_, s: 0.5 + (
            near_gain if arm == 'near (model-name)' else 0.0) + s / 100, dir=str(d)))
    out = write_nearfar(docs, str(tmp_path / 'out'))
    g = out['near_minus_far']['model-name']['in-domain/greedy']
    assert g['mean'] == pytest.approx(0.03)
    from scipy import stats
    half = stats.t.ppf(0.975, 1) * np.std([0.04, 0.02], ddof=1) / np.sqrt(2)
    assert g['high'] == pytest.approx(0.03 + half)
    assert set(out['near_minus_far']) == {'model-name', 'random'}  # the embeddings run
    md = open(tmp_path / 'out' / 'table5.md').read()
    assert "model-name: +3.0 [" in md and '| random | 0.77 (InternLM2), 0.56 (Llama) | random: +0.0' in md
    assert 'not run' in md  # world-structure was not among the embeddings


def test_table6_curves_and_gaps_by_n(tmp_path):
    a = arms('bestofn', preset('quick'))
    docs = [_doc(w, 'bestofn', a, lambda arm, w_, s: 0.5) for w in (0, 1)]
    level = {'base': 0.3, 'dpo': 0.5, 'maskdpo': 0.6}
    for d in docs:
        for s, per in d['per_seed'].items():
            per['best_of_n'] = {arm: {c: {str(n): {'score': level[arm] + 0.05 * i + s / 100}
                                          for i, n in enumerate((1, 2, 4))}
                                      for c in ('in-domain', 'ood')} for arm in a}
    out = write_bestofn(docs, str(tmp_path))
    assert out['n'] == [1, 2, 4]
    assert out['curves']['maskdpo']['in-domain'][4]['mean'] == pytest.approx(0.705)
    assert out['gaps']['base']['ood'][1]['mean'] == pytest.approx(0.3)
    md = open(tmp_path / 'table6.md').read()
    assert '| 1 | 47.79 | 70.67 | +22.88 | 30.5 | 60.5 | +30.0 [+30.0, +30.0] |' in md
    assert '| 16 | 73.38 | 89.80 | +16.42 | - | - | - |' in md
    assert '| 256 | 80.98 | 94.09 | +13.11 | - | - | - |' in md


def test_regime_report_compares_the_gap_with_the_papers(tmp_path):
    a = arms('main', preset('quick'))
    by = {p: [_doc(w, 'main', a, lambda arm, w_, s, g=g: 0.6 + (g if arm == 'maskdpo' else 0))
              for w in (0, 1)] for p, g in (('default', 0.01), ('learnable', 0.05))}
    out = write_regime(by, str(tmp_path))
    assert out['gaps']['learnable']['in-domain/greedy']['mean'] == pytest.approx(0.05)
    md = open(tmp_path / 'regime.md').read()
    assert '| in domain greedy | +9.09 | +1.0 [+1.0, +1.0] | +5.0 [+5.0, +5.0] |' in md
    assert 'learnable: 0.95, 0.9, 0.8, 0.7, 0.6, 0.5' in md
    assert open(tmp_path / 'regime.png', 'rb').read(4) == b'\x89PNG'


def test_the_main_bar_chart_and_its_seed_intervals(tmp_path):
    from scipy import stats
    m = {'mean': 0.5, 'std': 0.02, 'n': 3}
    assert t_half(m) == pytest.approx(stats.t.ppf(0.975, 2) * 0.02 / np.sqrt(3))
    assert t_half({'mean': 0.5, 'std': None, 'n': 1}) == 0.0
    doc = _doc(0, 'main', arms('main', preset('quick')), lambda arm, w, s: 0.5 + s / 100,
               seeds=(0, 1, 2))
    plot_results(doc, str(tmp_path / 'results.png'))
    assert os.path.getsize(tmp_path / 'results.png') > 10000
