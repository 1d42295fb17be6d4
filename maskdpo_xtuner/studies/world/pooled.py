"""A study over several worlds, pooled: results.md, results.json, results.png.

Every world (world seed W, base-model seed B) is one study (study.py) over training seeds S; here
the runs are pooled. Each method is compared with its reference (Mask-DPO with DPO) in **pairs**:
the same world, base model and training seed, hence the same pairs file. For every pair the
difference of scores is taken; reported are its mean and two 95% Student-t intervals:

* over pairs (n = worlds x seeds): treats the pairs as independent; they are not quite (the
  seeds of one world share its base model), so this interval is the narrower, optimistic one;
* over worlds (n = worlds): the per-world mean difference is one observation; the interval for
  the *mean* over worlds like these;

a 95% **prediction interval for a new world** (mean ± t · sd · sqrt(1 + 1/n) over the per-world
means: where one more world, drawn like these, should land; wider than the interval for the
mean, and the one to read as "what will my rerun show"), and the share of worlds (and of pairs)
where the difference is positive.

The ``masks`` study (``write_masks``) relates the gap to the world's properties (properties.py,
measured on train topics): the property is chosen on **validation** topics (largest |Pearson r|
between it and the in-domain sampled gap over all (world, seed) runs) and then reported on test.
"""
import os
from typing import Dict, List

import numpy as np

from maskdpo_xtuner.studies.world.properties import PROPERTIES
from maskdpo_xtuner.studies.world.results import METRICS, aggregate_results
from maskdpo_xtuner.pipeline.stages import write_json

REFERENCE = {'main': 'dpo', 'ablation': 'none (DPO)', 'scaling': 'all topics x 3q'}
CELLS = [(s, d) for s in ('in-domain', 'ood') for d in ('greedy', 'sampled')]
SELECT = ('in-domain', 'sampled')  # the gap a property must explain (as the lr choice)


def world_label(doc: dict) -> str:
    return f'w{doc["world"]}' + ('' if doc['base_seed'] == doc['world'] else f'-b{doc["base_seed"]}')


def interval(values) -> dict:
    """Mean and 95% Student-t interval (None for fewer than two values)."""
    from scipy import stats
    v = np.asarray(values, dtype=float)
    out = {'mean': float(v.mean()), 'n': int(len(v)), 'low': None, 'high': None}
    if len(v) > 1:
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        out.update(low=float(v.mean() - half), high=float(v.mean() + half))
    return out


def prediction_interval(values) -> dict:
    """95% Student-t prediction interval for one more draw (None for fewer than two values)."""
    from scipy import stats
    v = np.asarray(values, dtype=float)
    out = {'mean': float(v.mean()), 'n': int(len(v)), 'low': None, 'high': None}
    if len(v) > 1:
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) * np.sqrt(1 + 1 / len(v))
        out.update(low=float(v.mean() - half), high=float(v.mean() + half))
    return out


def fit(x, y) -> dict:
    """Least-squares line y = intercept + slope x with the slope's 95% t-interval and Pearson r
    (None where fewer than 3 points or no spread)."""
    from scipy import stats
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = {'r': None, 'slope': None, 'intercept': None, 'low': None, 'high': None,
           'n': int(len(x))}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    res = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * res.stderr
    out.update(r=float(res.rvalue), slope=float(res.slope), intercept=float(res.intercept),
               low=float(res.slope - half), high=float(res.slope + half))
    return out


def gaps(doc: dict, arm: str, ref: str, set_name: str, dec: str, metric: str = 'score'):
    """seed -> arm minus ref, one world."""
    return {s: per['results'][arm][set_name][dec][metric] - per['results'][ref][set_name][dec][metric]
            for s, per in doc['per_seed'].items()}


def paired(docs: List[dict], arm: str, ref: str, set_name: str, dec: str) -> dict:
    per_world = {world_label(d): list(gaps(d, arm, ref, set_name, dec).values()) for d in docs}
    flat = [g for gs in per_world.values() for g in gs]
    means = {w: float(np.mean(gs)) for w, gs in per_world.items()}
    return {'pairs': interval(flat), 'worlds': interval(list(means.values())),
            'new_world': prediction_interval(list(means.values())),
            'per_world': means, 'per_pair': per_world,
            'worlds_positive': sum(m > 0 for m in means.values()) / len(means),
            'pairs_positive': sum(g > 0 for g in flat) / len(flat)}


def pooled_answers(docs: List[dict]) -> dict:
    """arm -> set -> decoding -> answer statistics averaged over worlds and seeds."""
    out: Dict = {}
    runs = [per['answers'] for d in docs for per in d['per_seed'].values()]
    for arm in runs[0]:
        out[arm] = {}
        for set_name, decs in runs[0][arm].items():
            out[arm][set_name] = {}
            for dec, st in decs.items():
                rows = [r[arm][set_name][dec] for r in runs]
                attrs = sorted({a for r in rows for a in r['attributes']})
                out[arm][set_name][dec] = {
                    **{k: float(np.mean([r[k] for r in rows]))
                       for k in ('sentences', 'facts', 'other_subject')},
                    'attributes': {a: {k: float(np.mean([r['attributes'][a][k] for r in rows
                                                         if a in r['attributes']]))
                                       for k in ('correct', 'wrong', 'absent')} for a in attrs}}
    return out


def pool(docs: List[dict]) -> dict:
    first = docs[0]
    arms = first['arms']
    flat = {f'{world_label(d)}/seed{s}': per for d in docs for s, per in d['per_seed'].items()}
    world_means = {world_label(d): d['aggregate'] for d in docs}
    ref = REFERENCE.get(first['study'])
    comparisons = {}
    if ref in arms:
        for arm, sp in arms.items():
            if sp is not None and arm != ref:
                comparisons[arm] = {f'{s}/{d}': paired(docs, arm, ref, s, d) for s, d in CELLS}
    return {'study': first['study'], 'preset': first['preset'], 'eval_split': first['eval_split'],
            'worlds': [[d['world'], d['base_seed']] for d in docs], 'seeds': first['seeds'],
            'settings': first['settings'], 'arms': arms, 'reference': ref,
            'aggregate': aggregate_results(flat, arms), 'world_means': world_means,
            'paired': comparisons, 'answers': pooled_answers(docs),
            'properties': {world_label(d): {s: per['properties']
                                            for s, per in d['per_seed'].items()} for d in docs},
            'per_world': docs, 'seconds': round(sum(d['seconds'] for d in docs), 1)}


def _spread(doc: dict, arm: str, set_name: str, dec: str, metric: str) -> str:
    """Pooled mean over all runs ± std of the per-world means."""
    m = doc['aggregate'][arm][set_name][dec][metric]['mean']
    if m is None:
        return 'n/a'
    scale, digits = (100, 1) if metric == 'score' else (1, 2)
    ws = [w[arm][set_name][dec][metric]['mean'] for w in doc['world_means'].values()]
    sd = f' ± {np.std(ws, ddof=1) * scale:.{digits}f}' if len(ws) > 1 else ''
    return f'{m * scale:.{digits}f}{sd}'


def _frac(share: float, n: int) -> str:
    return f'{round(share * n)} of {n}'


def _ci(iv: dict) -> str:
    return 'n/a' if iv['low'] is None else f'[{iv["low"] * 100:+.1f}, {iv["high"] * 100:+.1f}]'


def pooled_markdown(doc: dict) -> str:
    labels = list(doc['world_means'])
    lines = [f'# World study: {doc["study"]}, pooled over worlds (preset {doc["preset"]})', '',
             f'Worlds (world seed, base-model seed): {doc["worlds"]}; training seeds '
             f'{doc["seeds"]}; evaluated on the held-out **{doc["eval_split"]}** topics. Cells: '
             'mean over all (world, seed) runs ± std of the per-world means (the spread between '
             'worlds). Score = share of non-hallucinated sentences (%).', '']
    for set_name in ('in-domain', 'ood'):
        lines += [f'## {set_name}', '', '| Model | ' + ' | '.join(
            f'{v} {d}' for d in ('greedy', 'sampled') for v in METRICS.values()) + ' |',
            '|---|' + '---|' * (2 * len(METRICS))]
        for arm in doc['arms']:
            lines.append(f'| {arm} | ' + ' | '.join(_spread(doc, arm, set_name, d, k)
                                                   for d in ('greedy', 'sampled')
                                                   for k in METRICS) + ' |')
        lines.append('')
    for arm, cells in doc['paired'].items():
        lines += [f'## {arm} minus {doc["reference"]} (score points, paired by world and seed)',
                  '', '| Set / decoding | Mean | 95% CI of the mean over worlds | 95% '
                  'prediction interval, a new world | Worlds > 0 | Pairs > 0 | 95% CI over '
                  'pairs | ' + ' | '.join(labels) + ' |',
                  '|---|---|---|---|---|---|---|' + '---|' * len(labels)]
        for cell, p in cells.items():
            lines.append(f'| {cell} | {p["pairs"]["mean"] * 100:+.2f} | {_ci(p["worlds"])} '
                         f'(n={p["worlds"]["n"]}) | {_ci(p["new_world"])} | '
                         f'{_frac(p["worlds_positive"], p["worlds"]["n"])} | '
                         f'{_frac(p["pairs_positive"], p["pairs"]["n"])} | {_ci(p["pairs"])} | '
                         + ' | '.join(f'{p["per_world"][w] * 100:+.1f}' for w in labels) + ' |')
        lines.append('')
    lines += ['## Per world (score, mean ± std over training seeds)', '',
              '| World | Set / decoding | ' + ' | '.join(doc['arms']) + ' |',
              '|---|---|' + '---|' * len(doc['arms'])]
    for w, agg in doc['world_means'].items():
        for s, d in CELLS:
            cells = []
            for arm in doc['arms']:
                m = agg[arm][s][d]['score']
                cells.append(f'{m["mean"] * 100:.1f}' + (f' ± {m["std"] * 100:.1f}'
                                                         if m['std'] is not None else ''))
            lines.append(f'| {w} | {s} {d} | ' + ' | '.join(cells) + ' |')
    lines += ['', '## World properties (train topics, per training seed)', '',
              '| World | Seed | Pairs | ' + ' | '.join(PROPERTIES) + ' |',
              '|---|---|---|' + '---|' * len(PROPERTIES)]
    for w, seeds in doc['properties'].items():
        for s, pr in seeds.items():
            lines.append(f'| {w} | {s} | {pr["pairs"]} | ' + ' | '.join(
                'n/a' if pr[k] is None else f'{pr[k]:.3f}' for k in PROPERTIES) + ' |')
    lines += ['', *answers_markdown(doc['answers'])]
    return '\n'.join(lines) + '\n'


def answers_markdown(answers: dict) -> List[str]:
    """What each model states, per attribute (pooled over worlds and seeds)."""
    arms = list(answers)
    lines = []
    for set_name, dec in (('in-domain', 'greedy'), ('ood', 'greedy'), ('in-domain', 'sampled')):
        first = answers[arms[0]][set_name][dec]
        lines += [f'## What the answers say: {set_name}, {dec} (pooled over worlds and seeds)', '',
                  'Per attribute: % of answers stating it correctly / wrongly (the rest do not '
                  'state it); per answer: sentences, unique correct facts, % about another '
                  'subject.', '', '| Attribute | ' + ' | '.join(arms) + ' |',
                  '|---|' + '---|' * len(arms)]
        for a in first['attributes']:
            lines.append(f'| {a} | ' + ' | '.join(
                f'{answers[arm][set_name][dec]["attributes"][a]["correct"]:.0%} / '
                f'{answers[arm][set_name][dec]["attributes"][a]["wrong"]:.0%}' for arm in arms) + ' |')
        for key, name, fmt in (('sentences', 'sentences per answer', '{:.2f}'),
                               ('facts', 'unique correct facts per answer', '{:.2f}'),
                               ('other_subject', 'answers about another subject', '{:.0%}')):
            lines.append(f'| **{name}** | ' + ' | '.join(
                fmt.format(answers[arm][set_name][dec][key]) for arm in arms) + ' |')
        lines.append('')
    return lines


def arm_scores(doc: dict) -> Dict:
    """arm -> cell -> 95% t-interval of its score: over the per-world means with >= 2 worlds,
    else over the one world's training seeds."""
    out = {}
    for arm in doc['arms']:
        out[arm] = {}
        for s, d in CELLS:
            if len(doc['per_world']) > 1:
                vals = [w[arm][s][d]['score']['mean'] for w in doc['world_means'].values()]
            else:
                vals = [per['results'][arm][s][d]['score']
                        for per in doc['per_world'][0]['per_seed'].values()]
            out[arm][f'{s}/{d}'] = interval(vals)
    return out


def plot_pooled(doc: dict, path: str):
    """Left: every arm's score in and out of domain, greedy and sampled (bars, 95% interval
    over worlds, or over seeds for one world); right: the paired gaps, one dot per run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    comps = list(doc['paired'].items())
    scores = arm_scores(doc)
    over = 'worlds' if len(doc['per_world']) > 1 else 'training seeds'
    fig, axes = plt.subplots(1, 1 + len(comps), figsize=(6.5 + 5 * len(comps), 4.2),
                             squeeze=False)
    ax = axes[0][0]
    arms = list(doc['arms'])
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        ivs = [scores[arm][f'{s}/{d}'] for s, d in CELLS]
        x = np.arange(len(CELLS)) + (k - (len(arms) - 1) / 2) * width
        means = np.array([iv['mean'] for iv in ivs]) * 100
        err = np.array([[0 if iv['low'] is None else iv['mean'] - iv['low'] for iv in ivs],
                        [0 if iv['high'] is None else iv['high'] - iv['mean'] for iv in ivs]])
        bars = ax.bar(x, means, width, yerr=err * 100, capsize=3, label=arm, color=f'C{k}')
        ax.bar_label(bars, fmt='%.0f', fontsize=7, padding=2)
    ax.set_xticks(range(len(CELLS)))
    ax.set_xticklabels([f'{s}\n{d}' for s, d in CELLS], fontsize=8)
    ax.set_ylabel('score (% sentences not hallucinated)')
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc='lower right')
    ax.set_title(f'{doc["eval_split"]} topics, {len(doc["per_world"])} world(s) x '
                 f'{len(doc["seeds"])} seed(s); bars: 95% CI over {over}', fontsize=9)
    for ax, (arm, cells) in zip(axes[0][1:], comps):
        for i, (cell, p) in enumerate(cells.items()):
            for j, (w, gs) in enumerate(p['per_pair'].items()):
                off = (j - (len(p['per_pair']) - 1) / 2) * (0.6 / max(1, len(p['per_pair'])))
                ax.scatter([i + off] * len(gs), np.array(gs) * 100, s=10, color=f'C{j % 10}',
                           alpha=0.7)
            iv = p['worlds'] if p['worlds']['low'] is not None else p['pairs']
            if iv['low'] is not None:
                ax.errorbar([i], [iv['mean'] * 100], yerr=[[(iv['mean'] - iv['low']) * 100],
                                                          [(iv['high'] - iv['mean']) * 100]],
                            fmt='kD', capsize=5, label='mean, 95% CI' if i == 0 else None)
        ax.axhline(0, color='grey', lw=0.8)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([c.replace('/', '\n') for c in cells], fontsize=8)
        ax.set_ylabel(f'{arm} minus {doc["reference"]} (score points)')
        if ax.get_legend_handles_labels()[1]:  # one run has no interval, so nothing to label
            ax.legend(fontsize=7)
        ax.set_title('paired by world and seed; dots: runs, coloured by world', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_pooled(docs: List[dict], out_dir: str) -> dict:
    doc = pool(docs)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, 'results.json'), doc)
    text = pooled_markdown(doc)
    with open(os.path.join(out_dir, 'results.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    plot_pooled(doc, os.path.join(out_dir, 'results.png'))
    print(text)
    return doc
