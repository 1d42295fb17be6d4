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
``maskdpo_xtuner/factscore.py``). A topic missing from it stops the run before any model call,
unless ``--skip-missing-topics`` (then it is left out and counted as ``n_no_knowledge``).

Outputs in ``--out-dir``: ``generations.jsonl`` (with ``--entities``), ``factscore_details.jsonl``
(per response: sentences, facts, verdicts, raw judge answers, passages used; appended and
resumed by key, so a re-run only scores what is missing; use a new ``--out-dir`` after changing
the judge, prompts or knowledge, since finished records are never re-scored), ``factscore.json``
and ``factscore.md`` (metrics over the inputs of this run, and the settings).
"""
import argparse
import dataclasses
import json
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maskdpo_xtuner.factscore import (BIO_PROMPT, DEFAULT_GAMMA, EXTRACT_PROMPT,  # noqa: E402
                                      VERIFY_PROMPT, FactScorer, KnowledgeSource, aggregate, fill,
                                      load_prompt, render_markdown)
from maskdpo_xtuner.generation.base import SamplingParams  # noqa: E402
from maskdpo_xtuner.io import ResumableJsonlWriter, read_jsonl  # noqa: E402

BACKENDS = ['transformers', 'lmdeploy', 'openai']


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--generations', help='JSONL of responses to score')
    src.add_argument('--entities', help='entities (text, one per line, or JSONL with "topic")')
    p.add_argument('--knowledge', required=True, help='knowledge source: .jsonl or SQLite .db')
    p.add_argument('--out-dir', required=True)
    g = p.add_argument_group('response generation (with --entities)')
    g.add_argument('--model', help='policy model path (transformers/lmdeploy) or served name')
    g.add_argument('--backend', choices=BACKENDS, default='transformers')
    g.add_argument('--endpoints', nargs='+', help='openai backend: server base URLs')
    g.add_argument('--prompt-template', default=BIO_PROMPT,
                   help='user message; {entity} is replaced (default: %(default)r)')
    g.add_argument('--max-new-tokens', type=int, default=512)
    g.add_argument('--do-sample', action='store_true', help='sample instead of greedy decoding')
    g.add_argument('--temperature', type=float, default=0.8)
    g.add_argument('--top-k', type=int, default=40)
    g.add_argument('--top-p', type=float, default=1.0)
    g.add_argument('--seed', type=int, default=None)
    j = p.add_argument_group('judge (fact extraction and verification)')
    j.add_argument('--judge-backend', choices=BACKENDS, default='transformers')
    j.add_argument('--judge-model', help='judge model path or served name')
    j.add_argument('--judge-endpoints', nargs='+', help='openai judge: server base URLs')
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
    o = p.add_argument_group('execution')
    o.add_argument('--chunk', type=int, default=64,
                   help='responses per round (one extraction and one verification call each)')
    o.add_argument('--batch-size', type=int, default=32,
                   help='backend batch size (openai: requests in flight)')
    o.add_argument('--device', default='cpu', help='transformers backends: torch device')
    o.add_argument('--engine', choices=['pytorch', 'turbomind'], default='pytorch')
    o.add_argument('--tp', type=int, default=1)
    o.add_argument('--api-key', default='EMPTY')
    return p.parse_args(argv)


def make_backend(kind: str, model: Optional[str], endpoints, args):
    from maskdpo_xtuner.generation import build_backend  # lazy: heavy
    if not model:
        raise SystemExit(f'a model is required to build the {kind} backend')
    if kind == 'transformers':
        return build_backend(kind, model_path_or_model=model, batch_size=args.batch_size,
                             device=args.device)
    if kind == 'lmdeploy':
        return build_backend(kind, model_path=model, engine=args.engine, tp=args.tp,
                             batch_size=args.batch_size)
    if not endpoints:
        raise SystemExit('the openai backend needs endpoints')
    return build_backend(kind, endpoints=endpoints, model=model, api_key=args.api_key,
                         concurrency=args.batch_size)


def _topic(rec: dict, where: str) -> str:
    for k in ('topic', 'entity'):
        if k in rec:
            return rec[k]
    raise SystemExit(f'{where}: no "topic" or "entity" field (keys: {sorted(rec)})')


def _check_unique(items: List[dict], path: str) -> None:
    seen = set()
    for it in items:
        if it['key'] in seen:
            raise SystemExit(f'{path}: key {it["key"]!r} appears twice (add distinct "id"s)')
        seen.add(it['key'])


def load_generations(path: str) -> List[dict]:
    items = []
    for i, rec in enumerate(read_jsonl(path), 1):
        topic = _topic(rec, f'{path}:{i}')
        if 'response' in rec:
            response = rec['response']
        elif rec.get('responses'):
            response = rec['responses'][0]
        else:
            raise SystemExit(f'{path}:{i}: no "response" or non-empty "responses"')
        key = str(rec['id']) if 'id' in rec else topic
        items.append({'key': key, 'topic': topic, 'response': response})
    _check_unique(items, path)
    return items


def load_entities(path: str) -> List[str]:
    if path.endswith('.jsonl'):
        return [_topic(r, f'{path}:{i}') for i, r in enumerate(read_jsonl(path), 1)]
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def generate_responses(args, entities: List[str], backend, tqdm) -> List[dict]:
    """Answer the entities not yet in ``generations.jsonl`` (chunk by chunk, resumably)."""
    if args.do_sample:
        params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, do_sample=True,
                                seed=args.seed)
    else:
        params = dataclasses.replace(SamplingParams.greedy(args.max_new_tokens), seed=args.seed)
    path = os.path.join(args.out_dir, 'generations.jsonl')
    with ResumableJsonlWriter(path, key=lambda r: r['topic']) as w:
        todo = [e for e in dict.fromkeys(entities) if e not in w.done]
        bar = tqdm(total=len(todo), desc='generating')
        for s in range(0, len(todo), args.chunk):
            part = todo[s:s + args.chunk]
            if backend is None:
                backend = make_backend(args.backend, args.model, args.endpoints, args)
            prompts = [[{'role': 'user', 'content': fill(args.prompt_template, entity=e)}]
                       for e in part]
            for e, prompt, out in zip(part, prompts, backend.generate(prompts, params, n=1)):
                w.write({'topic': e, 'prompt': prompt, 'response': out[0], 'model': args.model,
                         'sampling': params.to_dict()})
            bar.update(len(part))
        bar.close()
    by_topic = {r['topic']: r['response'] for r in read_jsonl(path)}
    return [{'key': e, 'topic': e, 'response': by_topic[e]} for e in dict.fromkeys(entities)]


def main(argv=None, backend=None, judge=None) -> dict:
    """Run the evaluation; ``backend`` (policy) and ``judge`` may be injected (tests)."""
    from tqdm import tqdm
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    given = None if args.entities else load_generations(args.generations)
    topics = load_entities(args.entities) if args.entities else [it['topic'] for it in given]
    knowledge = KnowledgeSource(args.knowledge, args.passage_words, topics=set(topics))
    missing = sorted({t for t in topics if t not in knowledge})
    if missing and not args.skip_missing_topics:
        raise SystemExit(f'{len(missing)} topic(s) not in {args.knowledge}: {missing[:10]} '
                         f'(use --skip-missing-topics to leave them out)')

    if args.entities:
        items = generate_responses(args, [t for t in topics if t not in missing], backend, tqdm)
    else:
        items = [it for it in given if it['topic'] not in missing]

    details_path = os.path.join(args.out_dir, 'factscore_details.jsonl')
    with ResumableJsonlWriter(details_path, key=lambda r: r['key']) as w:
        todo = [it for it in items if it['key'] not in w.done]
        if todo and judge is None:
            judge = make_backend(args.judge_backend, args.judge_model, args.judge_endpoints,
                                 args)
        scorer = FactScorer(judge, knowledge, k=args.retrieve_k,
                            extract_prompt=load_prompt(args.extract_prompt),
                            verify_prompt=load_prompt(args.verify_prompt))
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc='scoring')
        for s in range(0, len(todo), args.chunk):
            for rec in scorer.score(todo[s:s + args.chunk]):
                w.write(rec)
            bar.update(len(todo[s:s + args.chunk]))
        bar.close()

    wanted = {it['key'] for it in items}
    details = [d for d in read_jsonl(details_path) if d['key'] in wanted]
    metrics = dict(aggregate(details, args.gamma), n_no_knowledge=len(missing))
    config = {'knowledge': args.knowledge, 'passage_words': args.passage_words,
              'retriever': 'bm25s (lowercase, English stop words)',
              'retrieve_k': args.retrieve_k, 'judge_backend': args.judge_backend,
              'judge_model': args.judge_model,
              'extract_prompt': os.path.basename(args.extract_prompt),
              'verify_prompt': os.path.basename(args.verify_prompt)}
    if args.entities:
        config.update(model=args.model, backend=args.backend, prompt=args.prompt_template,
                      decoding='sampling' if args.do_sample else 'greedy')
    else:
        config['generations'] = args.generations
    with open(os.path.join(args.out_dir, 'factscore.json'), 'w', encoding='utf-8') as f:
        json.dump({'metrics': metrics, 'config': config}, f, indent=2, ensure_ascii=False)
    with open(os.path.join(args.out_dir, 'factscore.md'), 'w', encoding='utf-8') as f:
        f.write(render_markdown(metrics, config))
    print(render_markdown(metrics))
    return metrics


if __name__ == '__main__':
    main()
