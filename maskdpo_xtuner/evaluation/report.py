"""Evaluation outputs read back for a report: each run's metrics checked and its comparison
fields gathered (so runs that differ are refused, :mod:`maskdpo_xtuner.evaluation.compare`),
and the bar chart of the ANAH runs. ``tools/report.py`` is the command over these."""
import os

from maskdpo_xtuner.evaluation.compare import (anah_fields, factscore_fields,
                                               judge_from_eval_config)
from maskdpo_xtuner.evaluation.metrics import (aggregate, official_parts, pooled_counts,
                                               ratio_bootstrap)
from maskdpo_xtuner.io.validate import (check_anah_metrics, check_factscore_metrics,
                                        read_json)


def load(path: str, name: str):
    """(document, file path) of a directory or JSON file, checked (maskdpo_xtuner/io/validate.py:
    an empty or malformed evaluation is refused, naming the file and field)."""
    if os.path.isdir(path):
        path = os.path.join(path, name)
    doc = read_json(path)
    (check_anah_metrics if name == 'metrics.json' else check_factscore_metrics)(doc, path)
    return doc, path


def load_anah(specs):
    """({model: runs}, {run label: comparison fields})."""
    models, fields = {}, {}
    for name, (path,) in specs.items():
        doc, file = load(path, 'metrics.json')
        models[name] = doc['runs']
        for r in doc['runs']:
            label = f'{name}/{r.get("run", "?")} ({file})'
            f = anah_fields(r, label)
            if f['judge'] is None:
                f['judge'] = judge_from_eval_config(file)
            fields[label] = f
    return models, fields


def load_factscore(specs):
    models, fields = {}, {}
    for name, paths in specs.items():
        models[name] = []
        for path in paths:
            doc, file = load(path, 'factscore.json')
            models[name].append(doc)
            fields[f'{name} ({file})'] = factscore_fields(doc, file)
    return models, fields


def figure(models: dict, title: str, n_boot: int, seed: int, confidence: float):
    """The bar chart of the ANAH runs (a matplotlib Figure): the paper's score with its
    bootstrap interval, and correct / incorrect sentences per response. Titles are wrapped
    and the figure is at least 9 inches wide, so with one or two models they do not run
    into each other."""
    import textwrap

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(models)
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9.0, 4 + 1.6 * len(names)), 4.6))
    vals, errs = [], [[], []]
    for n in names:
        _, counts = pooled_counts(models[n])
        parts = official_parts(counts)
        v = 100 * parts[0].sum() / max(parts[1].sum(), 1)
        lo, hi = ratio_bootstrap(*parts, n_boot, seed, confidence)
        vals.append(v)
        errs[0].append(0.0 if lo is None else v - 100 * lo)
        errs[1].append(0.0 if hi is None else 100 * hi - v)
    bars = ax1.bar(x, vals, yerr=np.array(errs), capsize=5, color='tab:blue')
    ax1.bar_label(bars, fmt='%.1f', label_type='center', color='white')
    wrap = (lambda t: '\n'.join(textwrap.wrap(t, 34)))  # noqa: E731
    ax1.set(xticks=x, xticklabels=names, ylabel="ANAH score (%, paper's)", ylim=(0, 100))
    ax1.set_title(wrap(f'Score (error bars: {100 * confidence:g}% percentile bootstrap over '
                       'questions)'), fontsize=10)
    w = 0.38
    for off, key, color, label in ((-w / 2, 'correct_per_response', 'tab:green', 'correct'),
                                   (w / 2, 'incorrect_per_response', 'tab:red', 'incorrect')):
        aggs = [aggregate(models[n], (key,))[key] for n in names]
        ax2.bar(x + off, [a['mean'] or 0.0 for a in aggs], w,
                yerr=[a['std'] or 0.0 for a in aggs], capsize=4, color=color, label=label)
    ax2.set(xticks=x, xticklabels=names, ylabel='sentences per response')
    ax2.set_title(wrap('Sentences per response (error bars: ± std over runs)'), fontsize=10)
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(models: dict, path: str, title: str, n_boot: int, seed: int, confidence: float):
    """Write :func:`figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt
    fig = figure(models, title, n_boot, seed, confidence)
    fig.savefig(path, dpi=120)
    plt.close(fig)
