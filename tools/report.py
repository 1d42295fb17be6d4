"""Compare evaluated models: markdown tables with paired intervals, and a bar chart.

    python tools/report.py --runs base=work_dirs/eval/base maskdpo=work_dirs/eval/maskdpo \\
        --factscore base=work_dirs/fs/base maskdpo=work_dirs/fs/mdpo_s0,work_dirs/fs/mdpo_s1 \\
        --baseline base --out report.md --plot report.png --view answers.html

``--runs NAME=PATH``: an output directory of tools/eval_anah.py or its ``metrics.json`` (all of
its runs, e.g. seeds, belong to the model). ``--factscore NAME=PATH[,PATH...]``: output
directories of tools/eval_factscore.py or their ``factscore.json``, one per seed. The first
model is the baseline unless ``--baseline`` names another.

Before comparing, every run's question set, decoding, system prompt and judge (FActScore: topics,
judge, prompts, knowledge, retrieval, gamma) must be equal; otherwise the report is refused,
or with ``--allow-mismatch`` the differences are listed under the tables. The tables and their
formulas: maskdpo_xtuner/evaluation/compare.py and docs/evaluation.md. In the plot, the left panel is the
paper's ANAH score pooled over runs (error bars: bootstrap interval over questions), the right
one correct and incorrect sentences per response (error bars: ± std over runs).
``--view`` also writes the judged answers of the ANAH runs, sentence by sentence and model by
model, as one HTML page (tools/show.py, docs/view.md), and links it from the report.
"""
import os

from maskdpo_xtuner.evaluation.compare import (NotComparable, anah_report, check_same,
                                               factscore_report)
from maskdpo_xtuner.evaluation.report import load_anah, load_factscore, plot
from maskdpo_xtuner.io.validate import RecordError
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


def parse_specs(specs, flag: str, multi: bool = False):
    out = {}
    for spec in specs or []:
        name, sep, paths = spec.partition('=')
        if not sep or not name or not paths:
            raise SystemExit(f'{flag} expects NAME=PATH{"[,PATH...]" if multi else ""}, '
                             f'got {spec!r}')
        if name in out:
            raise SystemExit(f'{flag}: name {name!r} used twice')
        out[name] = paths.split(',') if multi else [paths]
    return out


def _notes(diffs):
    return ('\n**Not comparable (shown anyway, --allow-mismatch):**\n\n'
            + ''.join(f'- {d}\n' for d in diffs)) if diffs else ''


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


@tool_main
def main(argv=None) -> str:
    p = tool_parser(__doc__)
    p.add_argument('--runs', nargs='+', default=[], help='NAME=DIR_OR_METRICS_JSON ...')
    p.add_argument('--factscore', nargs='+', default=[],
                   help='NAME=DIR_OR_FACTSCORE_JSON[,...] (one per seed) ...')
    p.add_argument('--baseline', help='model the others are compared with (default: first)')
    p.add_argument('--allow-mismatch', action='store_true',
                   help='report runs that differ in questions/decoding/judge, listing it')
    p.add_argument('--n-boot', type=int, default=1000)
    p.add_argument('--boot-seed', type=int, default=0)
    p.add_argument('--confidence', type=float, default=0.95)
    p.add_argument('--out', help='markdown file to write (printed in any case)')
    p.add_argument('--plot', help='PNG bar chart of the ANAH runs to write')
    p.add_argument('--view', help='HTML page of the judged answers to write and link')
    p.add_argument('--title', default='Evaluation')
    args = p.parse_args(argv)
    anah, fs = parse_specs(args.runs, '--runs'), parse_specs(args.factscore, '--factscore', True)
    if not anah and not fs:
        raise SystemExit('give --runs and/or --factscore')
    opts = (args.n_boot, args.boot_seed, args.confidence)
    text = f'# {args.title}\n'
    try:
        for kind, specs, loader, report in (('ANAH', anah, load_anah, anah_report),
                                            ('FActScore', fs, load_factscore,
                                             factscore_report)):
            if not specs:
                continue
            models, fields = loader(specs)
            base = args.baseline or next(iter(models))
            if base not in models:
                raise SystemExit(f'--baseline {base!r} is not one of {kind} {list(models)}')
            diffs = check_same(fields, args.allow_mismatch)
            text += f'\n## {kind}\n\n' + report(models, base, *opts) + _notes(diffs)
            if kind == 'ANAH' and args.plot:
                plot(models, args.plot, args.title, *opts)
    except (NotComparable, RecordError) as e:
        raise SystemExit(f'error: {e}')
    if args.view:
        text += '\n' + write_view(args.runs, args.view, args.out, args.title) + '\n'
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)
    print(text)
    return text


if __name__ == '__main__':
    main()
