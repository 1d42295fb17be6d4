"""Sample K responses per question, resumably (the paper: K = 32, top-k 40, temperature 0.8).

Input, one JSON object per line: ``{"id": ..., "question": str, "lang": "en"|"zh",
"document": str, ...}`` (``lang``, ``document`` and any other field are optional and copied to
the output; the document is the annotator's reference and is not shown to the model). A line
may carry ``"messages"`` (a chat list) instead, used as the prompt as is.
Output, one line per question: the input fields plus ``prompt`` (the messages sent),
``responses`` (K strings), ``finish_reasons`` (per response: 'stop', 'length' = cut at the
token cap, or null when the backend does not say), ``sampling`` (the parameters) and ``model``.

Resumable: finished questions are written one by one; a restart skips their ids (a half-written
last line is dropped) and does the rest, so each question is written exactly once. A restart
continues only the same job (settings, questions, model fingerprint: ``<out>.manifest.json``,
maskdpo_xtuner/io/manifest.py), and prompts too long for the model are refused or skipped before
generation (pipeline/context.py).

Seeds. With a run seed, question q is sampled with ``derive_seed(seed, q['id'])`` and its copy j
with ``derive_seed(that, j)`` (generation/base.py): its answers depend on the run seed, its id
and j only, not on the batch size, the order, which questions share its batch or where a resumed
run restarted; the same question under two ids gets different answers.
"""
import sys
from typing import List, Optional

from maskdpo_xtuner.generation.base import SamplingParams, derive_seed, finish_reason
from maskdpo_xtuner.io.jsonl import ResumableJsonlWriter
from maskdpo_xtuner.io.manifest import content_hash, fingerprint
from maskdpo_xtuner.io.validate import check_question, read_records
from maskdpo_xtuner.pipeline.backends import BackendLike, opened
from maskdpo_xtuner.pipeline.context import check_context


def load_questions(path: str, on_error: str = 'raise') -> List[dict]:
    """Read the questions (:func:`maskdpo_xtuner.io.validate.check_question`): every record needs
    a unique ``id`` and a ``question`` or ``messages``."""
    questions, first_seen = [], {}
    for line, q in read_records(path, check_question, on_error):
        if q['id'] in first_seen:
            raise ValueError(f'{path}:{line}: id {q["id"]!r} is repeated (first used on line '
                             f'{first_seen[q["id"]]})')
        first_seen[q['id']] = line
        questions.append(q)
    return questions


def sample_job(questions, backend, params: SamplingParams, n: int, model_name: str,
               system: Optional[str]) -> dict:
    """The manifest of a sampling job (maskdpo_xtuner/io/manifest.py)."""
    return {'stage': 'sample', 'inputs': {'questions': content_hash(questions)},
            'settings': {'n': n, 'sampling': params.to_dict(), 'model_name': model_name,
                         'system': system},
            'model': fingerprint(backend)}


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
           batch_size: int = 64, progress: bool = True, overwrite: bool = False,
           on_error: str = 'raise') -> dict:
    """Write ``n`` responses per question to ``out`` (resumed: done ids are skipped, if ``out``
    was made by the same job: see maskdpo_xtuner/io/manifest.py; ``overwrite`` starts again).

    ``backend``: a :class:`BackendSpec` or factory (built only if there is work) or a backend.
    ``batch_size``: sequences per ``generate`` call (questions x n). ``on_error='skip'``
    leaves out prompts too long for the model (counted) instead of stopping. Returns counts.
    """
    from tqdm import tqdm
    if n < 1 or batch_size < 1:
        raise ValueError('n and batch_size must be >= 1')
    cut, too_long = 0, []
    job = sample_job(questions, backend, params, n, model_name, system)
    with ResumableJsonlWriter(out, key=lambda r: r['id'], manifest=job,
                              overwrite=overwrite) as writer:
        todo = [(i, q) for i, q in enumerate(questions) if q['id'] not in writer.done]
        with tqdm(total=len(questions), initial=len(questions) - len(todo), desc='questions',
                  disable=not progress) as bar:
            if todo:
                with opened(backend) as engine:
                    fit, too_long = check_context(
                        [(q['id'], build_prompt(q, system)) for _, q in todo], engine,
                        params.max_new_tokens, on_error)
                    todo = [todo[k] for k in fit]
                    cut = _sample_todo(todo, writer, engine, params, n, model_name, system,
                                       batch_size, bar)
    for msg in too_long:
        print(f'skipped (prompt_too_long): {msg}', file=sys.stderr)
    return {'questions': len(questions), 'sampled': len(todo), 'cut_at_max_new_tokens': cut,
            'skipped': {'prompt_too_long': len(too_long)}}


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
