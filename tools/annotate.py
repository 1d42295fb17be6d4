"""Label every sentence of sampled responses (ANAH-v2 protocol by default), resumably.

    python tools/annotate.py --input work_dirs/samples.jsonl --out work_dirs/annotated.jsonl \\
        --backend openai --endpoints http://host:23333 --model anah-v2 --documents docs.jsonl

Input: one JSON line per question with ``id``, ``question``, ``responses`` (list of strings),
optional ``lang`` ('en'/'zh', detected from the question when absent) and ``document`` (or
given by ``--documents``, a JSONL of ``{"id", "document"}``). Output: the input line plus
``annotations``, one per response::

    {"sentences": [{"start", "end", "text", "label", "reference"}, ...],
     "n_sentences", "n_hallucinated", "n_unparsed", "score"}

``score`` = non-hallucinated / parsed sentences (None if none is parsed); ``unparsed`` sentences
are counted apart, never as correct. Killed and restarted, the job skips the ids already written.
"""
import argparse
import inspect
import os
import sys
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maskdpo_xtuner.annotate import (SentenceTask, label_counts, pooled_score,  # noqa: E402
                                     resolve_annotator, response_stats)
from maskdpo_xtuner.generation.base import SamplingParams  # noqa: E402
from maskdpo_xtuner.io import ResumableJsonlWriter, iter_jsonl, read_jsonl  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--input', required=True, help="the sampler's JSONL")
    p.add_argument('--out', required=True, help='output JSONL (appended to; resumable)')
    p.add_argument('--documents', help='JSONL of {"id", "document"} (else each line\'s own)')
    p.add_argument('--annotator', default='anah',
                   help="'anah' or an import path 'package.module:ClassName'")
    p.add_argument('--templates', default='auto',
                   help='en | zh | auto (per question language) | PATH to a JSON template set')
    p.add_argument('--backend', default='transformers',
                   choices=['transformers', 'lmdeploy', 'openai'])
    p.add_argument('--model', help='model path (transformers/lmdeploy) or served model name')
    p.add_argument('--endpoints', help='comma-separated server URLs (openai backend)')
    p.add_argument('--max-new-tokens', type=int, default=512)
    p.add_argument('--chunk-questions', type=int, default=64,
                   help='questions whose sentences are annotated in one batch')
    p.add_argument('--batch-size', type=int, default=None,
                   help='max conversations per generate call (default: all of a step)')
    p.add_argument('--save-trace', action='store_true',
                   help="keep each sentence's raw annotator answers ('trace')")
    return p.parse_args(argv)


def build_backend_from_args(args):
    from maskdpo_xtuner.generation import build_backend  # lazy: heavy, and not needed by tests
    if not args.model:
        raise SystemExit('--model is required to build a backend')
    if args.backend == 'openai':
        if not args.endpoints:
            raise SystemExit('--endpoints is required with --backend openai')
        return build_backend('openai', endpoints=args.endpoints.split(','), model=args.model)
    if args.backend == 'lmdeploy':
        return build_backend('lmdeploy', model_path=args.model)
    return build_backend('transformers', model_path_or_model=args.model)


def build_annotator(args, backend=None):
    """The annotator, given only the arguments its constructor accepts; a backend is built
    (or the injected one used) only if it takes one."""
    cls = resolve_annotator(args.annotator)
    accepted = inspect.signature(cls).parameters
    kwargs = {'templates': args.templates, 'batch_size': args.batch_size,
              'params': SamplingParams.greedy(max_new_tokens=args.max_new_tokens)}
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    if 'backend' in accepted:
        kwargs['backend'] = backend if backend is not None else build_backend_from_args(args)
    return cls(**kwargs)


def annotate_chunk(annotator, records: List[dict], documents: Dict, save_trace=False):
    """Annotate all sentences of all responses of ``records`` in one ``annotate`` call."""
    from maskdpo_xtuner.split import detect_lang, split_sentences
    tasks, spans = [], []  # spans[r][j] = the Sentence list of response j of record r
    for rec in records:
        lang = rec.get('lang') or detect_lang(rec['question'])
        spans.append([])
        for j, resp in enumerate(rec['responses']):
            sents = split_sentences(resp, lang=lang)
            spans[-1].append(sents)
            tasks += [SentenceTask(question=rec['question'], sentence=s.text, response=resp,
                                   document=documents.get(rec['id'], ''), lang=lang,
                                   meta={'id': rec['id'], 'response': j, 'sentence': k,
                                         'record': rec})
                      for k, s in enumerate(sents)]
    labels = iter(annotator.annotate(tasks) if tasks else [])
    out = []
    for rec, rec_spans in zip(records, spans):
        anns = []
        for sents in rec_spans:
            items = []
            for s in sents:
                lab = next(labels)
                item = {'start': s.start, 'end': s.end, 'text': s.text, 'label': lab.label,
                        'reference': lab.reference}
                if save_trace:
                    item['trace'] = lab.trace
                items.append(item)
            anns.append({'sentences': items, **response_stats([i['label'] for i in items])})
        out.append({**rec, 'annotations': anns})
    return out


def summarize(path: str) -> dict:
    """Label counts and the pooled score over every record of an annotated file."""
    recs = read_jsonl(path)
    per_resp = [[s['label'] for s in a['sentences']] for r in recs for a in r['annotations']]
    return {'questions': len(recs), 'responses': len(per_resp),
            'sentences': sum(map(len, per_resp)),
            'labels': label_counts(lab for labels in per_resp for lab in labels),
            'pooled_score': pooled_score(per_resp)}


def print_summary(s: dict, path: str) -> None:
    print(f'{path}: {s["questions"]} questions, {s["responses"]} responses, '
          f'{s["sentences"]} sentences')
    for lab, n in s['labels'].items():
        print(f'  {lab:<14}{n:>8}  {n / max(s["sentences"], 1):7.1%}')
    score = s['pooled_score']
    print(f'  pooled score (non-hallucinated / parsed): '
          f'{"n/a" if score is None else f"{score:.4f}"}')
    if s['labels']['unparsed']:
        print(f'  WARNING: {s["labels"]["unparsed"]} unparsed sentences are left out of the '
              'scores (not counted as correct); re-annotate them or check the templates')


def main(argv=None, backend=None, annotator=None) -> dict:
    """Run the CLI. ``backend`` (any object with ``generate``) is given to the annotator instead
    of building one; ``annotator`` (any object with ``annotate``) replaces it altogether."""
    from tqdm import tqdm
    args = parse_args(argv)
    records = read_jsonl(args.input)
    ids = [r.get('id') for r in records]
    if None in ids:
        raise SystemExit(f'{args.input}: line {ids.index(None) + 1} has no "id"')
    if len(set(ids)) != len(ids):
        raise SystemExit(f'{args.input}: duplicate ids')
    documents = {r['id']: r['document'] for r in iter_jsonl(args.documents)} \
        if args.documents else {}
    documents.update({r['id']: r['document'] for r in records if r.get('document')})

    with ResumableJsonlWriter(args.out, key=lambda r: r['id']) as writer:
        todo = [r for r in records if r['id'] not in writer.done]
        if annotator is None and todo:
            annotator = build_annotator(args, backend)
        missing = [r['id'] for r in todo if not documents.get(r['id'])]
        if missing and getattr(annotator, 'needs_document', True):
            raise SystemExit(f'no reference document for question id(s) {missing[:20]}'
                             f'{" ..." if len(missing) > 20 else ""}: the {args.annotator} '
                             'annotator needs one (give a "document" field or --documents)')
        with tqdm(total=len(records), initial=len(records) - len(todo), unit='q',
                  desc='annotate') as bar:
            for k in range(0, len(todo), args.chunk_questions):
                chunk = todo[k:k + args.chunk_questions]
                for rec in annotate_chunk(annotator, chunk, documents, args.save_trace):
                    writer.write(rec)
                bar.update(len(chunk))
    summary = summarize(args.out)
    print_summary(summary, args.out)
    return summary


if __name__ == '__main__':
    main()
