"""Why does the Mask-DPO minus DPO gap differ from world to world?

One point per world: its mean gap over training seeds, against a property of the world measured
**before** training — the base model's own scores (in domain and out of domain, greedy) and the
properties of its train-topic pairs and samples (properties.py, averaged over the seeds' pair
sets). For every property and every set / decoding: the least-squares slope with its 95%
t-interval and Pearson r (``pooled.fit``). With 10 worlds an interval that excludes zero is
evidence, one that covers it is not: the table says which, and whether it still excludes zero
with each world left out in turn (one world far from the rest can make a slope on its own).

Written beside the pooled results (``spread.md``, ``spread.png``) when there are >= 3 worlds.
"""
import os
from typing import Dict, List

import numpy as np

from maskdpo_xtuner.studies.world.pooled import CELLS, fit, world_label
from maskdpo_xtuner.studies.world.properties import PROPERTIES

BASE_SCORES = {'base_in_domain': ('in-domain', "base model's in-domain score (greedy)"),
               'base_ood': ('ood', "base model's out-of-domain score (greedy)")}
WORLD_PROPERTIES = {**{k: v for k, (_, v) in BASE_SCORES.items()}, **PROPERTIES}
SHOWN = ('ood', 'greedy')  # the cell the plot shows (the question: the OOD lead)


def world_rows(doc: dict, arm: str = 'maskdpo', ref: str = 'dpo') -> List[dict]:
    """Per world: its properties and its mean gap in every cell (score points / 100)."""
    rows = []
    for d in doc['per_world']:
        w = world_label(d)
        row = {'world': w}
        for key, (set_name, _) in BASE_SCORES.items():
            row[key] = doc['world_means'][w]['base'][set_name]['greedy']['score']['mean']
        for p in PROPERTIES:
            vals = [per['properties'][p] for per in d['per_seed'].values()
                    if per['properties'][p] is not None]
            row[p] = float(np.mean(vals)) if vals else None
        for s, dec in CELLS:
            row[f'{s}/{dec}'] = doc['paired'][arm][f'{s}/{dec}']['per_world'][w]
        rows.append(row)
    return rows


def excludes_zero(f: dict) -> bool:
    return f['r'] is not None and not f['low'] <= 0 <= f['high']


def fit_worlds(pts: List[tuple]) -> dict:
    """``pooled.fit`` of (world, property, gap) points. Where the slope's interval excludes 0,
    ``needs``: the first world without which it no longer does (None: it holds without any)."""
    f = fit([x for _, x, _ in pts], [y for _, _, y in pts])
    f['needs'] = None
    if excludes_zero(f):
        for w, _, _ in pts:
            rest = [q for q in pts if q[0] != w]
            if not excludes_zero(fit([x for _, x, _ in rest], [y for _, _, y in rest])):
                f['needs'] = w
                break
    return f


def spread(doc: dict) -> Dict:
    rows = world_rows(doc)
    fits = {}
    for s, dec in CELLS:
        cell = f'{s}/{dec}'
        fits[cell] = {p: fit_worlds([(r['world'], r[p], r[cell]) for r in rows
                                     if r[p] is not None]) for p in WORLD_PROPERTIES}
    return {'rows': rows, 'fits': fits}


def _slope(f: dict) -> str:
    if f['r'] is None:
        return 'n/a'
    excl = ('' if not excludes_zero(f) else ' *' if f['needs'] is None
            else f' * (not without {f["needs"]})')
    return (f'{f["slope"] * 100:+.1f} [{f["low"] * 100:+.1f}, {f["high"] * 100:+.1f}]{excl}, '
            f'r {f["r"]:+.2f}')


def spread_markdown(sp: dict) -> str:
    cells = list(sp['fits'])
    lines = ['# Why the gap differs between worlds', '',
             'One point per world: Mask-DPO minus DPO (mean over training seeds, score points) '
             'against a property measured before training. Cells: least-squares slope in score '
             'points per unit of the property [95% t-interval], Pearson r; * where the interval '
             'excludes 0, "not without wN" where it covers 0 once world N is left out. Of '
             f'{len(WORLD_PROPERTIES) * len(CELLS)} slopes, about '
             f'{0.05 * len(WORLD_PROPERTIES) * len(CELLS):.1f} would exclude 0 by chance.', '',
             '| Property | ' + ' | '.join(cells) + ' |',
             '|---|' + '---|' * len(cells)]
    for p, name in WORLD_PROPERTIES.items():
        lines.append(f'| {p} ({name}) | ' + ' | '.join(_slope(sp['fits'][c][p]) for c in cells)
                     + ' |')
    lines += ['', '## The worlds', '', '| World | ' + ' | '.join(WORLD_PROPERTIES) + ' | '
              + ' | '.join(f'gap {c}' for c in cells) + ' |',
              '|---|' + '---|' * (len(WORLD_PROPERTIES) + len(cells))]
    for r in sp['rows']:
        lines.append(f'| {r["world"]} | ' + ' | '.join(
            'n/a' if r[p] is None else f'{r[p]:.3f}' for p in WORLD_PROPERTIES) + ' | '
            + ' | '.join(f'{r[c] * 100:+.1f}' for c in cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_spread(sp: dict, path: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cell = '/'.join(SHOWN)
    props = list(WORLD_PROPERTIES)
    ncols = min(4, len(props))
    nrows = -(-len(props) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False,
                             sharey=True)
    for ax in axes.flat[len(props):]:
        ax.axis('off')
    for ax, p in zip(axes.flat, props):
        pts = [(r[p], r[cell] * 100, r['world']) for r in sp['rows'] if r[p] is not None]
        ax.scatter([x for x, _, _ in pts], [y for _, y, _ in pts], s=16)
        for x, y, w in pts:
            ax.annotate(w, (x, y), fontsize=6, xytext=(2, 2), textcoords='offset points')
        f = sp['fits'][cell][p]
        if f['r'] is not None:
            xs = np.linspace(min(x for x, _, _ in pts), max(x for x, _, _ in pts), 10)
            ax.plot(xs, (f['intercept'] + f['slope'] * xs) * 100, 'k--', lw=0.8)
        ax.axhline(0, color='grey', lw=0.6)
        ax.set_xlabel(p, fontsize=8)
        ax.set_title('' if f['r'] is None else
                     f'slope {f["slope"] * 100:+.0f} [{f["low"] * 100:+.0f}, '
                     f'{f["high"] * 100:+.0f}]' + ('' if f['needs'] is None else
                                                   f', not without {f["needs"]}'), fontsize=8)
    for row in axes:
        row[0].set_ylabel(f'Mask-DPO minus DPO,\n{SHOWN[0]} {SHOWN[1]} (points)', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_spread(doc: dict, out_dir: str) -> dict:
    sp = spread(doc)
    with open(os.path.join(out_dir, 'spread.md'), 'w', encoding='utf-8') as f:
        f.write(spread_markdown(sp))
    plot_spread(sp, os.path.join(out_dir, 'spread.png'))
    return sp
