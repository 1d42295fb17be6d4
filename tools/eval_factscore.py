"""FActScore-style evaluation with open models and a local knowledge source, resumably.

Score existing generations::

    python tools/eval_factscore.py --generations G.jsonl --knowledge enwiki.db \\
        --judge-backend openai --judge-endpoints http://host:23333 --judge-model judge \\
        --out-dir work_dirs/factscore

or generate first (greedy, "Tell me a bio of <entity>.") and then score::

    python tools/eval_factscore.py --entities prompt_entities.txt --model /models/policy \\
        --backend lmdeploy --knowledge wiki.jsonl --judge-backend ... --out-dir D

``--generations``: JSONL lines with ``topic`` (or ``entity``) and ``response``, or the sampler's
output (``responses`` list: the first one is scored); ``id`` is the resume key if present, else
the topic. ``--entities``: one entity per line, or JSONL with ``topic`` / ``entity``.
``--knowledge``: JSONL ``{"title", "text"}`` or FActScore's SQLite layout (see
``maskdpo_xtuner/evaluation/factscore.py``). A topic missing from it stops the run before any model call,
unless ``--skip-missing-topics`` (then it is left out and counted as ``n_no_knowledge``).

Outputs and resuming: maskdpo_xtuner/pipeline/factscore_eval.py. The policy takes every backend flag
(``--backend``, ``--endpoints``, ``--api-key``, ...), the judge the same flags prefixed
``--judge-``.
"""

import dataclasses

from maskdpo_xtuner.evaluation.factscore import (BIO_PROMPT, DEFAULT_GAMMA,
                                                 EXTRACT_PROMPT, VERIFY_PROMPT)
from maskdpo_xtuner.io.validate import add_on_error_arg
from maskdpo_xtuner.pipeline import (FactScoreSettings, SamplingParams,
                                     add_backend_args, backend_spec, evaluate_factscore)
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


def parse_args(argv=None):
    p = tool_parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--generations', help='JSONL of responses to score')
    src.add_argument('--entities', help='entities (text, one per line, or JSONL with "topic")')
    p.add_argument('--knowledge', required=True, help='knowledge source: .jsonl or SQLite .db')
    p.add_argument('--out-dir', required=True)
    add_backend_args(p, role='policy (with --entities)', batch_size=32)
    g = p.add_argument_group('response generation (with --entities)')
    g.add_argument('--prompt-template', default=BIO_PROMPT,
                   help='user message; {entity} is replaced (default: %(default)r)')
    g.add_argument('--max-new-tokens', type=int, default=512)
    g.add_argument('--do-sample', action='store_true', help='sample instead of greedy decoding')
    g.add_argument('--temperature', type=float, default=0.8)
    g.add_argument('--top-k', type=int, default=40)
    g.add_argument('--top-p', type=float, default=1.0)
    g.add_argument('--seed', type=int, default=None)
    add_backend_args(p, prefix='judge-', role='judge (fact extraction and verification)',
                     batch_size=32)
    j = p.add_argument_group('judge prompts')
    j.add_argument('--extract-prompt', default=EXTRACT_PROMPT)
    j.add_argument('--verify-prompt', default=VERIFY_PROMPT)
    r = p.add_argument_group('retrieval and scoring')
    r.add_argument('--retrieve-k', type=int, default=5, help='passages per fact')
    r.add_argument('--passage-words', type=int, default=256, help='max words per passage')
    r.add_argument('--gamma', type=float, default=DEFAULT_GAMMA,
                   help="length penalty exp(1 - gamma/n) for n < gamma facts; 0 = off "
                        "(default: FActScore's %(default)s)")
    r.add_argument('--skip-missing-topics', action='store_true',
                   help='leave out topics absent from the knowledge source instead of failing')
    p.add_argument('--overwrite', action='store_true',
                   help='start the outputs again (a resume must match their manifests)')
    add_on_error_arg(p)
    p.add_argument('--chunk', type=int, default=64,
                   help='responses per round (one extraction and one verification call each)')
    return p.parse_args(argv)


def settings(args) -> FactScoreSettings:
    if args.do_sample:
        params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, do_sample=True,
                                seed=args.seed)
    else:
        params = dataclasses.replace(SamplingParams.greedy(args.max_new_tokens), seed=args.seed)
    return FactScoreSettings(knowledge=args.knowledge, out_dir=args.out_dir,
                             prompt_template=args.prompt_template, params=params,
                             extract_prompt=args.extract_prompt,
                             verify_prompt=args.verify_prompt, retrieve_k=args.retrieve_k,
                             passage_words=args.passage_words, gamma=args.gamma,
                             skip_missing_topics=args.skip_missing_topics, chunk=args.chunk,
                             overwrite=args.overwrite, on_error=args.on_error)


@tool_main
def main(argv=None, backend=None, judge=None) -> dict:
    """Run the evaluation; ``backend`` (policy) and ``judge`` may be injected (tests)."""
    args = parse_args(argv)
    try:
        policy = backend or (backend_spec(args).check('policy') if args.entities else None)
        return evaluate_factscore(settings(args), judge or backend_spec(args, 'judge-').check(
            'judge'), args.judge_model, generations=args.generations, entities=args.entities,
            policy=policy, model_name=args.model)
    except ValueError as e:
        raise SystemExit(f'error: {e}')


if __name__ == '__main__':
    main()
