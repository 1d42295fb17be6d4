"""The exact judges audited against sentences labelled by reading (tools/audit_judge.py).

An audit set is a JSONL file of sentences drawn at random from real answers (:func:`draw`),
each labelled by a person who read it, without the judge's verdict in view:

    {"question": "country-KE", "country": "KE" | "city": "184745", "decoding": "greedy",
     "sentence": "...", "truth": "hallucinated" | "ok" | "nofact", "reason": "one line"}

``truth``: ``hallucinated`` if the sentence states something false (by the reader's
knowledge, not by the data), ``ok`` if it states checkable facts and all are true,
``nofact`` if it states nothing checkable. :func:`audit` runs the judge on every sentence
and compares:

* **hallucinated** as the scores count it (judge says ``contradictory`` or
  ``unverifiable``): precision (of the sentences the judge counts wrong, the share that are
  false) and recall (of the false sentences, the share it counts wrong);
* **contradictory** alone: precision and recall of the judge's *proven* wrong claims;
* **ok**: precision (of the sentences it passes as checked right, the share that are true
  and state a fact) and recall (of the true fact sentences, the share it passes);
* the share of claim sentences it could check, and the full confusion table.
"""
import random
from collections import Counter
from typing import Dict, List, Optional

from maskdpo_xtuner.annotate.base import SentenceTask
from maskdpo_xtuner.io.jsonl import read_jsonl

TRUTHS = ('hallucinated', 'ok', 'nofact')
JUDGE_LABELS = ('contradictory', 'unverifiable', 'ok', 'nofact')
ENTITY_FIELD = {'countries': 'country', 'cities': 'city'}
JUDGES = {'countries': 'maskdpo_xtuner.studies.real.countries:CountryJudge',
          'cities': 'maskdpo_xtuner.studies.real.cities:CityJudge'}


def draw(answer_files: Dict[str, str], n: int, seed: int = 0) -> List[dict]:
    """``n`` sentences drawn at random (seeded) from the answers of ``answer_files``
    ({decoding: sampler output}), with what the judges need; no label."""
    from maskdpo_xtuner.annotate.split import split_sentences
    pool = []
    for decoding, path in answer_files.items():
        for rec in read_jsonl(path):
            for j, resp in enumerate(rec['responses']):
                for s in split_sentences(resp, lang='en'):
                    item = {'question': rec['id'], 'decoding': decoding, 'response': j,
                            'start': s.start, 'sentence': s.text}
                    for f in ('country', 'city'):
                        if f in rec:
                            item[f] = rec[f]
                    pool.append(item)
    return random.Random(f'audit-{seed}').sample(pool, min(n, len(pool)))


def judge_labels(items: List[dict], judge: str) -> List[str]:
    """The judge's label of every audit sentence."""
    from maskdpo_xtuner.annotate import load_annotator
    field = ENTITY_FIELD[judge]
    tasks = [SentenceTask(question='', sentence=x['sentence'],
                          meta={'id': x['question'], 'record': {field: x[field]}})
             for x in items]
    return [lab.label for lab in load_annotator(JUDGES[judge]).annotate(tasks)]


def _pr(pred: List[bool], true: List[bool]) -> dict:
    tp = sum(p and t for p, t in zip(pred, true))
    npred, ntrue = sum(pred), sum(true)
    return {'precision': tp / npred if npred else None, 'recall': tp / ntrue if ntrue else None,
            'predicted': npred, 'actual': ntrue, 'both': tp}


def audit(items: List[dict], judge: str) -> dict:
    """Precision, recall and the confusion table of ``judge`` on labelled ``items``."""
    bad = [i for i, x in enumerate(items) if x.get('truth') not in TRUTHS]
    if bad:
        raise ValueError(f'audit items {bad[:10]}: "truth" must be one of {TRUTHS}')
    labels = judge_labels(items, judge)
    truth = [x['truth'] for x in items]
    hal = [t == 'hallucinated' for t in truth]
    checked = sum(x in ('ok', 'contradictory') for x in labels)
    claims = checked + labels.count('unverifiable')
    return {'sentences': len(items),
            'truth': dict(Counter(truth)),
            'judge': dict(Counter(labels)),
            'hallucinated': _pr([x in ('contradictory', 'unverifiable') for x in labels], hal),
            'contradictory': _pr([x == 'contradictory' for x in labels], hal),
            'ok': _pr([x == 'ok' for x in labels], [t == 'ok' for t in truth]),
            'checked_share': checked / claims if claims else None,
            'confusion': {t: {j: sum(1 for a, b in zip(truth, labels) if a == t and b == j)
                              for j in JUDGE_LABELS} for t in TRUTHS},
            'disagreements': [dict(x, judge=lab) for x, lab in zip(items, labels)
                              if (lab in ('contradictory', 'unverifiable'))
                              != (x['truth'] == 'hallucinated')
                              or (lab == 'ok') != (x['truth'] == 'ok')]}


def _pct(x):
    return 'n/a' if x is None else f'{100 * x:.1f}%'


def format_audit(name: str, a: dict) -> str:
    lines = [f'## {name}: {a["sentences"]} sentences labelled by reading',
             f'truth: {a["truth"]}; judge: {a["judge"]}', '',
             '| judge verdict | precision | recall | (judge says / truth / both) |',
             '|---|---|---|---|']
    for key, what in (('hallucinated', 'hallucinated (contradictory + unverifiable)'),
                      ('contradictory', 'contradictory (a checked claim is wrong)'),
                      ('ok', 'ok (every claim checked right)')):
        m = a[key]
        lines.append(f'| {what} | {_pct(m["precision"])} | {_pct(m["recall"])} | '
                     f'{m["predicted"]} / {m["actual"]} / {m["both"]} |')
    lines += ['', f'claim sentences the judge could check: {_pct(a["checked_share"])}', '',
              '| truth \\ judge | ' + ' | '.join(JUDGE_LABELS) + ' |',
              '|---|' + '---|' * len(JUDGE_LABELS)]
    for t, row in a['confusion'].items():
        lines.append(f'| {t} | ' + ' | '.join(str(row[j]) for j in JUDGE_LABELS) + ' |')
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------ ANAH-v2 against the exact judge
ANAH_LABELS = ('ok', 'nofact', 'contradictory', 'unverifiable', 'unparsed')


def cohen_kappa(pairs) -> Optional[float]:
    """Cohen's kappa of two raters' labels ``[(a, b), ...]``: (p_o - p_e) / (1 - p_e);
    None without pairs, 1.0 when chance agreement is 1 and they agree."""
    pairs = list(pairs)
    if not pairs:
        return None
    n = len(pairs)
    po = sum(a == b for a, b in pairs) / n
    ca, cb = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / n ** 2
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def _sentences(records):
    return {(r['id'], j, s['start']): s for r in records
            for j, a in enumerate(r['annotations']) for s in a['sentences']}


def judge_agreement(anah_records: List[dict], exact_records: List[dict]) -> dict:
    """The ANAH-v2 judge's labels against the exact judge's, sentence by sentence, under the
    parsing it ran with and (from ``trace.other_parsing``) the other one: unparsed share,
    the confusion table, and Cohen's kappa of hallucinated-or-not over the parsed sentences
    (and over all sentences, an unparsed one counted as correct, as the paper's score does)."""
    exact = _sentences(exact_records)
    out = {}
    rows = [(s, exact[k]['label']) for k, s in _sentences(anah_records).items() if k in exact]
    parsings = {}
    for s, e in rows:
        trace = s.get('trace') or {}
        mine = trace.get('parsing', 'run')
        parsings.setdefault(mine, []).append((s['label'], e))
        other = trace.get('other_parsing')
        if other:
            parsings.setdefault(other['parsing'], []).append((other['label'], e))
    for parsing, pairs in parsings.items():
        reached = [(a, e) for a, e in pairs if a is not None]
        parsed = [(a, e) for a, e in reached if a != 'unparsed']
        hal = (lambda x: x in ('contradictory', 'unverifiable'))  # noqa: E731
        out[parsing] = {
            'sentences': len(pairs), 'not_reached': len(pairs) - len(reached),
            'unparsed': len(reached) - len(parsed),
            'unparsed_share': (len(reached) - len(parsed)) / len(reached) if reached else None,
            'agreement': (sum(hal(a) == hal(e) for a, e in parsed) / len(parsed)
                          if parsed else None),
            'kappa': cohen_kappa((hal(a), hal(e)) for a, e in parsed),
            'kappa_unparsed_as_correct': cohen_kappa((hal(a), hal(e)) for a, e in reached),
            'confusion': {a: {e: sum(1 for x, y in reached if x == a and y == e)
                              for e in JUDGE_LABELS} for a in ANAH_LABELS}}
    return out


def format_agreement(agr: dict) -> str:
    lines = []
    for parsing, a in agr.items():
        k = 'n/a' if a['kappa'] is None else f'{a["kappa"]:.3f}'
        k2 = 'n/a' if a['kappa_unparsed_as_correct'] is None else \
            f'{a["kappa_unparsed_as_correct"]:.3f}'
        lines += [f'### ANAH-v2 parsing: {parsing}', '',
                  f'{a["sentences"]} sentences ({a["not_reached"]} not reached by this parsing); '
                  f'unparsed {a["unparsed"]} ({_pct(a["unparsed_share"])}); hallucinated-or-not '
                  f'agreement with the exact judge {_pct(a["agreement"])} of the parsed, '
                  f"Cohen's kappa {k} (unparsed counted correct: {k2})", '',
                  '| ANAH-v2 \\ exact | ' + ' | '.join(JUDGE_LABELS) + ' |',
                  '|---|' + '---|' * len(JUDGE_LABELS)]
        lines += [f'| {lab} | ' + ' | '.join(str(row[j]) for j in JUDGE_LABELS) + ' |'
                  for lab, row in a['confusion'].items()]
        lines.append('')
    return '\n'.join(lines)
