"""Sample K responses per question (the paper: K = 32, top-k 40, temperature 0.8, top-p 1.0).

    python tools/sample.py --questions data/questions.jsonl --out work_dirs/responses.jsonl \\
        --backend lmdeploy --model /models/Llama-3.1-8B-Instruct --n 32

Formats, resuming and seeds: maskdpo_xtuner/pipeline/sample.py.
"""
import dataclasses

from maskdpo_xtuner.pipeline import (SamplingParams, add_backend_args, backend_spec,
                                     load_questions, sample)
from maskdpo_xtuner.io.validate import add_on_error_arg
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--questions', required=True, help='input JSONL (id, question | messages)')
    p.add_argument('--out', required=True, help='output JSONL, appended to and resumed')
    add_backend_args(p, model_required=True)
    p.add_argument('--n', type=int, default=32, help='responses per question (paper: 32)')
    p.add_argument('--temperature', type=float, default=0.8)
    p.add_argument('--top-k', type=int, default=40)
    p.add_argument('--top-p', type=float, default=1.0)
    p.add_argument('--max-new-tokens', type=int, default=512)
    p.add_argument('--repetition-penalty', type=float, default=1.0)
    p.add_argument('--min-p', type=float, default=0.0)
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--greedy', action='store_true', help='greedy decoding (top-k 1)')
    p.add_argument('--system', default=None, help='system prompt put before each question')
    p.add_argument('--overwrite', action='store_true',
                   help='start --out again (a resume must match the manifest of the job that '
                        'wrote it: settings, questions, model)')
    add_on_error_arg(p)
    return p.parse_args(argv)


def sampling_params(args) -> SamplingParams:
    if args.greedy:
        return dataclasses.replace(SamplingParams.greedy(args.max_new_tokens), seed=args.seed,
                                   repetition_penalty=args.repetition_penalty)
    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, do_sample=True, seed=args.seed,
                          repetition_penalty=args.repetition_penalty, min_p=args.min_p)


@tool_main
def main(argv=None, backend=None) -> dict:
    """Run the CLI; ``backend`` (any object with ``generate``) replaces the one the flags
    describe."""
    args = parse_args(argv)
    try:
        spec = backend_spec(args).check()
        done = sample(load_questions(args.questions, args.on_error), args.out,
                      backend or spec, sampling_params(args), n=args.n, model_name=args.model,
                      system=args.system, batch_size=args.batch_size,
                      overwrite=args.overwrite, on_error=args.on_error)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    print(f'{args.out}: {done["questions"]} questions ({done["sampled"]} sampled in this run; '
          f'{done["cut_at_max_new_tokens"]} of their responses cut at --max-new-tokens'
          + (f'; {done["skipped"]["prompt_too_long"]} skipped: prompt too long for the model'
             if done['skipped']['prompt_too_long'] else '') + ')')
    return done


if __name__ == '__main__':
    main()
