"""Build Mask-DPO training pairs from annotated responses (best vs worst response per question).

    python tools/build_pairs.py --input work_dirs/annotated.jsonl --out data/train_pairs.jsonl \\
        --seed 0 --tie-break random

Input: the JSONL of tools/annotate.py. Output: the official Mask-DPO format with exact character
spans and ``<out>.summary.json`` (maskdpo_xtuner/pipeline/pairing.py; selection rules,
tie-breaking and filters: maskdpo_xtuner/pairs.py).
"""

from maskdpo_xtuner.pairs import TIE_BREAKS
from maskdpo_xtuner.pipeline.pairing import format_summary, make_pairs
from maskdpo_xtuner.io.validate import add_on_error_arg
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


def parse_args(argv=None):
    p = tool_parser(__doc__)
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
    add_on_error_arg(p)
    return p.parse_args(argv)


@tool_main
def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        summary = make_pairs(args.input, args.out, seed=args.seed, tie_break=args.tie_break,
                             unparsed=args.unparsed, keep_equal_scores=args.keep_equal_scores,
                             on_error=args.on_error)
    except ValueError as e:  # bad input (unparsed with --unparsed error, bad span, ...)
        raise SystemExit(f'error: {e}')
    print(format_summary(summary))
    return summary


if __name__ == '__main__':
    main()
