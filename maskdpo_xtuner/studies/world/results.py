"""A world study's results: per-model summaries, mean ± std over seeds, the learning-rate
choice of the tune study, and the report (results.md, results.json, results.png)."""
import os
from typing import List

import numpy as np

from maskdpo_xtuner.pipeline.stages import write_json

METRICS = {'score': 'Score %', 'sentences': 'Sent./ans.', 'facts': 'Facts/ans.'}


def summarize_runs(runs: List[dict]) -> dict:
    """One model x set x decoding: the ANAH score (pooled share of non-hallucinated
    sentences), sentences per answer, unique correct facts per answer (``ok`` labels: the oracle
    labels a repeated fact ``unverifiable``), wrong facts per answer and fact precision
    (ok / (ok + contradictory + unverifiable): the opener left out), mean over runs."""
    per = []
    for r in runs:
        lab, n = r['labels'], r['n_responses']
        claims = lab.get('ok', 0) + lab.get('contradictory', 0) + lab.get('unverifiable', 0)
        per.append({'score': r['score'], 'sentences': r['sentences_per_response'],
                    'facts': lab.get('ok', 0) / n if n else None,
                    'wrong': (lab.get('contradictory', 0) + lab.get('unverifiable', 0)) / n
                    if n else None,
                    'fact_precision': lab.get('ok', 0) / claims if claims else None,
                    'responses': n})
    return {k: (float(np.mean([p[k] for p in per if p[k] is not None]))
                if any(p[k] is not None for p in per) else None) for k in per[0]}


def aggregate_results(per_seed: dict, arms_: dict) -> dict:
    """arm -> set -> decoding -> metric -> {mean, std (ddof 1, None for one seed), n}."""
    out = {}
    seeds = list(per_seed)
    for arm in arms_:
        out[arm] = {}
        for set_name, decs in per_seed[seeds[0]]['results'][arm].items():
            out[arm][set_name] = {}
            for dec, metrics in decs.items():
                out[arm][set_name][dec] = {}
                for k in metrics:
                    vals = [per_seed[s]['results'][arm][set_name][dec][k] for s in seeds]
                    vals = np.array([v for v in vals if v is not None], dtype=float)
                    out[arm][set_name][dec][k] = {
                        'mean': float(vals.mean()) if len(vals) else None,
                        'std': float(vals.std(ddof=1)) if len(vals) > 1 else None,
                        'n': int(len(vals))}
    return out


def select_lr(agg: dict, arms_: dict) -> dict:
    """Per method, the learning rate with the best mean sampled in-domain score (validation)."""
    best = {}
    for name, sp in arms_.items():
        if sp is None:
            continue
        method = 'dpo' if sp['mask'] == 'none' else 'maskdpo'
        score = agg[name]['in-domain']['sampled']['score']['mean']
        if score is not None and (method not in best or score > best[method]['score']):
            best[method] = {'lr': sp['lr'], 'score': score}
    return best


def _setup_line(doc: dict) -> str:
    st, p = doc['settings'], doc['settings']['pretrain']
    loss = doc['setup']['base_final_loss']
    return (f'Setup: topics {doc["setup"]["topics"]}; base model hidden {p["hidden_size"]} x '
            f'{p["num_layers"]} layers, {p["steps"]} steps of batch {p["batch_size"]} (final loss '
            f'{"n/a" if loss is None else f"{loss:.3f}"}); K = {st["k"]} samples per train '
            f'question; DPO lr {"from the config" if st["lr"] is None else st["lr"]}; '
            f'max {st["max_new_tokens"]} new tokens. From the world and pretraining values of '
            'maskdpo_xtuner/studies/world/{world,pretrain}.py at the time of the run.')


def _cell(m: dict, scale=1.0, digits=2) -> str:
    if m['mean'] is None:
        return 'n/a'
    s = f'{m["mean"] * scale:.{digits}f}'
    return s + (f' ± {m["std"] * scale:.{digits}f}' if m['std'] is not None else '')


def results_markdown(doc: dict) -> str:
    agg, seeds = doc['aggregate'], doc['seeds']
    where = f', world {doc["world"]}, base seed {doc["base_seed"]}' if 'world' in doc else ''
    lines = [f'# World study: {doc["study"]} (preset {doc["preset"]}{where})', '',
             f'Evaluated on the held-out **{doc["eval_split"]}** topics: their in-domain '
             'questions and the out-of-domain question style. '
             f'Seeds {seeds}: mean ± std over seeds (ddof 1). Score = ANAH-style share of '
             'non-hallucinated sentences, pooled; Facts/ans. = unique correct facts per answer '
             '(a repeated fact is labelled unverifiable). Greedy decoding, and sampling (top-k '
             f'{doc["settings"]["top_k"]}, temperature {doc["settings"]["temperature"]}, '
             f'{doc["settings"]["eval_samples"]} answer(s) per question per seed).', '',
             _setup_line(doc), '']
    for set_name in next(iter(agg.values())):
        lines += [f'## {set_name}', '',
                  '| Model | ' + ' | '.join(f'{v} {d}' for d in ('greedy', 'sampled')
                                             for v in METRICS.values()) + ' |',
                  '|---|' + '---|' * (2 * len(METRICS))]
        for arm, sets in agg.items():
            cells = [_cell(sets[set_name][d][k], 100 if k == 'score' else 1,
                           1 if k == 'score' else 2)
                     for d in ('greedy', 'sampled') for k in METRICS]
            lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    lines += ['## Training (DPO loss at the first and last logged step)', '',
              '| Model | Pairs | Steps | First loss | Last loss | Reward acc. (last) |',
              '|---|---|---|---|---|---|']
    per_seed = doc['per_seed']
    for arm in agg:
        rows = [per_seed[s]['training'][arm] for s in per_seed if arm in per_seed[s]['training']]
        if not rows:
            continue
        mean = (lambda k: np.mean([r[k] for r in rows if r[k] is not None])
                if any(r[k] is not None for r in rows) else float('nan'))
        lines.append(f'| {arm} | {mean("pairs"):.0f} | {mean("steps"):.0f} | '
                     f'{mean("first_loss"):.4f} | {mean("last_loss"):.4f} | '
                     f'{mean("last_reward_acc"):.2f} |')
    lines += ['', '## Pairs (per seed)', '',
              '| Seed | Questions | Pairs | ' + ' | '.join(
                  next(iter(per_seed.values()))['pairs']['dropped']) + ' | Chosen score | '
              'Rejected score |', '|---|---|---|' + '---|' * (
                  len(next(iter(per_seed.values()))['pairs']['dropped']) + 2)]
    for s, d in per_seed.items():
        p = d['pairs']
        fmt = (lambda x: 'n/a' if x is None else f'{x:.3f}')
        lines.append(f'| {s} | {p["questions"]} | {p["pairs"]} | '
                     + ' | '.join(str(v) for v in p['dropped'].values())
                     + f' | {fmt(p["mean_chosen_score"])} | {fmt(p["mean_rejected_score"])} |')
    if 'selected_lr' in doc:
        lines += ['', '## Selected learning rates (best sampled in-domain validation score)', '']
        lines += [f'- {m}: lr {v["lr"]:g} (score {v["score"] * 100:.2f})'
                  for m, v in doc['selected_lr'].items()]
    return '\n'.join(lines) + '\n'


CELLS = [('in-domain', 'greedy'), ('in-domain', 'sampled'), ('ood', 'greedy'), ('ood', 'sampled')]
COLORS = {'base': 'tab:gray', 'dpo': 'tab:blue', 'maskdpo': 'tab:orange'}


def cell_label(cell, sep='\n') -> str:
    """('ood', 'greedy') -> 'out of domain' + sep + 'greedy'."""
    return f'{"in domain" if cell[0] == "in-domain" else "out of domain"}{sep}{cell[1]}'


def t_half(m: dict) -> float:
    """Half width of the 95% Student-t interval of a mean from {'mean', 'std', 'n'} (0 for
    fewer than two values)."""
    from scipy import stats
    if m.get('std') is None or m.get('n', 0) < 2:
        return 0.0
    return float(stats.t.ppf(0.975, m['n'] - 1) * m['std'] / np.sqrt(m['n']))


def bars(ax, groups: List[str], series: dict, ylabel: str, fmt: str = '%.1f', colors=None,
         top=None):
    """Grouped bars: ``series`` = {name: [(mean, error half width), ...] per group}, labelled
    with their values, error bars where a half width is > 0, the legend in a row on top (the
    y axis runs to ``top``, or a fifth above the highest bar, to leave it room)."""
    colors = colors or {}
    w = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    high = 0.0
    for i, (name, vals) in enumerate(series.items()):
        means = [v[0] for v in vals]
        errs = [v[1] for v in vals]
        high = max(high, *(m + e for m, e in zip(means, errs)))
        drawn = ax.bar(x + (i - (len(series) - 1) / 2) * w, means, w, label=name,
                       yerr=errs if any(errs) else None, capsize=3,
                       color=colors.get(name, f'C{i}'), error_kw={'elinewidth': 1})
        ax.bar_label(drawn, fmt=fmt, fontsize=7, padding=2)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top or high * 1.25 or 1)
    ax.legend(fontsize=7, loc='upper center', ncol=min(4, len(series)), frameon=False)


def plot_results(doc: dict, path: str):
    """What a reader looks for first: every arm's score in and out of domain, greedy and
    sampled, as bars with the 95% t-interval over training seeds (none for one seed, nor for the
    base model's greedy answers, which are the same in every seed); below, correct facts per
    answer; the Mask-DPO minus DPO gap written over each group when both are arms."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    agg, n = doc['aggregate'], len(doc['seeds'])
    groups = [cell_label(c) for c in CELLS]
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 1.2 * len(agg) * len(CELLS) * 0.6), 8),
                             gridspec_kw={'height_ratios': [3, 2]})
    for ax, (key, label, scale, fmt) in zip(axes, (
            ('score', 'score: non-hallucinated sentences (%)', 100, '%.1f'),
            ('facts', 'correct facts per answer', 1, '%.2f'))):
        series = {arm: [((agg[arm][s][d][key]['mean'] or 0) * scale,
                         t_half(agg[arm][s][d][key]) * scale) for s, d in CELLS] for arm in agg}
        bars(ax, groups, series, label, fmt, COLORS, top=118 if key == 'score' else None)
        if key == 'score':
            ax.set_yticks(range(0, 101, 20))
        if key == 'score' and 'maskdpo' in agg and 'dpo' in agg:
            for i, (s, d) in enumerate(CELLS):
                gap = (agg['maskdpo'][s][d]['score']['mean']
                       - agg['dpo'][s][d]['score']['mean']) * 100
                ax.text(i, 104, f'Mask-DPO - DPO: {gap:+.1f}', ha='center', fontsize=8,
                        weight='bold')
    where = f'world {doc["world"]}, base seed {doc["base_seed"]}, ' if 'world' in doc else ''
    bars_note = (f'error bars: 95% t-interval over {n} training seeds' if n > 1
                 else 'one training seed: no interval')
    fig.suptitle(f'World study "{doc["study"]}" ({where}preset {doc["preset"]}, '
                 f'{doc["eval_split"]} topics); {bars_note}', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(doc: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, 'results.json'), doc)
    text = results_markdown(doc)
    with open(os.path.join(out_dir, 'results.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    plot_results(doc, os.path.join(out_dir, 'results.png'))
    print(text)
