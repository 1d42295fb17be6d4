"""The paper's Tables 3, 5 and 6 and the regime intervention in the world: their reports.

Each writer takes the per-world docs of one study (study.py; one doc per world, its runs per
training seed) and writes ``<out>/<name>.{md,json,png}`` with the world's numbers and, beside
them, the paper's (``PAPER``, from paper.md §5). Differences between two arms are paired by world
and training seed (pooled.paired); the interval given is the 95% Student-t interval over worlds
when there is more than one world, else over the training seeds, and none for a single run.
"""
import json
import os
from typing import Dict, List

import numpy as np

from maskdpo_xtuner.studies.world.bestofn import PAPER as PAPER_BEST
from maskdpo_xtuner.studies.world.neighbours import EMBEDDINGS
from maskdpo_xtuner.studies.world.pooled import interval, paired
from maskdpo_xtuner.studies.world.properties import PROPERTIES as PAIR_PROPERTIES
from maskdpo_xtuner.studies.world.regime import DEFAULT, PROFILES
from maskdpo_xtuner.studies.world.results import CELLS, COLORS, bars, cell_label
from maskdpo_xtuner.pipeline.stages import write_json

# ANAH-v2 score (%) on the ANAH test set, Llama3.1-8B-Instruct unless said (paper.md §5)
PAPER = {
    'table1': {'base': 49.19, 'maskdpo': 77.53, 'bio base (FactScore)': 30.29,
               'bio maskdpo (FactScore)': 39.39},
    'table2': {'dpo': 68.44, 'maskdpo': 77.53},
    'table3': {'base': 49.19, 'own': 77.53, 'other': 59.43, 'doc': 39.43},
    'table4': {'topics 1/3': 65.04, 'topics 2/3': 71.56, 'questions 1/3': 69.03,
               'questions 2/3': 73.03, 'all': 77.53},
    # near - far, per (base, embedding): the model's own embedding, others, random
    'table5': {'own': {'InternLM2-7B': 2.43, 'Llama3.1-8B': 4.49},
               'other': {'InternLM2 by Llama': 0.65, 'InternLM2 by OpenAI': 1.25,
                         'Llama by InternLM2': 0.22, 'Llama by OpenAI': 0.85},
               'random': {'InternLM2-7B': 0.77, 'Llama3.1-8B': 0.56}},
    'table6': PAPER_BEST,
}
CELL_NAMES = {c: cell_label(c, ' ') for c in CELLS}


def runs(docs: List[dict]):
    """(world label, seed, per-seed doc) of every run."""
    return [(f'w{d["world"]}-b{d["base_seed"]}', s, per)
            for d in docs for s, per in d['per_seed'].items()]


def scores(docs, arm, cell, metric='score') -> dict:
    """Mean and 95% t-interval over all runs of one arm in one (set, decoding) cell."""
    return interval([per['results'][arm][cell[0]][cell[1]][metric] for _, _, per in runs(docs)])


def gap(docs, arm, ref, cell) -> dict:
    """arm minus ref, paired by world and seed: mean, interval (worlds if > 1, else seeds),
    share of runs where it is positive."""
    p = paired(docs, arm, ref, *cell)
    iv = p['worlds'] if p['worlds']['n'] > 1 else p['pairs']
    return {'mean': p['pairs']['mean'], 'low': iv['low'], 'high': iv['high'],
            'over': 'worlds' if p['worlds']['n'] > 1 else 'seeds', 'n': iv['n'],
            'positive': p['pairs_positive'], 'per_run': p['per_pair']}


def pct(x, sign=False) -> str:
    return 'n/a' if x is None else (f'{x * 100:+.1f}' if sign else f'{x * 100:.1f}')


def gap_cell(g: dict) -> str:
    iv = '' if g['low'] is None else f' [{pct(g["low"], True)}, {pct(g["high"], True)}]'
    return pct(g['mean'], True) + iv


def md_table(header: List[str], rows: List[List]) -> List[str]:
    return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header),
            *('| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows), '']


def intro(docs: List[dict], title: str) -> List[str]:
    d = docs[0]
    return [f'# {title}', '', f'Preset {d["preset"]}; worlds (world seed, base seed) '
            f'{[(x["world"], x["base_seed"]) for x in docs]}; training seeds {d["seeds"]}; '
            f'held-out **{d["eval_split"]}** topics. Scores: share of non-hallucinated sentences '
            '(%), mean over all runs. Differences: paired by world and training seed, with the '
            '95% t-interval over worlds (more than one world) or over training seeds (one '
            'world), none for a single run.', '']


def _write(out_dir: str, name: str, doc: dict, lines: List[str], plot) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, f'{name}.json'), doc)
    text = '\n'.join(lines) + '\n'
    with open(os.path.join(out_dir, f'{name}.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plot(plt)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f'{name}.png'), dpi=110)
    plt.close(fig)
    print(text)
    return doc


def score_rows(docs, arms) -> List[List]:
    return [[arm, *(pct(scores(docs, arm, c)['mean']) for c in CELLS)] for arm in arms]


def score_plot(docs, arms, title, colors=COLORS):
    def plot(plt):
        fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * len(arms) * len(CELLS)), 4.8))
        series = {a: [(scores(docs, a, c)['mean'] * 100,
                       0 if scores(docs, a, c)['low'] is None else
                       (scores(docs, a, c)['high'] - scores(docs, a, c)['mean']) * 100)
                      for c in CELLS] for a in arms}
        bars(ax, [cell_label(c) for c in CELLS], series,
             'score (%), 95% t-interval over runs', '%.1f', colors)
        ax.set_title(title, fontsize=9)
        return fig
    return plot


# ------------------------------------------------------------------------------ Table 3
def write_source(docs: List[dict], out_dir: str) -> dict:
    arms = list(docs[0]['arms'])
    own, other, doc_arm = arms[1], arms[2], arms[3]
    props = {a: {k: float(np.mean([per['training'][a].get('properties', per['properties'])[k]
                                   for _, _, per in runs(docs)]))
                 for k in ('pairs', 'chosen_hallucinated', 'rejected_correct')}
             for a in arms[1:]}
    gaps = {a: {f'{s}/{d}': gap(docs, a, own, (s, d)) for s, d in CELLS} for a in (other, doc_arm)}
    p = PAPER['table3']
    world = {c: {a: scores(docs, a, c)['mean'] for a in arms} for c in CELLS}
    wid = world[('in-domain', 'greedy')]
    wood = world[('ood', 'greedy')]
    rows = [['untrained base model', p['base'], pct(wid[arms[0]]), pct(wood[arms[0]])],
            ['Mask-DPO on its own samples (on-policy)', p['own'], pct(wid[own]), pct(wood[own])],
            ["on another model's samples (paper: InternLM2-7B's; world: another base seed)",
             p['other'], pct(wid[other]), pct(wood[other])],
            ['chosen answers written with the document (paper: Llama+Doc; world: the '
             "world's answer)", p['doc'], pct(wid[doc_arm]), pct(wood[doc_arm])],
            ['other samples minus own', f'{p["other"] - p["own"]:+.2f}',
             gap_cell(gaps[other]['in-domain/greedy']), gap_cell(gaps[other]['ood/greedy'])],
            ['document-written chosen minus own', f'{p["doc"] - p["own"]:+.2f}',
             gap_cell(gaps[doc_arm]['in-domain/greedy']), gap_cell(gaps[doc_arm]['ood/greedy'])]]
    lines = intro(docs, 'Paper Table 3 in the world: where the sampled answers come from')
    lines += ['## Paper vs world', '', 'Paper: ANAH-v2 score on ANAH (in domain, greedy); no '
              'out-of-domain column. World: greedy, in domain and out of domain.', '',
              *md_table(['setting', 'paper', 'world in domain', 'world out of domain'], rows),
              '## Every cell', '', *md_table(['arm', *CELL_NAMES.values()], score_rows(docs, arms)),
              '## Differences from on-policy Mask-DPO', '',
              *md_table(['arm', *CELL_NAMES.values(), 'runs > 0 (in domain greedy)'],
                        [[a, *(gap_cell(gaps[a][f'{s}/{d}']) for s, d in CELLS),
                          f'{gaps[a]["in-domain/greedy"]["positive"]:.0%}'] for a in gaps]),
              '## The pairs each arm trains on (mean over runs)', '',
              "chosen_hallucinated: hallucinated share of the chosen answers' fact sentences; "
              "rejected_correct: correct share of the rejected answers' (properties.py).", '',
              *md_table(['arm', 'pairs', 'chosen_hallucinated', 'rejected_correct'],
                        [[a, f'{v["pairs"]:.0f}', f'{v["chosen_hallucinated"]:.3f}',
                          f'{v["rejected_correct"]:.3f}'] for a, v in props.items()])]
    doc = {'paper': p, 'world': {CELL_NAMES[c]: v for c, v in world.items()}, 'gaps': gaps,
           'pairs': props, 'rows': rows}
    return _write(out_dir, 'table3', doc, lines,
                  score_plot(docs, arms, 'Mask-DPO by where its pairs come from (Table 3)'))


# ------------------------------------------------------------------------------ Table 5
def write_nearfar(docs: List[dict], out_dir: str) -> dict:
    arms = docs[0]['arms']
    embs = docs[0]['settings']['embeddings']
    groups = {}
    for d in docs:
        with open(os.path.join(d['dir'], 'topic_groups', 'groups.json')) as f:
            groups[f'w{d["world"]}-b{d["base_seed"]}'] = json.load(f)
    diffs = {e: {f'{s}/{d}': gap(docs, f'near ({e})', f'far ({e})', (s, d)) for s, d in CELLS}
             for e in embs}
    p = PAPER['table5']
    lines = intro(docs, 'Paper Table 5 in the world: train on topics near or far from the test '
                        'topics')
    g0 = next(iter(groups.values()))

    def world(*names):
        return '; '.join(f'{e}: {gap_cell(diffs[e]["in-domain/greedy"])}' for e in names
                         if e in diffs) or 'not run'
    rows = [["the model's own embedding", '2.43 (InternLM2), 4.49 (Llama)',
             world('model-name', 'model-document')],
            ['other embeddings (paper: another LLM, OpenAI; world: its true structure)',
             '0.22-1.25', world('world-structure')],
            ['random', '0.77 (InternLM2), 0.56 (Llama)', world('random')]]
    lines += ['## Paper vs world (near minus far, in domain, greedy)', '',
              *md_table(['embedding', 'paper', 'world'], rows),
              '## Near minus far, every cell', '',
              *md_table(['embedding', *CELL_NAMES.values(), 'runs > 0 (in domain greedy)'],
                        [[e, *(gap_cell(diffs[e][f'{s}/{d}']) for s, d in CELLS),
                          f'{diffs[e]["in-domain/greedy"]["positive"]:.0%}'] for e in embs]),
              '## Every arm', '', *md_table(['arm', *CELL_NAMES.values()], score_rows(docs, arms)),
              f'## The groups ({next(iter(groups))}): {g0["train_topics"]} train topics, '
              f'{g0["test_topics"]} test topics', '',
              'Mean cosine distance of a group\'s topics to their nearest test topic, and the share '
              "of one embedding's near topics that are near in another (the rows' embedding "
              'first).', '',
              *md_table(['embedding', 'near: distance', 'far: distance', 'topics per group',
                         *(f'near shared with {e}' for e in EMBEDDINGS)],
                        [[e, f'{g0["groups"][e]["near_distance"]:.3f}',
                          f'{g0["groups"][e]["far_distance"]:.3f}', len(g0['groups'][e]['near']),
                          *(f'{g0["near_agreement"][e][b]:.0%}' for b in EMBEDDINGS)]
                         for e in embs])]
    doc = {'paper': p, 'near_minus_far': diffs, 'groups': groups, 'rows': rows,
           'scores': {a: {CELL_NAMES[c]: scores(docs, a, c) for c in CELLS} for a in arms}}

    def plot(plt):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        series = {side: [(scores(docs, f'{side} ({e})', ('in-domain', 'greedy'))['mean'] * 100,
                          0) for e in embs] for side in ('near', 'far')}
        bars(axes[0], list(embs), series, 'in domain, greedy: score (%)', '%.1f',
             {'near': 'tab:green', 'far': 'tab:purple'})
        axes[0].set_title('Mask-DPO trained on the near or the far half of the train topics',
                          fontsize=9)
        ax = axes[1]
        for i, c in enumerate(CELLS):
            for j, e in enumerate(embs):
                g = diffs[e][f'{c[0]}/{c[1]}']
                x = i + (j - (len(embs) - 1) / 2) * 0.18
                err = None if g['low'] is None else [[(g['mean'] - g['low']) * 100],
                                                     [(g['high'] - g['mean']) * 100]]
                ax.errorbar([x], [g['mean'] * 100], yerr=err, fmt='o', color=f'C{j}',
                            capsize=3, label=e if i == 0 else None)
        ax.axhspan(2.43, 4.49, color='tab:red', alpha=0.12, label="paper, model's own embedding")
        ax.axhspan(0.22, 1.25, color='tab:gray', alpha=0.15, label='paper, other / random')
        ax.axhline(0, color='black', lw=0.8)
        ax.set_xticks(range(len(CELLS)))
        ax.set_xticklabels([cell_label(c) for c in CELLS], fontsize=8)
        ax.set_ylabel('near minus far (score points)')
        ax.legend(fontsize=7)
        return fig
    return _write(out_dir, 'table5', doc, lines, plot)


# ------------------------------------------------------------------------------ Table 6
def write_bestofn(docs: List[dict], out_dir: str) -> dict:
    arms = list(docs[0]['arms'])
    sets = list(dict.fromkeys(s for s, _ in CELLS))
    n_list = sorted(int(n) for n in runs(docs)[0][2]['best_of_n'][arms[0]][sets[0]])

    def at(arm, s, n):  # every run's best-of-n score (curve keys are str, as in JSON)
        return np.array([per['best_of_n'][arm][s][str(n)]['score'] for _, _, per in runs(docs)])
    curves = {a: {s: {n: interval(at(a, s, n)) for n in n_list} for s in sets} for a in arms}
    gaps = {r: {s: {n: interval(at('maskdpo', s, n) - at(r, s, n)) for n in n_list}
                for s in sets} for r in arms if r != 'maskdpo'}
    paper = PAPER['table6']
    lines = intro(docs, 'Paper Table 6 in the world: best-of-N with the exact oracle as the '
                        'selector')
    lines += [f'Best-of-N (bestofn.py): {n_list[-1]} sampled answers per question; the oracle keeps '
              "the best of each block of N. Cells: mean over runs; the gaps' intervals are 95% t "
              'over runs.', '', '## Paper vs world (in domain)', '']
    rows = []
    for n in sorted(set(n_list) | set(paper['base'])):
        ours = n in n_list
        rows.append([n, *(f'{paper[a][n]:.2f}' if n in paper[a] else '-'
                          for a in ('base', 'maskdpo')),
                     f'{paper["maskdpo"][n] - paper["base"][n]:+.2f}' if n in paper['base'] else '-',
                     pct(curves['base']['in-domain'][n]['mean']) if ours else '-',
                     pct(curves['maskdpo']['in-domain'][n]['mean']) if ours else '-',
                     gap_cell(gaps['base']['in-domain'][n]) if ours else '-'])
    lines += md_table(['N', 'paper base', 'paper Mask-DPO', 'paper gap', 'world base',
                       'world Mask-DPO', 'world gap'], rows)
    for s in sets:
        lines += [f'## {CELL_NAMES[(s, "greedy")].rsplit(" ", 1)[0]}: score (%) by N', '',
                  *md_table(['N', *arms, *(f'Mask-DPO minus {r}' for r in gaps)],
                            [[n, *(pct(curves[a][s][n]['mean']) for a in arms),
                              *(gap_cell(gaps[r][s][n]) for r in gaps)] for n in n_list])]
    doc = {'paper': paper, 'n': n_list, 'curves': curves, 'gaps': gaps, 'rows': rows}

    def plot(plt):
        fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
        for ax, s in zip(axes[0], sets):
            for arm in arms:
                m = [curves[arm][s][n]['mean'] * 100 for n in n_list]
                ax.plot(n_list, m, 'o-', color=COLORS.get(arm), label=f'world: {arm}')
            if s == 'in-domain':
                for arm in ('base', 'maskdpo'):
                    ax.plot(sorted(paper[arm]), [paper[arm][n] for n in sorted(paper[arm])],
                            's--', color=COLORS[arm], alpha=0.5, label=f'paper: {arm}')
            ax.set_xscale('log', base=2)
            ticks = sorted(set(n_list) | (set(paper['base']) if s == 'in-domain' else set()))
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(n) for n in ticks])
            ax.set_xlabel('N (answers the oracle chooses from)')
            ax.set_ylabel('score of the chosen answers (%)')
            ax.set_ylim(0, 102)
            gap0, gap1 = (gaps['base'][s][n]['mean'] * 100 for n in (n_list[0], n_list[-1]))
            ax.set_title(f'{CELL_NAMES[(s, "greedy")].rsplit(" ", 1)[0]}: Mask-DPO minus base '
                         f'{gap0:+.1f} (N = {n_list[0]}) -> {gap1:+.1f} (N = {n_list[-1]})',
                         fontsize=9)
            ax.legend(fontsize=7)
        return fig
    return _write(out_dir, 'table6', doc, lines, plot)


# ------------------------------------------------------------------------------ regime
def write_regime(by_profile: Dict[str, List[dict]], out_dir: str) -> dict:
    names = list(by_profile)
    docs0 = by_profile[names[0]]
    gaps = {p: {f'{s}/{d}': gap(docs, 'maskdpo', 'dpo', (s, d)) for s, d in CELLS}
            for p, docs in by_profile.items()}
    props = {p: {k: float(np.mean([per['properties'][k] for _, _, per in runs(docs)
                                   if per['properties'][k] is not None]))
                 for k in PAIR_PROPERTIES} for p, docs in by_profile.items()}
    lines = intro(docs0, 'The paper\'s regime: worlds whose documents state the hard attributes '
                         'more often (regime.py)')
    lines += ['Profiles (document frequency of each kind\'s six attributes, by rank): '
              + '; '.join(f'{p}: {", ".join(map(str, PROFILES.get(p, DEFAULT)))}'
                          for p in names) + '.', '',
              '## Paper vs world: Mask-DPO minus DPO', '',
              *md_table(['', 'paper (ANAH, greedy)', *(f'world {p}' for p in names)],
                        [[CELL_NAMES[c], f'{PAPER["table2"]["maskdpo"] - PAPER["table2"]["dpo"]:+.2f}'
                          if c == ('in-domain', 'greedy') else '-',
                          *(gap_cell(gaps[p][f'{c[0]}/{c[1]}']) for p in names)] for c in CELLS]),
              '## The pairs (train topics, mean over runs; properties.py)', '',
              *md_table(['property', *names], [[k, *(f'{props[p][k]:.3f}' for p in names)]
                                               for k in PAIR_PROPERTIES])]
    for p, docs in by_profile.items():
        lines += [f'## {p}: scores', '',
                  *md_table(['arm', *CELL_NAMES.values()], score_rows(docs, docs[0]['arms']))]
    doc = {'profiles': {p: PROFILES.get(p) for p in names}, 'gaps': gaps, 'properties': props,
           'scores': {p: {a: {CELL_NAMES[c]: scores(docs, a, c) for c in CELLS}
                          for a in docs[0]['arms']} for p, docs in by_profile.items()}}

    def plot(plt):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5),
                                      gridspec_kw={'width_ratios': [3, 2]})
        for j, p in enumerate(names):
            for i, c in enumerate(CELLS):
                g = gaps[p][f'{c[0]}/{c[1]}']
                err = None if g['low'] is None else [[(g['mean'] - g['low']) * 100],
                                                     [(g['high'] - g['mean']) * 100]]
                ax.errorbar([i + (j - (len(names) - 1) / 2) * 0.2], [g['mean'] * 100], yerr=err,
                            fmt='o', color=f'C{j}', capsize=3, label=p if i == 0 else None)
        ax.plot([-0.3, 0.3], [9.09] * 2, 'r--', label='paper, in domain greedy (+9.1)')
        ax.axhline(0, color='black', lw=0.8)
        ax.set_xticks(range(len(CELLS)))
        ax.set_xticklabels([cell_label(c) for c in CELLS], fontsize=8)
        ax.set_ylabel('Mask-DPO minus DPO (score points)')
        ax.set_title('one world and base model per profile', fontsize=9)
        ax.legend(fontsize=8)
        for c, marker in ((('in-domain', 'greedy'), 'o'), (('ood', 'greedy'), 's')):
            xs = [props[p]['chosen_hallucinated'] for p in names]
            ys = [gaps[p][f'{c[0]}/{c[1]}']['mean'] * 100 for p in names]
            ax2.plot(xs, ys, marker + '-', label=CELL_NAMES[c])
            for x, y, p in zip(xs, ys, names):
                ax2.annotate(p, (x, y), fontsize=7, xytext=(3, 3), textcoords='offset points')
        ax2.axhline(0, color='black', lw=0.8)
        ax2.set_xlabel("hallucinated share of the chosen answers' fact sentences")
        ax2.set_ylabel('Mask-DPO minus DPO (score points)')
        ax2.legend(fontsize=8)
        return fig
    return _write(out_dir, 'regime', doc, lines, plot)


WRITERS = {'source': write_source, 'nearfar': write_nearfar, 'bestofn': write_bestofn}
