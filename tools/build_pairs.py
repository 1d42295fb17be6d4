"""Build Mask-DPO training pairs from annotated responses (best vs worst response per question).

    python tools/build_pairs.py --input work_dirs/annotated.jsonl --out data/train_pairs.jsonl \\
        --seed 0 --tie-break random

Input: the JSONL of tools/annotate.py. Output: the official Mask-DPO format with exact character
spans (see maskdpo_xtuner/pairs.py for the selection rules, tie-breaking and filters), plus
``<out>.summary.json``: questions read, pairs kept, drops and excluded responses by reason,
mean chosen and rejected score.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maskdpo_xtuner.io import iter_jsonl, write_jsonl  # noqa: E402
from maskdpo_xtuner.pairs import TIE_BREAKS, build_pairs  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--input', required=True, nargs='+', help="tools/annotate.py's JSONL")
    p.add_argument('--out', required=True, help='output pairs JSONL (overwritten)')
    p.add_argument('--seed', type=int, default=0, help='seed of the tie-break RNG')
    p.add_argument('--tie-break', choices=TIE_BREAKS, default='random',
                   help='among equal best (worst) scores: seeded random pick, or prefer the '
                        'longest / shortest response (then seeded random)')
    p.add_argument('--unparsed', choices=['exclude', 'error'], default='exclude',
                   help='a response with an unparsed sentence: leave it out (counted) or stop')
    p.add_argument('--keep-equal-scores', action='store_true',
                   help='keep pairs whose chosen and rejected scores are equal (dropped by '
                        'default: no preference)')
    return p.parse_args(argv)


def format_summary(s: dict) -> str:
    fmt = (lambda x: 'n/a' if x is None else f'{x:.4f}')
    lines = [f'{s["questions"]} questions, {s["responses"]} responses -> {s["pairs"]} pairs',
             f'  mean score: chosen {fmt(s["mean_chosen_score"])}, '
             f'rejected {fmt(s["mean_rejected_score"])}',
             '  questions dropped:']
    lines += [f'    {r:<28}{n:>7}' for r, n in s['dropped'].items()]
    lines.append('  responses excluded:')
    lines += [f'    {r:<28}{n:>7}' for r, n in s['responses_excluded'].items()]
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    records = (rec for path in args.input for rec in iter_jsonl(path))
    pairs, summary = build_pairs(records, seed=args.seed, tie_break=args.tie_break,
                                 unparsed=args.unparsed,
                                 keep_equal_scores=args.keep_equal_scores)
    summary['input'], summary['out'] = args.input, args.out
    write_jsonl(args.out, pairs)
    with open(args.out + '.summary.json', 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    print(format_summary(summary))
    return summary


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:  # bad input (unparsed with --unparsed error, bad span, ...)
        raise SystemExit(f'error: {e}')
