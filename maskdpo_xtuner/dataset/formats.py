"""Preference data from elsewhere -> the project's pair records (data/README.md).

**TRL** (``prompt`` / ``chosen`` / ``rejected``; plain strings, or conversational lists of
``{"role", "content"}`` messages; without ``prompt``, the leading messages the two
conversations share are the prompt, as TRL's implicit-prompt format). A pair without sentence
labels becomes one sentence per answer, the chosen answer labelled correct and the rejected one
hallucinated: every ``mask_mode`` then trains it as DPO over every response token (the masks
have nothing to take away). Where a row carries sentence labels (``chosen_item`` /
``rejected_item`` of the official Mask-DPO format: ``{"sents", "type"[, "spans"]}``), they are
used, side by side. :func:`trl_record` also serves as ``dataset_map_fn``, so a config can read
TRL rows directly.

**ANAH** (the ``opencompass/anah`` release, read from a local copy: JSON Lines, or Parquet).
One record per topic::

    {"name": topic, "documents": reference text (or a list of texts),
     "selected_questions": [question, ...],          ("selected_quetsions" is read too)
     "<MODEL>": [answer to question 0, ...],          e.g. "GPT3.5_answers_D", "InternLM_answers"
     "human_<MODEL>_ann": [[tag per sentence of answer 0], ...], ...}

Every key ``human_<MODEL>_ann`` whose ``<MODEL>`` is also a key names a model's answers. A tag
is the annotation of one sentence, without the sentence's text: ``<Hallucination> None`` (ok),
``<Hallucination> Contradictory``, ``<Hallucination> Unverifiable``, ``<No Fact>`` (nofact), or
their Chinese forms ``<幻觉>无``, ``<幻觉>矛盾``, ``<幻觉>无法验证``, ``<无事实>``; a full
annotation (``<Reference> ...`` lines, ``<Correction> ...``) is read for its tag. Each answer is
split with ``annotate/split.py`` and its sentences are paired with its tags in order; an answer
whose sentence count differs from its tag count is left out and counted (``count_mismatch``),
never shifted. The answers kept become annotation records (one per question) and
:func:`maskdpo_xtuner.pairs.build_pairs` picks chosen and rejected as for our own annotations.

Bad input raises :class:`RecordError` naming file, line (row, for Parquet) and field, or with
``on_error='skip'`` is counted by reason. :func:`write_pairs` writes JSON Lines or Parquet;
:func:`pairs_dataset` gives a ``datasets.Dataset``.
"""
import os
import re
from collections import Counter
from typing import Iterable, Iterator, List, Optional, Tuple

from maskdpo_xtuner.annotate.split import split_sentences
from maskdpo_xtuner.dataset.records import validate_record
from maskdpo_xtuner.io.validate import ON_ERROR, RecordError, Skipped, iter_lines
from maskdpo_xtuner.pairs import build_pairs

FORMATS = ('trl', 'anah')


# ---------------------------------------------------------------- rows of a local file
def iter_rows(path: str) -> Iterator[Tuple[int, object]]:
    """(line or row number, record) of a JSON Lines file or a Parquet file."""
    if path.endswith('.parquet'):
        import pyarrow.parquet as pq
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as e:
            raise RecordError('unreadable', '<file>', f'not a readable Parquet file: {e}',
                              path) from None
        yield from enumerate(table.to_pylist(), 1)
    else:
        yield from iter_lines(path)


def _files(paths) -> List[str]:
    out = []
    for p in [paths] if isinstance(paths, str) else paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.endswith(('.jsonl', '.json', '.parquet')))
            if not found:
                raise RecordError('unreadable', '<file>', 'no .jsonl, .json or .parquet file '
                                  'in this folder', p)
            out += found
        else:
            out.append(p)
    return out


# ---------------------------------------------------------------- TRL
def _messages(value, name: str, role: str) -> List[dict]:
    if isinstance(value, str):
        return [{'role': role, 'content': value}]
    if not isinstance(value, list) or not value:
        raise RecordError('bad_message', name, 'expected a string or a non-empty list of '
                          f'{{"role", "content"}} messages, got {type(value).__name__}')
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get('content'), str) \
                or m.get('role') not in ('system', 'user', 'assistant'):
            raise RecordError('bad_message', f'{name}[{i}]', 'expected {"role": system|user|'
                              f'assistant, "content": string}}, got {str(m)[:80]!r}')
    return [{'role': m['role'], 'content': m['content']} for m in value]


def _answer(messages: List[dict], name: str) -> str:
    if len(messages) != 1 or messages[0]['role'] != 'assistant':
        raise RecordError('bad_message', name, 'expected one assistant message after the '
                          f'prompt, got roles {[m["role"] for m in messages]}')
    if not messages[0]['content'].strip():
        raise RecordError('bad_message', name, 'the answer is empty')
    return messages[0]['content']


def _whole(answer: str, label: str) -> dict:
    a = len(answer) - len(answer.lstrip())
    return {'sents': [answer.strip()], 'type': [label], 'spans': [[a, a + len(answer.strip())]]}


def trl_record(rec) -> dict:
    """One TRL preference row as a pair record (see the module docstring)."""
    if not isinstance(rec, dict):
        raise RecordError('bad_json', '<record>', f'expected a JSON object, got '
                          f'{type(rec).__name__}')
    for key in ('chosen', 'rejected'):
        if key not in rec:
            raise RecordError('missing_field', key, 'missing (TRL rows have prompt, chosen, '
                              'rejected)')
    chosen = _messages(rec['chosen'], 'chosen', 'assistant')
    rejected = _messages(rec['rejected'], 'rejected', 'assistant')
    if 'prompt' in rec:
        prompt = _messages(rec['prompt'], 'prompt', 'user')
    elif isinstance(rec['chosen'], list) and isinstance(rec['rejected'], list):
        n = 0  # implicit prompt: the messages both conversations start with
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        if not prompt:
            raise RecordError('missing_field', 'prompt', 'missing, and the two conversations '
                              'share no leading message to take it from')
    else:
        raise RecordError('missing_field', 'prompt', 'missing (an implicit prompt needs '
                          'conversational chosen and rejected)')
    out = {'prompt': prompt}
    labelled = []
    for side, msgs, label in (('chosen', chosen, 'no_hallucination'),
                              ('rejected', rejected, 'hallucination')):
        text = _answer(msgs, side)
        out[side] = [{'role': 'assistant', 'content': text}]
        item = rec.get(f'{side}_item')
        out[f'{side}_item'] = item if item is not None else _whole(text, label)
        labelled += [side] if item is not None else []
    out['labels'] = '+'.join(labelled) if labelled else 'whole_answers'
    if 'id' in rec:
        out['id'] = str(rec['id'])
    validate_record(out)  # the pair format's own checks (sentences found, labels known)
    return out


trl_map_fn = trl_record  # build_maskdpo_dataset(..., dataset_map_fn=trl_map_fn)


def read_trl(paths, on_error: str = 'raise') -> Tuple[List[dict], dict]:
    """Pair records from TRL rows in JSON Lines or Parquet files, and a report."""
    _check_on_error(on_error)
    pairs, skipped, labels = [], Skipped(), Counter()
    for path in _files(paths):
        for n, rec in iter_rows(path):
            try:
                if isinstance(rec, RecordError):
                    raise rec
                pair = trl_record(rec)
            except RecordError as err:
                err.at(path, n)
                if on_error == 'raise':
                    raise
                skipped.add(err)
                continue
            pair.setdefault('id', f'{os.path.basename(path)}:{n}')
            labels[pair['labels']] += 1
            pairs.append(pair)
    return pairs, {'pairs': len(pairs), 'labels': dict(labels), 'skipped': dict(skipped.counts),
                   'skipped_examples': skipped.examples}


# ---------------------------------------------------------------- ANAH
_TAGS = [  # (label, pattern); the order matters: 无 (none) is a prefix of 无法验证
    ('nofact', re.compile(r'<\s*no\s*facts?\s*>|<\s*无事实\s*>', re.I)),
    ('unverifiable', re.compile(r'<\s*hallucination\s*>\s*unverifiable|<\s*幻觉\s*>\s*无法验证',
                                re.I)),
    ('contradictory', re.compile(r'<\s*hallucination\s*>\s*contradictory|<\s*幻觉\s*>\s*矛盾',
                                 re.I)),
    ('ok', re.compile(r'<\s*hallucination\s*>\s*none\b|<\s*幻觉\s*>\s*无', re.I)),
]


def anah_label(tag: str) -> Optional[str]:
    """The label (ok, nofact, contradictory, unverifiable) of one ANAH annotation, or None."""
    for label, pattern in _TAGS:
        if isinstance(tag, str) and pattern.search(tag):
            return label
    return None


def _document(rec) -> Optional[str]:
    doc = rec.get('documents')
    if isinstance(doc, list) and all(isinstance(d, str) for d in doc):
        return '\n\n'.join(doc)
    return doc if isinstance(doc, str) else None


def anah_questions(rec, source: str = '') -> Tuple[List[dict], Counter]:
    """The annotation records (one per question) of one ANAH topic record, and the count of
    answers left out by reason. Raises :class:`RecordError` on malformed fields."""
    if not isinstance(rec, dict):
        raise RecordError('bad_json', '<record>', 'expected a JSON object')
    qkey = next((k for k in ('selected_questions', 'selected_quetsions') if k in rec), None)
    if qkey is None:
        raise RecordError('missing_field', 'selected_questions', 'missing (an ANAH topic '
                          f'record; its keys are {sorted(rec)[:12]})')
    questions = rec[qkey]
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise RecordError('bad_type', qkey, 'expected a list of question strings')
    models = sorted(k[len('human_'):-len('_ann')] for k in rec
                    if k.startswith('human_') and k.endswith('_ann')
                    and k[len('human_'):-len('_ann')] in rec)
    if not models:
        raise RecordError('missing_field', 'human_<MODEL>_ann', "no model's annotated answers "
                          '(a key <MODEL> with its annotations human_<MODEL>_ann)')
    for m in models:
        for key in (m, f'human_{m}_ann'):
            if not isinstance(rec[key], list) or len(rec[key]) != len(questions):
                raise RecordError('length_mismatch', key, f'expected a list of {len(questions)} '
                                  f'entries, one per question')
    out, left_out = [], Counter()
    for i, question in enumerate(questions):
        responses, annotations, names = [], [], []
        for m in models:
            answer, tags, where = rec[m][i], rec[f'human_{m}_ann'][i], f'human_{m}_ann[{i}]'
            if answer is None or tags is None:
                left_out['missing_answer'] += 1
                continue
            if not isinstance(answer, str) or not isinstance(tags, list):
                raise RecordError('bad_type', f'{m}[{i}]' if not isinstance(answer, str) else
                                  where, 'expected an answer string and a list of tags')
            labels = []
            for k, tag in enumerate(tags):
                label = anah_label(tag)
                if label is None:
                    raise RecordError('unknown_tag', f'{where}[{k}]', f'no hallucination tag in '
                                      f'{str(tag)[:80]!r}')
                labels.append(label)
            sentences = split_sentences(answer)
            if len(sentences) != len(labels) or not labels:
                left_out['count_mismatch'] += 1  # ANAH split differently: never shifted
                continue
            responses.append(answer)
            names.append(m)
            annotations.append({'sentences': [{'start': s.start, 'end': s.end, 'text': s.text,
                                               'label': lab} for s, lab in zip(sentences, labels)]})
        out.append({'id': f'{source}/q{i}', 'topic': rec.get('name'), 'question': question,
                    'document': _document(rec), 'responses': responses, 'models': names,
                    'annotations': annotations})
    return out, left_out


def read_anah(paths, on_error: str = 'raise', seed: int = 0) -> Tuple[List[dict], dict]:
    """Pair records from a local copy of the ANAH release (files or folders), and a report."""
    _check_on_error(on_error)
    records, skipped, left_out, topics, answers = [], Skipped(), Counter(), 0, 0
    for path in _files(paths):
        for n, rec in iter_rows(path):
            try:
                if isinstance(rec, RecordError):
                    raise rec
                qs, lost = anah_questions(rec, f'{os.path.basename(path)}:{n}')
            except RecordError as err:
                err.at(path, n)
                if on_error == 'raise':
                    raise
                skipped.add(err)
                continue
            topics += 1
            left_out.update(lost)
            answers += sum(len(q['responses']) for q in qs) + sum(lost.values())
            records += qs
    pairs, summary = build_pairs(records, seed=seed)
    topic = {r['id']: r['topic'] for r in records}
    for p in pairs:
        p['topic'] = topic[p['id']]
    return pairs, {'topics': topics, 'questions': len(records), 'answers': answers,
                   'answers_left_out': dict(left_out), 'skipped': dict(skipped.counts),
                   'skipped_examples': skipped.examples, 'pairs': len(pairs),
                   'pairing': summary}


# ---------------------------------------------------------------- export
COLUMNS = ('id', 'prompt', 'chosen', 'rejected', 'chosen_item', 'rejected_item')


def pairs_dataset(pairs: Iterable[dict]):
    """The pairs as a ``datasets.Dataset`` (every row with the same columns; ids as text)."""
    from datasets import Dataset
    rows = [dict(p, id=str(p.get('id', i))) for i, p in enumerate(pairs)]
    keys = list(COLUMNS) + sorted({k for r in rows for k in r} - set(COLUMNS))
    return Dataset.from_list([{k: r.get(k) for k in keys} for r in rows])


def write_pairs(pairs: List[dict], out: str) -> None:
    """JSON Lines (``.jsonl``) or Parquet (``.parquet``)."""
    if out.endswith('.parquet'):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        pairs_dataset(pairs).to_parquet(out)
    else:
        from maskdpo_xtuner.io.jsonl import write_jsonl
        write_jsonl(out, pairs)


def read_format(fmt: str, paths, on_error: str = 'raise') -> Tuple[List[dict], dict]:
    if fmt not in FORMATS:
        raise ValueError(f'format must be one of {FORMATS}, got {fmt!r}')
    return (read_trl if fmt == 'trl' else read_anah)(paths, on_error)


def _check_on_error(on_error):
    if on_error not in ON_ERROR:
        raise ValueError(f'on_error must be one of {ON_ERROR}, got {on_error!r}')
