"""Sample K responses per question (the paper: K = 32, top-k 40, temperature 0.8, top-p 1.0).

    python tools/sample.py --questions data/questions.jsonl --out work_dirs/responses.jsonl \\
        --backend lmdeploy --model /models/Llama-3.1-8B-Instruct --n 32

Input, one JSON object per line: ``{"id": ..., "question": str, "lang": "en"|"zh",
"document": str, ...}`` (``lang``, ``document`` and any other field are optional and copied to
the output; the document is the annotator's reference and is not shown to the model). A line
may carry ``"messages"`` (a chat list) instead, used as the prompt as is.
Output, one line per question: the input fields plus ``prompt`` (the messages sent),
``responses`` (K strings), ``sampling`` (the parameters) and ``model``.

Resumable: finished questions are written one by one; a restart skips their ids (a half-written
last line is dropped) and does the rest, so each question is written exactly once.
With ``--seed``, the chunk starting at input position i is sampled with seed + i, so a
question's responses do not depend on which questions were already done (with the transformers
backend they still depend on which questions share its batch).
"""
import argparse
import dataclasses
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maskdpo_xtuner.generation import SamplingParams, build_backend  # noqa: E402
from maskdpo_xtuner.io import ResumableJsonlWriter, read_jsonl  # noqa: E402


def load_questions(path: str) -> List[dict]:
    """Read the questions; every record needs a unique ``id`` and a ``question`` or
    ``messages``."""
    questions, first_seen = read_jsonl(path), {}
    for i, q in enumerate(questions, 1):
        if 'id' not in q:
            raise ValueError(f'{path}: record {i} has no "id"')
        if 'messages' not in q and 'question' not in q:
            raise ValueError(f'{path}: record {i} (id {q["id"]!r}) has neither "question" '
                             f'nor "messages"')
        if q['id'] in first_seen:
            raise ValueError(f'{path}: record {i} repeats id {q["id"]!r} '
                             f'(first used by record {first_seen[q["id"]]})')
        first_seen[q['id']] = i
    return questions


def build_prompt(q: dict, system: Optional[str] = None) -> List[dict]:
    """The chat sent to the model: ``q['messages']`` if given, else [system] + the question."""
    if 'messages' in q:
        return q['messages']
    prompt = [{'role': 'system', 'content': system}] if system else []
    return prompt + [{'role': 'user', 'content': q['question']}]


def sampling_params(args) -> SamplingParams:
    if args.greedy:
        return dataclasses.replace(SamplingParams.greedy(args.max_new_tokens), seed=args.seed)
    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, do_sample=True, seed=args.seed)


def make_backend(args):
    if args.backend == 'transformers':
        return build_backend('transformers', model_path_or_model=args.model,
                             batch_size=args.batch_size, device=args.device)
    if args.backend == 'lmdeploy':
        return build_backend('lmdeploy', model_path=args.model, engine=args.engine, tp=args.tp,
                             batch_size=args.batch_size)
    return build_backend('openai', endpoints=args.endpoints, model=args.model,
                         api_key=args.api_key, concurrency=args.batch_size)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--questions', required=True, help='input JSONL (id, question | messages)')
    p.add_argument('--out', required=True, help='output JSONL, appended to and resumed')
    p.add_argument('--backend', choices=['transformers', 'lmdeploy', 'openai'],
                   default='transformers')
    p.add_argument('--model', required=True,
                   help='model folder (transformers, lmdeploy) or served model name (openai)')
    p.add_argument('--endpoints', nargs='+', help='openai backend: server base URLs')
    p.add_argument('--n', type=int, default=32, help='responses per question (paper: 32)')
    p.add_argument('--batch-size', type=int, default=64,
                   help='sequences generated together (openai: requests in flight)')
    p.add_argument('--temperature', type=float, default=0.8)
    p.add_argument('--top-k', type=int, default=40)
    p.add_argument('--top-p', type=float, default=1.0)
    p.add_argument('--max-new-tokens', type=int, default=512)
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--greedy', action='store_true', help='greedy decoding (top-k 1)')
    p.add_argument('--system', default=None, help='system prompt put before each question')
    p.add_argument('--device', default='cpu', help='transformers backend: torch device')
    p.add_argument('--engine', choices=['pytorch', 'turbomind'], default='pytorch',
                   help='lmdeploy backend: inference engine')
    p.add_argument('--tp', type=int, default=1, help='lmdeploy backend: tensor parallel GPUs')
    p.add_argument('--api-key', default='EMPTY', help='openai backend: API key')
    args = p.parse_args(argv)
    if args.n < 1 or args.batch_size < 1:
        p.error('--n and --batch-size must be >= 1')
    if args.backend == 'openai' and not args.endpoints:
        p.error('--backend openai needs --endpoints')
    return args


def main(argv=None, backend=None) -> None:
    """Run the CLI; ``backend`` (any object with ``generate``) skips building one."""
    from tqdm import tqdm
    args = parse_args(argv)
    questions = load_questions(args.questions)
    params = sampling_params(args)
    with ResumableJsonlWriter(args.out, key=lambda r: r['id']) as writer:
        todo = [(i, q) for i, q in enumerate(questions) if q['id'] not in writer.done]
        bar = tqdm(total=len(questions), initial=len(questions) - len(todo), desc='questions')
        if todo:
            backend = backend if backend is not None else make_backend(args)
            chunk = max(1, args.batch_size // args.n)  # questions whose copies fill a batch
            for s in range(0, len(todo), chunk):
                part = todo[s:s + chunk]
                prompts = [build_prompt(q, args.system) for _, q in part]
                p = params if params.seed is None else dataclasses.replace(
                    params, seed=params.seed + part[0][0])
                responses = backend.generate(prompts, p, n=args.n)
                for (_, q), prompt, resp in zip(part, prompts, responses):
                    writer.write({**q, 'prompt': prompt, 'responses': resp,
                                  'sampling': params.to_dict(), 'model': args.model})
                    bar.update(1)
        bar.close()


if __name__ == '__main__':
    main()
