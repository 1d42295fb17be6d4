"""Sample K responses per question, resumably (the paper: K = 32, top-k 40, temperature 0.8).

Input, one JSON object per line: ``{"id": ..., "question": str, "lang": "en"|"zh",
"document": str, ...}`` (``lang``, ``document`` and any other field are optional and copied to
the output; the document is the annotator's reference and is not shown to the model). A line
may carry ``"messages"`` (a chat list) instead, used as the prompt as is.
Output, one line per question: the input fields plus ``prompt`` (the messages sent),
``responses`` (K strings), ``finish_reasons`` (per response: 'stop', 'length' = cut at the
token cap, or null when the backend does not say), ``sampling`` (the parameters) and ``model``.

Resumable: finished questions are written one by one; a restart skips their ids (a half-written
last line is dropped) and does the rest, so each question is written exactly once.
Seeds. With a run seed, question q is sampled with ``derive_seed(seed, q['id'])`` and its copy j
with ``derive_seed(that, j)`` (generation/base.py): its answers depend on the run seed, its id
and j only, not on the batch size, the order, which questions share its batch or where a resumed
run restarted; the same question under two ids gets different answers.
"""
from typing import List, Optional

from ..generation.base import SamplingParams, derive_seed, finish_reason
from ..io import ResumableJsonlWriter, read_jsonl
from .backends import BackendLike, opened


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


def question_seed(seed: int, q: dict) -> int:
    """The seed of one question in a run with seed ``seed``: from the run seed and its id."""
    return derive_seed(seed, q['id'])


def sample(questions: List[dict], out: str, backend: BackendLike, params: SamplingParams,
           n: int, model_name: str, system: Optional[str] = None,
           batch_size: int = 64, progress: bool = True) -> dict:
    """Write ``n`` responses per question to ``out`` (resumed: done ids are skipped).

    ``backend``: a :class:`BackendSpec` or factory (built only if there is work) or a backend.
    ``batch_size``: sequences per ``generate`` call (questions x n). Returns counts.
    """
    from tqdm import tqdm
    if n < 1 or batch_size < 1:
        raise ValueError('n and batch_size must be >= 1')
    cut = 0
    with ResumableJsonlWriter(out, key=lambda r: r['id']) as writer:
        todo = [(i, q) for i, q in enumerate(questions) if q['id'] not in writer.done]
        with tqdm(total=len(questions), initial=len(questions) - len(todo), desc='questions',
                  disable=not progress) as bar:
            if todo:
                with opened(backend) as engine:
                    cut = _sample_todo(todo, writer, engine, params, n, model_name, system,
                                       batch_size, bar)
    return {'questions': len(questions), 'sampled': len(todo), 'cut_at_max_new_tokens': cut}


def _sample_todo(todo, writer, engine, params, n, model_name, system, batch_size, bar) -> int:
    cut = 0
    chunk = max(1, batch_size // n)  # questions whose copies fill a batch
    for s in range(0, len(todo), chunk):
        part = todo[s:s + chunk]
        prompts = [build_prompt(q, system) for _, q in part]
        seeds = None if params.seed is None else [question_seed(params.seed, q) for _, q in part]
        for (_, q), prompt, resp in zip(part, prompts,
                                        engine.generate(prompts, params, n=n, seeds=seeds)):
            reasons = [finish_reason(r) for r in resp]
            cut += reasons.count('length')
            writer.write({**q, 'prompt': prompt, 'responses': [str(r) for r in resp],
                          'finish_reasons': reasons, 'sampling': params.to_dict(),
                          'model': model_name})
            bar.update(1)
    return cut
