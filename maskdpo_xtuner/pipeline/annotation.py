"""Label every sentence of sampled responses (ANAH-v2 protocol by default), resumably.

Input: one record per question with ``id``, ``question``, ``responses`` (list of strings),
optional ``lang`` ('en'/'zh', detected from the question when absent) and ``document`` (or
given separately, ``{id: document}``). Output: the input record plus ``annotations``, one per
response::

    {"sentences": [{"start", "end", "text", "label", "reference"}, ...],
     "n_sentences", "n_hallucinated", "n_unparsed", "score"}

``score`` = non-hallucinated / parsed sentences (None if none is parsed); ``unparsed`` sentences
are counted apart, never as correct. Each record also says which ``annotator`` made it (its
settings and its judge's fingerprint). Killed and restarted, the job skips the ids already
written, if the output was made by the same job (annotator, judge, inputs: its manifest,
maskdpo_xtuner/io/manifest.py); ``overwrite=True`` starts again.
"""
import argparse
import inspect
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from maskdpo_xtuner.annotate import (SentenceTask, label_counts, pooled_score, resolve_annotator,
                                     response_stats)
from maskdpo_xtuner.generation.base import SamplingParams
from maskdpo_xtuner.io.jsonl import ResumableJsonlWriter, read_jsonl
from maskdpo_xtuner.io.manifest import content_hash, fingerprint
from maskdpo_xtuner.io.limits import limit, limit_text
from maskdpo_xtuner.io.validate import (RecordError, check_document, check_sample,
                                        read_records, records as read_checked)
from maskdpo_xtuner.pipeline.backends import BackendLike, add_backend_args, backend_spec, opened


@dataclass(frozen=True)
class AnnotatorSpec:
    """Which annotator, with which settings: ``name`` is 'anah', 'world' or an import path
    'package.module:ClassName'; the other fields go to its constructor if it accepts them."""
    name: str = 'anah'
    templates: str = 'auto'          # en | zh | auto (per question language) | PATH
    batch_size: Optional[int] = None  # conversations per generate call (None: a whole step)
    max_new_tokens: int = 512
    parsing: str = 'official'        # free-form answers: ANAH-v2's official rules | tolerant
    constrain: bool = False          # verdicts constrained to the keywords (backend.choose)

    def needs_backend(self) -> bool:
        return 'backend' in inspect.signature(resolve_annotator(self.name)).parameters

    def build(self, backend=None):
        """The annotator, given only the arguments its constructor accepts (``backend``: a
        built backend, for annotators that take one)."""
        cls = resolve_annotator(self.name)
        accepted = inspect.signature(cls).parameters
        kwargs = {'templates': self.templates, 'batch_size': self.batch_size,
                  'params': SamplingParams.greedy(max_new_tokens=self.max_new_tokens),
                  'parsing': self.parsing, 'constrain': self.constrain}
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if 'backend' in accepted:
            if backend is None:
                raise ValueError(f'the {self.name} annotator needs a judge backend '
                                 '(a judge model and backend)')
            kwargs['backend'] = backend
        return cls(**kwargs)


def annotator_info(annotator, judge=None) -> dict:
    """What annotates, as run records and comparisons need it: the spec's settings, the
    judge's fingerprint (its weights' content hash, or a served model's name), its decoding,
    the *content* hash of its prompt templates, and an exact judge's own description (its
    data and code hash, ``describe()``); or, for an object, its class and the same."""
    if isinstance(annotator, AnnotatorSpec):
        cls = resolve_annotator(annotator.name)
        accepted = inspect.signature(cls).parameters
        info = {**asdict(annotator), 'judge': fingerprint(judge)}
        if 'templates' in accepted:
            from maskdpo_xtuner.annotate import load_templates
            info['templates_sha256'] = content_hash(load_templates(annotator.templates))
        if 'params' in accepted:
            info['decoding'] = SamplingParams.greedy(annotator.max_new_tokens).to_dict()
        if 'backend' not in accepted and callable(getattr(cls, 'describe', None)):
            info['exact'] = cls().describe()
        return info
    info = {'name': getattr(annotator, 'name', None),
            'object': f'{type(annotator).__module__}.{type(annotator).__qualname__}',
            'judge': fingerprint(getattr(annotator, 'backend', None))}
    if callable(getattr(annotator, 'describe', None)):
        info['exact'] = annotator.describe()
    return info


_BREAKS = '.!?;…。！？；\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029'  # where the splitter may cut


def check_sentence_count(responses, lang: str, key: str = 'responses'):
    """RecordError ``too_long`` for a response with more sentences than the limit (each is one
    judge dialogue holding the whole response; maskdpo_xtuner/io/limits.py). Only a response
    with more sentence ends or line breaks than the limit (an upper bound on its sentences)
    is split: real answers never are."""
    from maskdpo_xtuner.annotate.split import split_sentences
    most = limit('sentences')
    for j, resp in enumerate(responses):
        if len(resp) > most and sum(map(resp.count, _BREAKS)) >= most:
            n = len(split_sentences(resp, lang=lang))
            if n > most:
                raise RecordError('too_long', f'{key}[{j}]', f'{n:,} sentences, over '
                                  f'{limit_text("sentences")}')


def check_annotatable(rec: dict):
    """The sampler's record (``check_sample``) within every limit the annotator needs."""
    from maskdpo_xtuner.annotate.split import detect_lang
    check_sample(rec)
    check_sentence_count(rec['responses'], rec.get('lang') or detect_lang(rec['question']))


def annotate_chunk(annotator, records: List[dict], documents: Dict, save_trace=False):
    """Annotate all sentences of all responses of ``records`` in one ``annotate`` call."""
    from maskdpo_xtuner.annotate.split import detect_lang, split_sentences
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


def load_documents(records: List[dict], documents_path: Optional[str] = None,
                   on_error: str = 'raise') -> Dict:
    """{id: reference document}: from a JSONL of ``{"id", "document"}``, then each record's own
    ``document`` field (which wins)."""
    documents = {r['id']: r['document'] for r in
                 read_checked(documents_path, check_document, on_error)} \
        if documents_path else {}
    documents.update({r['id']: r['document'] for r in records if r.get('document')})
    return documents


def annotate(inp: str, out: str, annotator: AnnotatorSpec,
             judge: Optional[BackendLike] = None, documents_path: Optional[str] = None,
             chunk_questions: int = 64, save_trace: bool = False, progress: bool = True,
             overwrite: bool = False, on_error: str = 'raise') -> dict:
    """Annotate the sampler's file ``inp`` into ``out`` (resumed); returns :func:`summarize`.

    ``annotator``: an :class:`AnnotatorSpec` (built only if there is work, with ``judge`` as its
    backend), or any object with ``annotate`` (used as is). ``on_error='skip'``: invalid input
    records are left out and counted (maskdpo_xtuner/io/validate.py).
    """
    from tqdm import tqdm
    numbered, first = read_records(inp, check_annotatable, on_error), {}
    for line, rec in numbered:
        if rec['id'] in first:
            raise ValueError(f'{inp}:{line}: id {rec["id"]!r} is repeated (first used on line '
                             f'{first[rec["id"]]})')
        first[rec['id']] = line
    records = [r for _, r in numbered]
    documents = load_documents(records, documents_path, on_error)
    name = getattr(annotator, 'name', type(annotator).__name__)
    info = annotator_info(annotator, judge)
    job = {'stage': 'annotate', 'settings': {'annotator': info, 'save_trace': save_trace},
           'inputs': {'samples': content_hash(records),
                      'documents': content_hash(list(documents.items()))}}
    with ResumableJsonlWriter(out, key=lambda r: r['id'], manifest=job,
                              overwrite=overwrite) as writer, ExitStack() as stack:
        todo = [r for r in records if r['id'] not in writer.done]
        if todo and isinstance(annotator, AnnotatorSpec):
            engine = None
            if annotator.needs_backend() and judge is not None:
                engine = stack.enter_context(opened(judge))  # closed after this file
            annotator = annotator.build(engine)
        missing = [r['id'] for r in todo if not documents.get(r['id'])]
        if missing and getattr(annotator, 'needs_document', True):
            raise ValueError(f'no reference document for question id(s) {missing[:20]}'
                             f'{" ..." if len(missing) > 20 else ""}: the {name} '
                             'annotator needs one (give a "document" field or --documents)')
        with tqdm(total=len(records), initial=len(records) - len(todo), unit='q',
                  desc='annotate', disable=not progress) as bar:
            for k in range(0, len(todo), chunk_questions):
                chunk = todo[k:k + chunk_questions]
                for rec in annotate_chunk(annotator, chunk, documents, save_trace):
                    writer.write({**rec, 'annotator': info})
                bar.update(len(chunk))
    return summarize(out)


def summarize(path: str) -> dict:
    """Label counts and the pooled score over every record of an annotated file."""
    recs = read_jsonl(path)
    per_resp = [[s['label'] for s in a['sentences']] for r in recs for a in r['annotations']]
    return {'questions': len(recs), 'responses': len(per_resp),
            'sentences': sum(map(len, per_resp)),
            'labels': label_counts(lab for labels in per_resp for lab in labels),
            'pooled_score': pooled_score(per_resp)}


def format_summary(s: dict, path: str) -> str:
    lines = [f'{path}: {s["questions"]} questions, {s["responses"]} responses, '
             f'{s["sentences"]} sentences']
    lines += [f'  {lab:<14}{n:>8}  {n / max(s["sentences"], 1):7.1%}'
              for lab, n in s['labels'].items()]
    score = s['pooled_score']
    lines.append(f'  pooled score (non-hallucinated / parsed): '
                 f'{"n/a" if score is None else f"{score:.4f}"}')
    if s['labels']['unparsed']:
        lines.append(f'  WARNING: {s["labels"]["unparsed"]} unparsed sentences are left out of '
                     'the scores (not counted as correct); re-annotate them or check the '
                     'templates')
    return '\n'.join(lines)


def add_annotator_args(p: argparse.ArgumentParser):
    """The annotator's flags and its judge's backend flags (``--judge-*``), for every tool that
    annotates (tools/annotate.py, tools/eval_anah.py)."""
    g = p.add_argument_group('annotator')
    g.add_argument('--annotator', default='anah',
                   help="'anah', 'world' or an import path 'package.module:ClassName'")
    g.add_argument('--templates', default='auto',
                   help='en | zh | auto (per question language) | PATH to a JSON template set')
    g.add_argument('--judge-max-new-tokens', type=int, default=512)
    g.add_argument('--judge-parsing', choices=('official', 'tolerant'), default='official',
                   help="free-form judge answers: ANAH-v2's official rules (default) or the "
                        'tolerant keyword match (maskdpo_xtuner/annotate/anah.py)')
    g.add_argument('--judge-constrain', action='store_true',
                   help="constrain the judge's verdicts to the keywords (vLLM structured "
                        'outputs, LMDeploy regex, transformers log-prob ranking)')
    g.add_argument('--annotate-batch-size', type=int, default=None,
                   help='max conversations per judge call (default: all of a step)')
    g.add_argument('--documents', help='JSONL of {"id", "document"} (else each line\'s own)')
    g.add_argument('--overwrite', action='store_true',
                   help='start the output again (a resume must match the manifest of the job '
                        'that wrote it: annotator, judge, inputs)')
    add_backend_args(p, prefix='judge-', role='judge', batch_size=64)


def annotator_spec(args) -> AnnotatorSpec:
    return AnnotatorSpec(name=args.annotator, templates=args.templates,
                         batch_size=args.annotate_batch_size,
                         max_new_tokens=args.judge_max_new_tokens,
                         parsing=args.judge_parsing, constrain=args.judge_constrain)


def judge_spec(args):
    """The judge's BackendSpec, or None when the annotator needs no model (e.g. 'world')."""
    return backend_spec(args, 'judge-') if args.judge_model else None
