"""FActScore-style evaluation with open models and a local knowledge source, resumably.

Generations to score come from a file (``topic``/``entity`` + ``response``, or the sampler's
output, whose first response is scored) or are generated first from a list of entities
("Tell me a bio of <entity>.", greedy by default). A topic missing from the knowledge source
stops the run before any model call, unless ``skip_missing_topics`` (then it is left out and
counted as ``n_no_knowledge``).

Outputs in ``out_dir``: ``generations.jsonl`` (when generating), ``factscore_details.jsonl``
(per response: sentences, facts, verdicts, raw judge answers, passages used; appended and
resumed by key, so a re-run only scores what is missing),
``factscore.json`` and ``factscore.md`` (metrics over this run's inputs, and the settings).
The scoring itself is :class:`maskdpo_xtuner.evaluation.factscore.FactScorer`.

Both resumable files have manifests (maskdpo_xtuner/io/manifest.py): generations are resumed only
for the same model fingerprint, name, prompt and decoding, details only for the same judge,
prompts, knowledge content, retrieval settings and responses; anything else is refused, naming
what differs (``overwrite=True`` / ``--overwrite`` starts again).
"""
import json
import os
from contextlib import closing
from dataclasses import dataclass
from typing import List, Optional

from maskdpo_xtuner.evaluation.factscore import (BIO_PROMPT, DEFAULT_GAMMA, EXTRACT_PROMPT,
                                                 VERIFY_PROMPT, FactScorer, KnowledgeSource, aggregate, fill,
                                                 load_prompt, render_markdown)
from maskdpo_xtuner.generation.base import SamplingParams
from maskdpo_xtuner.io.jsonl import ResumableJsonlWriter, read_jsonl
from maskdpo_xtuner.io.manifest import content_hash, file_hash, fingerprint
from maskdpo_xtuner.io.validate import (RecordError, check_entity, check_generation,
                                        check_length, iter_text_lines, read_records)
from maskdpo_xtuner.pipeline.annotation import check_sentence_count
from maskdpo_xtuner.pipeline.context import check_context
from maskdpo_xtuner.pipeline.backends import BackendLike, OnDemand, opened


@dataclass(frozen=True)
class FactScoreSettings:
    knowledge: str                      # .jsonl {"title", "text"} or FActScore's SQLite .db
    out_dir: str
    prompt_template: str = BIO_PROMPT   # {entity} is replaced
    params: SamplingParams = SamplingParams.greedy(512)
    extract_prompt: str = EXTRACT_PROMPT
    verify_prompt: str = VERIFY_PROMPT
    retrieve_k: int = 5                 # passages per fact
    passage_words: int = 256
    gamma: float = DEFAULT_GAMMA        # length penalty exp(1 - gamma/n) for n < gamma facts
    #                                     (FActScore's 10, as the CLI; 0 turns it off)
    skip_missing_topics: bool = False
    chunk: int = 64                     # responses per round (one extraction, one verification)
    progress: bool = True
    overwrite: bool = False             # start the outputs again
    on_error: str = 'raise'             # invalid input records: 'raise' or 'skip'


def _topic(rec: dict, where: str) -> str:
    for k in ('topic', 'entity'):
        if k in rec:
            return rec[k]
    raise ValueError(f'{where}: no "topic" or "entity" field (keys: {sorted(rec)})')


def _check_unique(items: List[dict], path: str) -> None:
    seen = {}
    for it in items:
        if it['key'] in seen:
            raise ValueError(f'{path}:{it["line"]}: key {it["key"]!r} is repeated (first used '
                             f'on line {seen[it["key"]]}; add distinct "id"s)')
        seen[it['key']] = it['line']


def _check_scorable(rec: dict):
    check_generation(rec)
    if 'response' in rec:
        check_sentence_count([rec['response']], 'en', 'response')
    else:
        check_sentence_count(rec['responses'][:1], 'en')


def load_generations(path: str, on_error: str = 'raise') -> List[dict]:
    """[{key, topic, response}]: ``id`` is the key if present, else the topic. Every record
    within the length limits (maskdpo_xtuner/io/limits.py)."""
    items = []
    for i, rec in read_records(path, _check_scorable, on_error):
        topic = _topic(rec, f'{path}:{i}')
        if 'response' in rec:
            response = rec['response']
        elif rec.get('responses'):
            response = rec['responses'][0]
        else:
            raise ValueError(f'{path}:{i}: no "response" or non-empty "responses"')
        key = str(rec['id']) if 'id' in rec else topic
        items.append({'key': key, 'topic': topic, 'response': response, 'line': i})
    _check_unique(items, path)
    for it in items:
        del it['line']
    return items


def load_entities(path: str) -> List[str]:
    """Entities: one per line, or JSONL with ``topic`` / ``entity``."""
    if path.endswith('.jsonl'):
        return [_topic(r, f'{path}:{i}') for i, r in read_records(path, check_entity)]
    out = []
    for i, line in iter_text_lines(path):  # UTF-8, line limit, an empty file: named
        try:
            if isinstance(line, RecordError):
                raise line
            check_length(line.strip(), 'question', '<line>')
        except RecordError as err:
            raise err.at(path, i) from None
        out.append(line.strip())
    return out


def generate_responses(s: FactScoreSettings, entities: List[str], policy: BackendLike,
                       model_name: str) -> List[dict]:
    """Answer the entities not yet in ``generations.jsonl`` (chunk by chunk, resumably)."""
    from tqdm import tqdm
    path = os.path.join(s.out_dir, 'generations.jsonl')
    job = {'stage': 'factscore_generate', 'inputs': {'entities': content_hash(entities)},
           'settings': {'model_name': model_name, 'prompt_template': s.prompt_template,
                        'sampling': s.params.to_dict()},
           'model': fingerprint(policy)}
    with ResumableJsonlWriter(path, key=lambda r: r['topic'], manifest=job,
                              overwrite=s.overwrite) as w, \
            closing(OnDemand(policy)) as engine:
        todo = [e for e in dict.fromkeys(entities) if e not in w.done]
        if todo:
            prompts = [[{'role': 'user', 'content': fill(s.prompt_template, entity=e)}]
                       for e in todo]
            fit, _ = check_context(list(zip(todo, prompts)), engine(), s.params.max_new_tokens)
            todo = [todo[k] for k in fit]
        with tqdm(total=len(todo), desc='generating', disable=not s.progress) as bar:
            for i in range(0, len(todo), s.chunk):
                part = todo[i:i + s.chunk]
                prompts = [[{'role': 'user', 'content': fill(s.prompt_template, entity=e)}]
                           for e in part]
                for e, prompt, out in zip(part, prompts,
                                          engine().generate(prompts, s.params, n=1)):
                    w.write({'topic': e, 'prompt': prompt, 'response': str(out[0]),
                             'finish_reason': getattr(out[0], 'finish_reason', None),
                             'model': model_name, 'sampling': s.params.to_dict()})
                bar.update(len(part))
    by_topic = {r['topic']: r['response'] for r in read_jsonl(path)}
    return [{'key': e, 'topic': e, 'response': by_topic[e]} for e in dict.fromkeys(entities)]


def evaluate_factscore(s: FactScoreSettings, judge: BackendLike, judge_name: Optional[str],
                       generations: Optional[str] = None, entities: Optional[str] = None,
                       policy: Optional[BackendLike] = None,
                       model_name: Optional[str] = None) -> dict:
    """Score ``generations`` (a file), or generate answers for ``entities`` with ``policy`` first;
    returns the metrics (also written to ``out_dir``)."""
    from tqdm import tqdm
    if (generations is None) == (entities is None):
        raise ValueError('give exactly one of generations (a file to score) or entities')
    if s.chunk < 1 or s.retrieve_k < 1 or s.passage_words < 1:
        raise ValueError(f'--chunk ({s.chunk}), --retrieve-k ({s.retrieve_k}) and '
                         f'--passage-words ({s.passage_words}) must be >= 1')
    os.makedirs(s.out_dir, exist_ok=True)
    given = None if entities else load_generations(generations, s.on_error)
    topics = load_entities(entities) if entities else [it['topic'] for it in given]
    knowledge = KnowledgeSource(s.knowledge, s.passage_words, topics=set(topics))
    missing = sorted({t for t in topics if t not in knowledge})
    if missing and not s.skip_missing_topics:
        raise ValueError(f'{len(missing)} topic(s) not in {s.knowledge}: {missing[:10]} '
                         f'(use --skip-missing-topics to leave them out)')
    if entities:
        if policy is None:
            raise ValueError('generating answers for entities needs a policy backend')
        items = generate_responses(s, [t for t in topics if t not in missing], policy,
                                   model_name)
    else:
        items = [it for it in given if it['topic'] not in missing]

    details_path = os.path.join(s.out_dir, 'factscore_details.jsonl')
    job = {'stage': 'factscore_score', 'judge': fingerprint(judge),
           'settings': {'judge_name': judge_name, 'retrieve_k': s.retrieve_k,
                        'passage_words': s.passage_words,
                        'extract_prompt': load_prompt(s.extract_prompt),
                        'verify_prompt': load_prompt(s.verify_prompt)},
           'inputs': {'knowledge': file_hash(s.knowledge), 'responses': content_hash(items)}}
    with ResumableJsonlWriter(details_path, key=lambda r: r['key'], manifest=job,
                              overwrite=s.overwrite) as w:
        todo = [it for it in items if it['key'] not in w.done]
        if todo:
            with opened(judge) as engine:
                scorer = FactScorer(engine, knowledge, k=s.retrieve_k,
                                    extract_prompt=load_prompt(s.extract_prompt),
                                    verify_prompt=load_prompt(s.verify_prompt))
                with tqdm(total=len(items), initial=len(items) - len(todo), desc='scoring',
                          disable=not s.progress) as bar:
                    for i in range(0, len(todo), s.chunk):
                        for rec in scorer.score(todo[i:i + s.chunk]):
                            w.write(rec)
                        bar.update(len(todo[i:i + s.chunk]))

    wanted = {it['key'] for it in items}
    details = [d for d in read_jsonl(details_path) if d['key'] in wanted]
    metrics = dict(aggregate(details, s.gamma), n_no_knowledge=len(missing))
    extract, verify = load_prompt(s.extract_prompt), load_prompt(s.verify_prompt)
    config = {'knowledge': {'path': s.knowledge, 'sha256': job['inputs']['knowledge']},
              'passage_words': s.passage_words,
              'retriever': 'bm25s (lowercase, English stop words)',
              'retrieve_k': s.retrieve_k,
              'judge': dict(_name(judge, judge_name), fingerprint=fingerprint(judge),
                            decoding={'extract': SamplingParams.greedy(
                                extract.get('max_new_tokens', 512)).to_dict(),
                                'verify': SamplingParams.greedy(
                                    verify.get('max_new_tokens', 32)).to_dict()}),
              'extract_prompt': {'file': os.path.basename(s.extract_prompt),
                                 'sha256': content_hash(extract)},
              'verify_prompt': {'file': os.path.basename(s.verify_prompt),
                                'sha256': content_hash(verify)}}
    if entities:
        config.update(model=model_name, policy=_name(policy, model_name),
                      prompt=s.prompt_template,
                      decoding='sampling' if s.params.do_sample else 'greedy')
    else:
        config['generations'] = generations
    with open(os.path.join(s.out_dir, 'factscore.json'), 'w', encoding='utf-8') as f:
        json.dump({'metrics': metrics, 'config': config}, f, indent=2, ensure_ascii=False)
    with open(os.path.join(s.out_dir, 'factscore.md'), 'w', encoding='utf-8') as f:
        f.write(render_markdown(metrics, config))
    print(render_markdown(metrics))
    return metrics


def _name(backend, name):
    describe = getattr(backend, 'describe', None)
    return describe() if callable(describe) else {'model': name, 'object': type(backend).__name__}
