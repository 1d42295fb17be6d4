"""ANAH evaluation metrics from annotated responses (paper §4), one run or several.

For one run (all responses of all test questions), with C, I, U the numbers of correct
(ok, nofact), incorrect (contradictory, unverifiable) and unparsed sentences and R responses:

* ``score`` (the paper's ANAH score, pooled over sentences) = C / (C + I).
  With ``unparsed_as='correct'`` it is (C + U) / (C + I + U) = 1 − I / all sentences, which is
  what the official ``eval/anah_v2/eval.py`` computes. U is always reported.
* ``mean_response_score`` = mean over responses of c_r / (c_r + i_r) (responses with no scored
  sentence are left out and counted in ``n_responses_unscored``). Differs from ``score``
  whenever long and short responses have different precision.
* totals ``n_correct`` (C), ``n_incorrect`` (I), ``n_unparsed`` (U), ``n_sentences`` and the
  per-response means ``*_per_response`` = total / R (the length effect, paper §5).
* ``ci_low``, ``ci_high``: percentile bootstrap interval of ``score`` over questions: resample
  the questions with replacement ``n_boot`` times (numpy RNG seeded with ``seed``), recompute
  the pooled score ΣC / Σ(C + I) of each resample, take the (1 ± confidence)/2 quantiles.

Across runs (seeds), ``aggregate`` gives each numeric metric's mean and sample standard
deviation (ddof = 1; None for a single run).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from .annotate.score import is_hallucinated_label, label_counts

UNPARSED_AS = ('excluded', 'correct')
# the numeric metrics of one run, in display order
METRICS = ('score', 'ci_low', 'ci_high', 'mean_response_score', 'n_questions', 'n_responses',
           'n_responses_unscored', 'n_sentences', 'n_correct', 'n_incorrect', 'n_unparsed',
           'sentences_per_response', 'correct_per_response', 'incorrect_per_response',
           'unparsed_per_response')


def count_labels(labels: Sequence[str], unparsed_as: str = 'excluded') -> Dict[str, int]:
    """``correct``, ``incorrect``, ``unparsed`` counts of one response's sentence labels;
    with ``unparsed_as='correct'`` unparsed sentences are also added to ``correct``."""
    if unparsed_as not in UNPARSED_AS:
        raise ValueError(f'unparsed_as must be one of {UNPARSED_AS}, got {unparsed_as!r}')
    flags = [is_hallucinated_label(lab) for lab in labels]
    c = {'correct': flags.count(False), 'incorrect': flags.count(True),
         'unparsed': flags.count(None)}
    if unparsed_as == 'correct':
        c['correct'] += c['unparsed']
    return c


def _ratio(num, den) -> Optional[float]:
    return float(num) / den if den else None


def question_counts(records: List[dict], unparsed_as: str = 'excluded') -> np.ndarray:
    """Array (questions × 4): correct, incorrect, unparsed sentences and responses of each."""
    rows = []
    for rec in records:
        per = [count_labels([s['label'] for s in a['sentences']], unparsed_as)
               for a in rec['annotations']]
        rows.append([sum(c[k] for c in per) for k in ('correct', 'incorrect', 'unparsed')]
                    + [len(per)])
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def bootstrap_interval(correct: Sequence[int], incorrect: Sequence[int], n_boot: int = 1000,
                       seed: int = 0, confidence: float = 0.95):
    """Percentile bootstrap (over questions) of the pooled score Σcorrect / Σ(correct +
    incorrect); (None, None) without any scored sentence."""
    correct, incorrect = np.asarray(correct, float), np.asarray(incorrect, float)
    if len(correct) == 0 or (correct + incorrect).sum() == 0:
        return None, None
    idx = np.random.default_rng(seed).integers(0, len(correct), size=(n_boot, len(correct)))
    c, t = correct[idx].sum(1), (correct + incorrect)[idx].sum(1)
    scores = c[t > 0] / t[t > 0]  # a resample with no scored sentence has no score
    alpha = (1 - confidence) / 2
    return float(np.quantile(scores, alpha)), float(np.quantile(scores, 1 - alpha))


def run_metrics(records: List[dict], unparsed_as: str = 'excluded', n_boot: int = 1000,
                seed: int = 0, confidence: float = 0.95) -> dict:
    """All metrics of one run (see the module docstring) from tools/annotate.py records."""
    per_resp = [count_labels([s['label'] for s in a['sentences']], unparsed_as)
                for rec in records for a in rec['annotations']]
    resp_scores = [_ratio(c['correct'], c['correct'] + c['incorrect']) for c in per_resp]
    resp_scores = [s for s in resp_scores if s is not None]
    q = question_counts(records, unparsed_as)
    C, I, U, R = (int(x) for x in q.sum(0))
    lo, hi = bootstrap_interval(q[:, 0], q[:, 1], n_boot, seed, confidence)
    labels = label_counts(s['label'] for rec in records for a in rec['annotations']
                          for s in a['sentences'])
    n_sent = sum(labels.values())
    return {'score': _ratio(C, C + I), 'ci_low': lo, 'ci_high': hi,
            'mean_response_score': float(np.mean(resp_scores)) if resp_scores else None,
            'n_questions': len(records), 'n_responses': R,
            'n_responses_unscored': R - len(resp_scores), 'n_sentences': n_sent,
            'n_correct': C, 'n_incorrect': I, 'n_unparsed': U,
            'sentences_per_response': _ratio(n_sent, R), 'correct_per_response': _ratio(C, R),
            'incorrect_per_response': _ratio(I, R), 'unparsed_per_response': _ratio(U, R),
            'labels': labels,
            'settings': {'unparsed_as': unparsed_as, 'n_boot': n_boot, 'seed': seed,
                         'confidence': confidence}}


def aggregate(runs: List[dict], keys: Sequence[str] = METRICS) -> dict:
    """For each metric: ``mean``, ``std`` (ddof 1, None for one run) and ``n`` over the runs
    where it is defined."""
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in runs if r.get(k) is not None], dtype=float)
        out[k] = {'mean': float(vals.mean()) if len(vals) else None,
                  'std': float(vals.std(ddof=1)) if len(vals) > 1 else None,
                  'n': int(len(vals))}
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; None is shown as 'n/a'."""
    cell = (lambda x: 'n/a' if x is None else str(x))
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(cell(x) for x in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def _num(x, digits=2, scale=1.0) -> str:
    return 'n/a' if x is None else f'{x * scale:.{digits}f}'


def score_cell(runs: List[dict], agg: dict) -> str:
    """The score in percent: with one run ``77.53 [75.10, 79.92]`` (bootstrap interval),
    with several ``77.53 ± 1.20`` (mean ± std over runs)."""
    if len(runs) == 1:
        r = runs[0]
        return (f'{_num(r["score"], scale=100)} '
                f'[{_num(r["ci_low"], scale=100)}, {_num(r["ci_high"], scale=100)}]')
    s = agg['score']
    return f'{_num(s["mean"], scale=100)} ± {_num(s["std"], scale=100)}'


def mean_cell(agg: dict, key: str, digits: int = 2) -> str:
    """``mean`` of a metric over runs, ``± std`` added when there are several runs."""
    m = agg[key]
    return _num(m['mean'], digits) + (f' ± {_num(m["std"], digits)}' if m['n'] > 1 else '')


SUMMARY_HEADER = ('Score % (95% CI or ± std)', 'Sent./resp.', 'Cor./resp.', 'Inc./resp.',
                  'Unparsed', '# Cor.', '# Inc.', 'Runs')


def summary_cells(runs: List[dict], agg: Optional[dict] = None) -> List[str]:
    """One table row (SUMMARY_HEADER) summarising one or several runs of a model."""
    agg = agg or aggregate(runs)
    return [score_cell(runs, agg), mean_cell(agg, 'sentences_per_response'),
            mean_cell(agg, 'correct_per_response'), mean_cell(agg, 'incorrect_per_response'),
            mean_cell(agg, 'n_unparsed', 1), mean_cell(agg, 'n_correct', 1),
            mean_cell(agg, 'n_incorrect', 1), str(len(runs))]
