"""When do sentence masks matter? The Mask-DPO minus DPO gap against a world property.

Each (world, training seed) run is one point: its property (properties.py, measured on train
topics from that seed's pairs and samples) and its gap (Mask-DPO minus DPO score). The property
is **chosen on validation topics**: the one whose Pearson r with the in-domain sampled gap on
validation is largest in magnitude. The test gap is then reported against it (its r and the
least-squares slope), with the validation figures beside it; nothing is chosen on test.
"""
import os
from typing import List

import numpy as np

from maskdpo_xtuner.studies.world.pooled import CELLS, SELECT, fit, pool, world_label
from maskdpo_xtuner.studies.world.properties import PROPERTIES
from maskdpo_xtuner.pipeline.stages import write_json


def points(doc: dict, prop: str, set_name: str, dec: str) -> List[tuple]:
    """(world label, seed, property, gap) of every run of a pooled main study."""
    out = []
    for d in doc['per_world']:
        for s, per in d['per_seed'].items():
            x = per['properties'][prop]
            r = per['results']
            if x is not None:
                out.append((world_label(d), s, x, r['maskdpo'][set_name][dec]['score']
                            - r['dpo'][set_name][dec]['score']))
    return out


def fit_points(pts: List[tuple]) -> dict:
    """The least-squares fit (pooled.fit) of the gaps on the property, over the runs."""
    return fit([p[2] for p in pts], [p[3] for p in pts])


def select_property(val: dict) -> dict:
    """prop -> fit on validation (the SELECT gap); 'chosen': the largest |r|."""
    fits = {p: fit_points(points(val, p, *SELECT)) for p in PROPERTIES}
    usable = {p: f for p, f in fits.items() if f['r'] is not None}
    if not usable:
        raise RuntimeError('masks study: no world property varies over the runs (need >= 3 '
                           'runs with different properties and gaps); add worlds or seeds')
    return {'fits': fits, 'chosen': max(usable, key=lambda p: abs(usable[p]['r']))}


def masks_markdown(doc: dict) -> str:
    ch = doc['chosen']
    lines = ['# When do sentence masks matter? Mask-DPO minus DPO against world properties', '',
             f'Worlds (world seed, base-model seed): {doc["worlds"]}; training seeds '
             f'{doc["seeds"]}. One point per (world, seed). Properties are measured on train '
             'topics (properties.py). The property is chosen on **validation** topics: the '
             f'largest |Pearson r| with the {SELECT[0]} {SELECT[1]} gap there.', '',
             '## Choice on validation topics', '', '| Property | r | slope (points per unit) |',
             '|---|---|---|']
    for p, f in doc['validation'].items():
        lines.append(f'| {p}{" (chosen)" if p == ch else ""} | '
                     + ('n/a | n/a' if f['r'] is None else
                        f'{f["r"]:+.2f} | {f["slope"] * 100:+.1f}') + ' |')
    lines += ['', f'## Test topics, against {ch} ({PROPERTIES[ch]})', '',
              '| Set / decoding | r | slope (points per unit) [95% CI] | gap at the lowest / '
              'highest property (fit) |', '|---|---|---|---|']
    for cell, f in doc['test'].items():
        if f['r'] is None:
            lines.append(f'| {cell} | n/a | n/a | n/a |')
            continue
        lo, hi = doc['range']
        lines.append(f'| {cell} | {f["r"]:+.2f} | {f["slope"] * 100:+.1f} '
                     f'[{f["low"] * 100:+.1f}, {f["high"] * 100:+.1f}] | '
                     f'{(f["intercept"] + f["slope"] * lo) * 100:+.1f} / '
                     f'{(f["intercept"] + f["slope"] * hi) * 100:+.1f} |')
    lines += ['', '## Points (test gaps, score points)', '',
              '| World | Seed | ' + ' | '.join(PROPERTIES) + ' | ' + ' | '.join(
                  f'gap {s} {d}' for s, d in CELLS) + ' |',
              '|---|---|' + '---|' * (len(PROPERTIES) + len(CELLS))]
    for row in doc['rows']:
        lines.append(f'| {row["world"]} | {row["seed"]} | ' + ' | '.join(
            'n/a' if row[p] is None else f'{row[p]:.3f}' for p in PROPERTIES) + ' | '
            + ' | '.join(f'{row[c] * 100:+.1f}' for c in doc['test']) + ' |')
    return '\n'.join(lines) + '\n'


def plot_masks(doc: dict, val: dict, test: dict, path: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ch = doc['chosen']
    panels = [('validation', val, SELECT)] + [('test', test, c) for c in CELLS]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (split, pooled, (s, d)) in zip(axes[0], panels):
        pts = points(pooled, ch, s, d)
        labels = sorted({p[0] for p in pts})
        for j, w in enumerate(labels):
            xs = [p[2] for p in pts if p[0] == w]
            ys = [p[3] * 100 for p in pts if p[0] == w]
            ax.scatter(xs, ys, color=f'C{j}', label=w, s=18)
        f = fit_points(pts)
        if f['r'] is not None:
            xs = np.linspace(min(p[2] for p in pts), max(p[2] for p in pts), 10)
            ax.plot(xs, (f['intercept'] + f['slope'] * xs) * 100, 'k--', lw=0.8)
        ax.axhline(0, color='grey', lw=0.6)
        ax.set_xlabel(ch, fontsize=8)
        ax.set_title(f'{split}: {s} {d}' + ('' if f['r'] is None else f' (r={f["r"]:+.2f})'),
                     fontsize=8)
    axes[0][0].set_ylabel('Mask-DPO minus DPO (score points)')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_masks(val_docs: List[dict], test_docs: List[dict], out_dir: str) -> dict:
    val, test = pool(val_docs), pool(test_docs)
    sel = select_property(val)
    ch = sel['chosen']
    rows = []
    for d in test['per_world']:
        for s, per in d['per_seed'].items():
            r = per['results']
            rows.append({'world': world_label(d), 'seed': s, **{p: per['properties'][p]
                                                               for p in PROPERTIES},
                         **{f'{c}/{dec}': r['maskdpo'][c][dec]['score'] - r['dpo'][c][dec]['score']
                            for c, dec in CELLS}})
    xs = [row[ch] for row in rows if row[ch] is not None]
    doc = {'worlds': test['worlds'], 'seeds': test['seeds'], 'chosen': ch,
           'validation': sel['fits'], 'range': [min(xs), max(xs)],
           'test': {f'{s}/{d}': fit_points(points(test, ch, s, d)) for s, d in CELLS}, 'rows': rows,
           'val_paired': val['paired'], 'test_paired': test['paired']}
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, 'results.json'), doc)
    text = masks_markdown(doc)
    with open(os.path.join(out_dir, 'results.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    plot_masks(doc, val, test, os.path.join(out_dir, 'results.png'))
    print(text)
    return doc
