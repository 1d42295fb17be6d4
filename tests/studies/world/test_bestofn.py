"""Best-of-N with the oracle as the selector (bestofn.py, paper Table 6), on hand-labelled
answers whose curve is worked out by hand."""
import pytest

from maskdpo_xtuner.studies.world.bestofn import curve, ns


def _ann(*labels):
    ok = sum(lab in ('ok', 'nofact') for lab in labels)
    return {'sentences': [{'label': lab} for lab in labels],
            'score': ok / len(labels) if labels else None}


def test_best_of_n_keeps_the_best_of_each_block_and_averages_the_blocks():
    c, w, n = 'contradictory', 'unverifiable', 'nofact'
    records = [
        # q1: response scores 1/3, 3/3, 0/2, 2/4 -> blocks of 2 keep #1 then #3
        {'id': 'q1', 'annotations': [_ann(n, c, w), _ann(n, 'ok', 'ok'), _ann(c, w),
                                     _ann(n, 'ok', c, w)]},
        # q2: scores 1/2, 1/2, 1, 0 -> ties keep the first; blocks of 2 keep #0 then #2
        {'id': 'q2', 'annotations': [_ann(n, c), _ann('ok', w), _ann(n), _ann(w)]},
    ]
    got = curve(records, 4)
    assert list(got) == ['1', '2', '4']
    # N = 1: the mean over the 4 single-answer runs of the pooled score
    singles = [(1 + 1) / (3 + 2), (3 + 1) / (3 + 2), (0 + 1) / (2 + 1), (2 + 0) / (4 + 1)]
    assert got['1']['score'] == pytest.approx(sum(singles) / 4, abs=1e-12)
    assert got['1']['blocks'] == 4
    # N = 2: block 0 keeps q1#1 (3/3), q2#0 (1/2); block 1 keeps q1#3 (2/4), q2#2 (1/1)
    assert got['2']['score'] == pytest.approx(((3 + 1) / (3 + 2) + (2 + 1) / (4 + 1)) / 2)
    assert got['2']['facts'] == pytest.approx(((2 + 0) / 2 + (1 + 0) / 2) / 2)
    # N = 4: q1#1 and q2#2
    assert got['4']['score'] == pytest.approx(4 / 4)
    assert got['4']['sentences'] == pytest.approx((3 + 1) / 2)
    assert got['4']['blocks'] == 1
    assert got['2']['response_score'] == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)
    with pytest.raises(ValueError, match='best-of-N needs 8'):
        curve(records, 8)


def test_n_runs_over_powers_of_two():
    assert ns(32) == [1, 2, 4, 8, 16, 32] and ns(1) == [1]
    with pytest.raises(ValueError, match='power of two'):
        ns(12)
