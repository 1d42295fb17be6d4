"""ANAH evaluation metrics from annotated responses (paper §4), one run or several.

For one run (all responses of all test questions), with C, I, U the numbers of correct
(ok, nofact), incorrect (contradictory, unverifiable) and unparsed sentences, N = C + I + U
and R responses:

* ``score_official`` (the paper's ANAH score, the official ``eval/anah_v2/eval.py``) =
  1 − I / N, pooled over sentences: an unparsed judge answer stays in N and so counts as
  correct, exactly as the official code does.
* ``score_parsed`` = C / (C + I): the unparsed sentences left out (this project's stricter
  variant; it equals ``score_official`` when U = 0).
* ``score`` = one of the two, chosen by ``unparsed_as``: ``'correct'`` (the default, the
  paper's) gives ``score_official``, ``'excluded'`` gives ``score_parsed``.
* ``share_<label>`` = count / N for ok, nofact, contradictory, unverifiable, unparsed (they sum
  to 1). ``nofact`` counts as correct in both scores, so padding an answer with no-fact
  sentences raises them: the nofact share shows it.
* ``mean_response_score`` = mean over responses of c_r / (c_r + i_r) (unparsed counted as
  ``unparsed_as`` says; responses with no scored sentence are left out and counted in
  ``n_responses_unscored``).
* totals ``n_correct`` (C, plus U with ``unparsed_as='correct'``), ``n_incorrect`` (I),
  ``n_unparsed`` (U), ``n_sentences`` (N) and ``*_per_response`` = total / R.
* ``ci_low``, ``ci_high`` (of ``score``) and ``official_ci_low``, ``official_ci_high``:
  percentile bootstrap over questions: resample the questions with replacement ``n_boot``
  times (numpy RNG seeded with ``seed``), recompute the pooled ratio of each resample, take the
  (1 ± confidence)/2 quantiles (:func:`ratio_bootstrap`).
* ``per_question``: ``{"ids": [...], "counts": [[ok, nofact, contradictory, unverifiable,
  unparsed, responses], ...]}``, so that runs can be pooled over seeds and compared question
  by question later (maskdpo_xtuner/evaluation/compare.py).
* ``provenance``: what must be equal before two runs are compared: the question set (ids and
  a digest of question + document), the decoding settings, the system prompt, the evaluated
  model and the judge (given by the caller, see :func:`run_metrics`).

Across runs (seeds), ``aggregate`` gives each numeric metric's mean and sample standard
deviation (ddof = 1; None for a single run).
"""
import hashlib
import json
from typing import Dict, List, Optional, Sequence

import numpy as np

from maskdpo_xtuner.annotate.score import is_hallucinated_label, label_counts
from maskdpo_xtuner.labels import ANNOTATOR_LABELS

UNPARSED_AS = ('correct', 'excluded')   # the first is the paper's (official eval.py)
LABELS = ('ok', 'nofact', 'contradictory', 'unverifiable', 'unparsed')
assert set(LABELS) == set(ANNOTATOR_LABELS)
# the numeric metrics of one run, in display order
METRICS = ('score', 'ci_low', 'ci_high', 'score_official', 'official_ci_low',
           'official_ci_high', 'score_parsed', 'mean_response_score', 'n_questions',
           'n_responses', 'n_responses_unscored', 'n_sentences', 'n_correct', 'n_incorrect',
           'n_unparsed', 'sentences_per_response', 'correct_per_response',
           'incorrect_per_response', 'unparsed_per_response',
           *(f'share_{lab}' for lab in LABELS))


def count_labels(labels: Sequence[str], unparsed_as: str = 'correct') -> Dict[str, int]:
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


def question_counts(records: List[dict], unparsed_as: str = 'correct') -> np.ndarray:
    """Array (questions × 4): correct, incorrect, unparsed sentences and responses of each."""
    rows = []
    for rec in records:
        per = [count_labels([s['label'] for s in a['sentences']], unparsed_as)
               for a in rec['annotations']]
        rows.append([sum(c[k] for c in per) for k in ('correct', 'incorrect', 'unparsed')]
                    + [len(per)])
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def question_label_counts(records: List[dict]) -> np.ndarray:
    """Array (questions × 6): the five LABELS' sentence counts and the responses of each."""
    rows = []
    for rec in records:
        row = [0] * (len(LABELS) + 1)
        for j, a in enumerate(rec['annotations']):
            for k, s in enumerate(a['sentences']):
                if s['label'] not in LABELS:
                    raise ValueError(f'record {rec.get("id")!r}: annotations[{j}].sentences'
                                     f'[{k}].label = {s["label"]!r}, expected one of {LABELS}')
                row[LABELS.index(s['label'])] += 1
        row[-1] = len(rec['annotations'])
        rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, len(LABELS) + 1)


def official_parts(counts: np.ndarray):
    """(numerator, denominator) per question of the paper's score 1 − I / N."""
    counts = np.asarray(counts)
    n = counts[:, :5].sum(1)
    return n - counts[:, 2] - counts[:, 3], n


def parsed_parts(counts: np.ndarray):
    """(numerator, denominator) per question of C / (C + I), unparsed left out."""
    counts = np.asarray(counts)
    c = counts[:, 0] + counts[:, 1]
    return c, c + counts[:, 2] + counts[:, 3]


def resample_weights(n_items: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot × n_items) multiplicities of each item in ``n_boot`` resamples with replacement
    (numpy RNG seeded with ``seed``). Use the same weights for two models to pair them."""
    idx = np.random.default_rng(seed).integers(0, n_items, size=(n_boot, n_items))
    w = np.zeros((n_boot, n_items))
    np.add.at(w, (np.arange(n_boot)[:, None], idx), 1)
    return w


def _quantiles(values: np.ndarray, confidence: float):
    values = values[~np.isnan(values)]  # a resample with an empty denominator has no value
    if not len(values):
        return None, None
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def _boot_ratio(w: np.ndarray, num, den) -> np.ndarray:
    n, d = w @ np.asarray(num, float), w @ np.asarray(den, float)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def ratio_bootstrap(num, den, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95):
    """Percentile bootstrap interval (resampling items) of the pooled ratio Σnum / Σden;
    (None, None) when there is no item or Σden = 0."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if len(num) == 0 or den.sum() == 0:
        return None, None
    return _quantiles(_boot_ratio(resample_weights(len(num), n_boot, seed), num, den),
                      confidence)


def paired_ratio_bootstrap(a, b, n_boot: int = 1000, seed: int = 0,
                           confidence: float = 0.95) -> dict:
    """Difference of two pooled ratios Σnum_a/Σden_a − Σnum_b/Σden_b over the SAME items
    (``a`` and ``b`` are (num, den) pairs aligned item by item), with a percentile interval
    that resamples items once for both, and ``p_le_0`` / ``p_ge_0``: the share of resamples
    whose difference is ≤ 0 / ≥ 0 (a one-sided bootstrap p-value)."""
    (na, da), (nb, db) = [tuple(np.asarray(x, float) for x in ab) for ab in (a, b)]
    if not (len(na) == len(da) == len(nb) == len(db)):
        raise ValueError('paired_ratio_bootstrap: both sides need the same items')
    point = (_ratio(na.sum(), da.sum()), _ratio(nb.sum(), db.sum()))
    if None in point:
        return {'diff': None, 'ci_low': None, 'ci_high': None, 'p_le_0': None, 'p_ge_0': None}
    w = resample_weights(len(na), n_boot, seed)
    d = _boot_ratio(w, na, da) - _boot_ratio(w, nb, db)
    lo, hi = _quantiles(d, confidence)
    d = d[~np.isnan(d)]
    return {'diff': point[0] - point[1], 'ci_low': lo, 'ci_high': hi,
            'p_le_0': float((d <= 0).mean()), 'p_ge_0': float((d >= 0).mean())}


def seeded_paired_bootstrap(pairs_by_seed, n_boot: int = 2000, seed: int = 0,
                            confidence: float = 0.95) -> dict:
    """Mean over training seeds of a paired difference of pooled ratios, with a percentile
    interval that resamples questions **within** each seed (independently per seed, the same
    questions for both sides of a seed): ``pairs_by_seed`` = [((num_a, den_a), (num_b, den_b)),
    ...] aligned question by question inside each seed. Also each seed's own difference and
    how many are positive. (Seed-to-seed spread beyond the questions shows in ``per_seed``.)"""
    per_seed, boots = [], []
    for i, (a, b) in enumerate(pairs_by_seed):
        (na, da), (nb, db) = [tuple(np.asarray(x, float) for x in ab) for ab in (a, b)]
        if not (len(na) == len(da) == len(nb) == len(db)):
            raise ValueError('seeded_paired_bootstrap: both sides need the same questions')
        point = (_ratio(na.sum(), da.sum()), _ratio(nb.sum(), db.sum()))
        if None in point:
            return {'diff': None, 'ci_low': None, 'ci_high': None, 'per_seed': [],
                    'seeds_positive': 0, 'seeds': len(pairs_by_seed)}
        per_seed.append(point[0] - point[1])
        w = resample_weights(len(na), n_boot, seed + 7919 * i)
        boots.append(_boot_ratio(w, na, da) - _boot_ratio(w, nb, db))
    lo, hi = _quantiles(np.mean(boots, axis=0), confidence)
    return {'diff': float(np.mean(per_seed)), 'ci_low': lo, 'ci_high': hi,
            'per_seed': per_seed, 'seeds_positive': int(sum(d > 0 for d in per_seed)),
            'seeds': len(per_seed)}


def bootstrap_interval(correct: Sequence[int], incorrect: Sequence[int], n_boot: int = 1000,
                       seed: int = 0, confidence: float = 0.95):
    """Percentile bootstrap (over questions) of the pooled score Σcorrect / Σ(correct +
    incorrect); (None, None) without any scored sentence."""
    correct = np.asarray(correct, float)
    return ratio_bootstrap(correct, correct + np.asarray(incorrect, float), n_boot, seed,
                           confidence)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False)
                          .encode('utf-8')).hexdigest()[:16]


def _unique(values):
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out[0] if len(out) == 1 else out or None


def run_provenance(records: List[dict], judge: Optional[dict] = None) -> dict:
    """What a comparison must hold equal, from tools/sample.py + tools/annotate.py records:
    the question set, decoding (``sampling`` without its seed), system prompt, model, judge."""
    def system(rec):
        return [m['content'] for m in rec.get('prompt') or [] if m.get('role') == 'system']

    sampling = [{k: v for k, v in (rec.get('sampling') or {}).items() if k != 'seed'}
                for rec in records]
    return {'questions': {'n': len(records),
                          'digest': _digest(sorted([str(r.get('id')), r.get('question'),
                                                    r.get('document')] for r in records))},
            'decoding': _unique(sampling), 'system_prompt': _unique(map(system, records)),
            'model': _unique(rec.get('model') for rec in records), 'judge': judge}


def run_metrics(records: List[dict], unparsed_as: str = 'correct', n_boot: int = 1000,
                seed: int = 0, confidence: float = 0.95, judge: Optional[dict] = None) -> dict:
    """All metrics of one run (see the module docstring) from tools/annotate.py records.
    ``judge``: the annotator's settings (name, model, templates, ...) to store in the
    provenance; None records it as unknown."""
    per_resp = [count_labels([s['label'] for s in a['sentences']], unparsed_as)
                for rec in records for a in rec['annotations']]
    resp_scores = [_ratio(c['correct'], c['correct'] + c['incorrect']) for c in per_resp]
    resp_scores = [s for s in resp_scores if s is not None]
    q = question_counts(records, unparsed_as)
    C, I, U, R = (int(x) for x in q.sum(0))
    qc = question_label_counts(records)
    off, par = official_parts(qc), parsed_parts(qc)
    lo, hi = bootstrap_interval(q[:, 0], q[:, 1], n_boot, seed, confidence)
    olo, ohi = ratio_bootstrap(*off, n_boot, seed, confidence)
    labels = label_counts(s['label'] for rec in records for a in rec['annotations']
                          for s in a['sentences'])
    n_sent = sum(labels.values())
    return {'score': _ratio(C, C + I), 'ci_low': lo, 'ci_high': hi,
            'score_official': _ratio(off[0].sum(), off[1].sum()),
            'official_ci_low': olo, 'official_ci_high': ohi,
            'score_parsed': _ratio(par[0].sum(), par[1].sum()),
            'mean_response_score': float(np.mean(resp_scores)) if resp_scores else None,
            'n_questions': len(records), 'n_responses': R,
            'n_responses_unscored': R - len(resp_scores), 'n_sentences': n_sent,
            'n_correct': C, 'n_incorrect': I, 'n_unparsed': U,
            'sentences_per_response': _ratio(n_sent, R), 'correct_per_response': _ratio(C, R),
            'incorrect_per_response': _ratio(I, R), 'unparsed_per_response': _ratio(U, R),
            **{f'share_{lab}': _ratio(labels[lab], n_sent) for lab in LABELS},
            'labels': labels,
            'per_question': {'ids': [r.get('id') for r in records], 'columns': [*LABELS,
                                                                                'responses'],
                             'counts': qc.tolist()},
            'provenance': run_provenance(records, judge),
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


def pooled_counts(runs: List[dict]):
    """(question ids, counts summed over the runs question by question) of runs of one model
    (seeds); the runs must hold the same questions."""
    ids = None
    total = None
    for i, r in enumerate(runs):
        pq = r.get('per_question')
        if pq is None:
            raise ValueError(f'run {r.get("run", i)!r} has no per_question counts (written by '
                             'an older maskdpo_xtuner.evaluation.metrics): re-run the metrics')
        order = {q: k for k, q in enumerate(pq['ids'])}
        if ids is None:
            ids, total = list(pq['ids']), np.array(pq['counts'], dtype=np.int64)
            continue
        if set(order) != set(ids):
            raise ValueError(f'run {r.get("run", i)!r} holds other questions than the first run')
        total = total + np.array(pq['counts'], dtype=np.int64)[[order[q] for q in ids]]
    return ids, total


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; None is shown as 'n/a'."""
    cell = (lambda x: 'n/a' if x is None else str(x))
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(cell(x) for x in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def num(x, digits=2, scale=1.0) -> str:
    return 'n/a' if x is None else f'{x * scale:.{digits}f}'


def interval_cell(point, lo, hi, scale=100.0) -> str:
    """``77.53 [75.10, 79.92]``."""
    return f'{num(point, scale=scale)} [{num(lo, scale=scale)}, {num(hi, scale=scale)}]'


def mean_cell(agg: dict, key: str, digits: int = 2) -> str:
    """``mean`` of a metric over runs, ``± std`` added when there are several runs."""
    m = agg[key]
    return num(m['mean'], digits) + (f' ± {num(m["std"], digits)}' if m['n'] > 1 else '')


SHARE_ORDER = ('ok', 'contradictory', 'unverifiable', 'nofact', 'unparsed')
SUMMARY_HEADER = ("ANAH score % [95% CI] (paper's: 1 − inc./all, unparsed = correct; "
                  'pooled over runs)', 'Score % excl. unparsed (cor./(cor.+inc.))',
                  'Paper score ± std over runs', 'Sent./resp.', 'Cor./resp.', 'Inc./resp.',
                  'ok %', 'contra. %', 'unverif. %', 'nofact %', 'unparsed %', '# Cor.',
                  '# Inc.', 'Runs')


def summary_cells(runs: List[dict], agg: Optional[dict] = None, n_boot: Optional[int] = None,
                  seed: Optional[int] = None, confidence: Optional[float] = None) -> List[str]:
    """One table row (SUMMARY_HEADER) summarising one or several runs (seeds) of a model: the
    paper's score pooled over all runs' sentences with a bootstrap interval over questions
    (question counts summed over runs), the parsed-only score pooled the same way, the spread
    of the per-run paper scores, means over runs of the per-response counts, and the label
    shares of all runs' sentences together. The bootstrap settings default to the first
    run's."""
    agg = agg or aggregate(runs)
    st = runs[0].get('settings', {})  # the bootstrap settings of the runs unless given
    n_boot = st.get('n_boot', 1000) if n_boot is None else n_boot
    seed = st.get('seed', 0) if seed is None else seed
    confidence = st.get('confidence', 0.95) if confidence is None else confidence
    _, counts = pooled_counts(runs)
    off, par = official_parts(counts), parsed_parts(counts)
    sent = counts[:, :5].sum()
    std = agg['score_official']['std']
    return [interval_cell(_ratio(off[0].sum(), off[1].sum()),
                          *ratio_bootstrap(*off, n_boot, seed, confidence)),
            num(_ratio(par[0].sum(), par[1].sum()), scale=100),
            'n/a (1 run)' if std is None else
            f'{num(agg["score_official"]["mean"], scale=100)} ± {num(std, scale=100)}',
            mean_cell(agg, 'sentences_per_response'), mean_cell(agg, 'correct_per_response'),
            mean_cell(agg, 'incorrect_per_response'),
            *(num(_ratio(counts[:, LABELS.index(lab)].sum(), sent), 1, 100)
              for lab in SHARE_ORDER),
            mean_cell(agg, 'n_correct', 1), mean_cell(agg, 'n_incorrect', 1), str(len(runs))]
