"""ANAH evaluation: generate one answer per test question, annotate it, score it; per seed.

    python tools/eval_anah.py --questions data/anah_test.jsonl --model /models/policy \\
        --backend lmdeploy --out-dir work_dirs/eval/maskdpo --greedy \\
        --annotator anah --judge-backend openai --judge-model anah-v2 \\
        --judge-endpoints http://host:23333

Greedy by default (paper Table 1); ``--seeds 0 1 2`` samples instead, one run per seed.
Runs, outputs and resuming: maskdpo_xtuner/pipeline/anah_eval.py; formulas:
maskdpo_xtuner/evaluation/metrics.py. The policy takes every backend flag (``--backend``, ``--endpoints``,
``--api-key``, ``--tp``, ...), the judge the same flags prefixed ``--judge-``.
"""

from maskdpo_xtuner.evaluation.metrics import UNPARSED_AS
from maskdpo_xtuner.pipeline import (EvalSettings, add_backend_args, backend_spec,
                                     evaluate_anah)
from maskdpo_xtuner.pipeline.annotation import (add_annotator_args, annotator_spec,
                                                judge_spec)
from maskdpo_xtuner.io.validate import add_on_error_arg
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--questions', required=True,
                   help='test questions JSONL: id, question, document (the judge\'s reference)')
    p.add_argument('--out-dir', required=True)
    add_backend_args(p, role='evaluated model', model_required=True)
    dec = p.add_mutually_exclusive_group()
    dec.add_argument('--seeds', type=int, nargs='+', help='sample, one run per seed')
    dec.add_argument('--greedy', action='store_true', help='greedy decoding (the default)')
    p.add_argument('--temperature', type=float, default=0.8)
    p.add_argument('--top-k', type=int, default=40)
    p.add_argument('--top-p', type=float, default=1.0)
    p.add_argument('--max-new-tokens', type=int, default=512)
    p.add_argument('--system', help='system prompt before each question')
    add_annotator_args(p)
    p.add_argument('--unparsed-as', choices=UNPARSED_AS, default=UNPARSED_AS[0],
                   help="for the 'score' field: 'correct' (default) as the official eval, or "
                        "'excluded' (parsed sentences only); the tables show both")
    p.add_argument('--n-boot', type=int, default=1000, help='bootstrap resamples')
    p.add_argument('--boot-seed', type=int, default=0)
    p.add_argument('--confidence', type=float, default=0.95)
    add_on_error_arg(p)
    return p.parse_args(argv)


def settings(args) -> EvalSettings:
    return EvalSettings(questions=args.questions, out_dir=args.out_dir, seeds=args.seeds,
                        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                        system=args.system, documents=args.documents,
                        unparsed_as=args.unparsed_as, n_boot=args.n_boot,
                        boot_seed=args.boot_seed, confidence=args.confidence,
                        overwrite=args.overwrite, on_error=args.on_error)


@tool_main
def main(argv=None, backend=None, judge=None) -> dict:
    """Run the CLI. ``backend`` (has ``generate``) replaces the evaluated model's backend and
    ``judge`` the annotator (an object with ``annotate``) or its backend (with ``generate``)."""
    args = parse_args(argv)
    annotator, judge_backend = annotator_spec(args), judge_spec(args)
    if judge is not None and hasattr(judge, 'annotate'):
        annotator, judge_backend = judge, None
    elif judge is not None:
        judge_backend = judge
    try:
        return evaluate_anah(settings(args), backend or backend_spec(args).check(), args.model,
                             annotator, judge_backend)
    except ValueError as e:
        raise SystemExit(f'error: {e}')


if __name__ == '__main__':
    main()
