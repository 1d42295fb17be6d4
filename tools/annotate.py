"""Label every sentence of sampled responses (ANAH-v2 protocol by default), resumably.

    python tools/annotate.py --input work_dirs/samples.jsonl --out work_dirs/annotated.jsonl \\
        --judge-backend openai --judge-endpoints http://host:23333 --judge-model anah-v2 \\
        --documents docs.jsonl

Formats: maskdpo_xtuner/pipeline/annotation.py. The judge takes every backend flag
(``--judge-backend``, ``--judge-model``, ``--judge-endpoints``, ``--judge-api-key``, ...).
"""

from maskdpo_xtuner.pipeline.annotation import (add_annotator_args, annotate,
                                                annotator_spec, format_summary, judge_spec)
from maskdpo_xtuner.io.validate import add_on_error_arg
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--input', required=True, help="the sampler's JSONL")
    p.add_argument('--out', required=True, help='output JSONL (appended to; resumable)')
    p.add_argument('--chunk-questions', type=int, default=64,
                   help='questions whose sentences are annotated in one batch')
    p.add_argument('--save-trace', action='store_true',
                   help="keep each sentence's raw annotator answers ('trace')")
    add_annotator_args(p)
    add_on_error_arg(p)
    return p.parse_args(argv)


@tool_main
def main(argv=None, backend=None, annotator=None) -> dict:
    """Run the CLI. ``backend`` (any object with ``generate``) is the judge instead of the one
    the flags describe; ``annotator`` (any object with ``annotate``) replaces the annotator."""
    args = parse_args(argv)
    try:
        summary = annotate(args.input, args.out, annotator or annotator_spec(args),
                           backend or judge_spec(args), documents_path=args.documents,
                           chunk_questions=args.chunk_questions, save_trace=args.save_trace,
                           overwrite=args.overwrite, on_error=args.on_error)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    print(format_summary(summary, args.out))
    return summary


if __name__ == '__main__':
    main()
