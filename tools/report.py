"""Compare ANAH evaluations side by side: a markdown table and a bar chart.

    python tools/report.py --runs base=work_dirs/eval/base dpo=work_dirs/eval/dpo \\
        maskdpo=work_dirs/eval/maskdpo --out report.md --plot report.png --view answers.html

Each ``NAME=PATH`` is an output directory of tools/eval_anah.py or its ``metrics.json``.
The score is shown in percent with its bootstrap interval for a single run, or as mean ± std
over runs (seeds); the other columns are means over runs. In the plot, the left panel is the
score (error bars: the interval, or ± std), the right one correct and incorrect sentences per
response (error bars: ± std over runs, none for one run): shorter answers raise the score too.
``--view`` also writes the judged answers of the same runs, sentence by sentence and model by
model, as one HTML page (tools/show.py, docs/view.md), and links it from the report.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maskdpo_xtuner.metrics import SUMMARY_HEADER, markdown_table, summary_cells  # noqa: E402


def load(path: str) -> dict:
    if os.path.isdir(path):
        path = os.path.join(path, 'metrics.json')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def parse_runs(specs):
    out = {}
    for spec in specs:
        name, sep, path = spec.partition('=')
        if not sep or not name or not path:
            raise SystemExit(f'--runs expects NAME=PATH, got {spec!r}')
        if name in out:
            raise SystemExit(f'--runs: name {name!r} used twice')
        out[name] = load(path)
    return out


def table(docs: dict) -> str:
    rows = [[name, *summary_cells(d['runs'], d['aggregate'])] for name, d in docs.items()]
    unparsed = {d['settings'].get('unparsed_as') for d in docs.values()}
    note = ('\nScore = correct / (correct + incorrect) ANAH-v2-labelled sentences, pooled; '
            f'unparsed sentences: {", ".join(sorted(map(str, unparsed)))}.\n')
    return markdown_table(['Model', *SUMMARY_HEADER], rows) + note


def _err(d, key, scale=1.0):
    """(value, lower error, upper error) of a metric: interval for one run, else ± std."""
    agg = d['aggregate'][key]
    mean = (agg['mean'] or 0.0) * scale
    if key == 'score' and len(d['runs']) == 1:
        r = d['runs'][0]
        if r['ci_low'] is None:
            return mean, 0.0, 0.0
        return mean, mean - r['ci_low'] * scale, r['ci_high'] * scale - mean
    std = (agg['std'] or 0.0) * scale
    return mean, std, std


def plot(docs: dict, path: str, title: str = 'ANAH evaluation'):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(docs)
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(4 + 1.6 * len(names), 4))
    vals = [_err(docs[n], 'score', 100) for n in names]
    bars = ax1.bar(x, [v[0] for v in vals], yerr=np.array([[v[1] for v in vals],
                                                            [v[2] for v in vals]]),
                   capsize=5, color='tab:blue')
    ax1.bar_label(bars, fmt='%.1f', label_type='center', color='white')
    ax1.set(xticks=x, xticklabels=names, ylabel='ANAH score (%)', ylim=(0, 100),
            title='Score (error bar: 95% CI or ± std)')
    w = 0.38
    for off, key, color, label in ((-w / 2, 'correct_per_response', 'tab:green', 'correct'),
                                   (w / 2, 'incorrect_per_response', 'tab:red', 'incorrect')):
        vals = [_err(docs[n], key) for n in names]
        ax2.bar(x + off, [v[0] for v in vals], w, yerr=[v[1] for v in vals], capsize=4,
                color=color, label=label)
    ax2.set(xticks=x, xticklabels=names, ylabel='sentences per response',
            title='Sentences per response (± std over runs)')
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_view(specs, path: str, report_path, title: str) -> str:
    """Write the answers page of the runs; return the report's markdown line linking it."""
    from maskdpo_xtuner.view import build_evals_view, write_page
    dirs = {}
    for spec in specs:
        name, _, run = spec.partition('=')
        dirs[name] = run if os.path.isdir(run) else os.path.dirname(run)
    write_page(path, evals=build_evals_view(dirs), title=f'{title}: answers')
    base = os.path.dirname(os.path.abspath(report_path)) if report_path else os.getcwd()
    link = os.path.relpath(os.path.abspath(path), base)
    return f'Every answer, sentence by sentence with its label, per model: [{link}]({link})'


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--runs', nargs='+', required=True, help='NAME=DIR_OR_METRICS_JSON ...')
    p.add_argument('--out', help='markdown file to write (printed in any case)')
    p.add_argument('--plot', help='PNG bar chart to write')
    p.add_argument('--view', help='HTML page of the judged answers to write and link')
    p.add_argument('--title', default='ANAH evaluation')
    args = p.parse_args(argv)
    docs = parse_runs(args.runs)
    text = f'# {args.title}\n\n' + table(docs)
    if args.view:
        text += '\n' + write_view(args.runs, args.view, args.out, args.title) + '\n'
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)
    if args.plot:
        plot(docs, args.plot, args.title)
    print(text)
    return text


if __name__ == '__main__':
    main()
