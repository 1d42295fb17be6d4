"""Read and validate Mask-DPO preference records (the official format, see data/README.md).

One record (one JSON line)::

    {"prompt":   [{"role": "user", "content": "Who was Ada Lovelace?"}],
     "chosen":   [{"role": "assistant", "content": "Ada Lovelace was ... She wrote ..."}],
     "rejected": [{"role": "assistant", "content": "..."}],
     "chosen_item":   {"sents": ["Ada Lovelace was ...", "She wrote ..."],
                       "type":  ["no_hallucination", "hallucination"],
                       "spans": [[0, 21], [22, 40]]},          # optional character spans
     "rejected_item": {...}}

``validate_record`` turns it into a :class:`Pair`: the prompt messages, both response strings and,
for each response, its sentences as ``(start, end, hallucinated)`` character spans into the
response text. Every problem raises :class:`RecordError`, which names the file, the line and the
field. ``read_pairs`` applies that to a JSONL file with ``on_error='raise'`` (default) or
``'skip'`` (drop bad records and count them by reason).
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from maskdpo_xtuner.labels import KNOWN_LABELS, is_hallucinated
from maskdpo_xtuner.io.validate import RecordError, check_length, iter_lines

Span = Tuple[int, int, bool]  # (start, end, hallucinated), character offsets into the response


@dataclass
class Pair:
    prompt: List[dict]
    chosen: str
    rejected: str
    chosen_sentences: List[Span]
    rejected_sentences: List[Span]
    loose_matches: int = 0  # sentences located only after ignoring whitespace
    meta: dict = field(default_factory=dict)


@dataclass
class ReadReport:
    """What ``read_pairs`` kept and dropped."""
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    loose_matches: int = 0
    examples: dict = field(default_factory=dict)  # reason -> first error message

    def drop(self, err: RecordError):
        self.dropped[err.reason] += 1
        self.examples.setdefault(err.reason, str(err))

    def summary(self) -> str:
        lines = [f'kept {self.kept} records, dropped {sum(self.dropped.values())}']
        for reason, n in sorted(self.dropped.items()):
            lines.append(f'  {reason}: {n}  (e.g. {self.examples[reason]})')
        if self.loose_matches:
            lines.append(f'  note: {self.loose_matches} sentences were found only after '
                         'ignoring whitespace differences')
        return '\n'.join(lines)


ROLES = ('system', 'user', 'assistant')


def _messages(value, name: str, default_role: str) -> List[dict]:
    if isinstance(value, str):
        return [{'role': default_role, 'content': value}]
    if not isinstance(value, list) or not value:
        raise RecordError('bad_message', name, 'expected a non-empty list of chat messages '
                          f'or a string, got {type(value).__name__}')
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get('content'), str) \
                or msg.get('role') not in ROLES:
            raise RecordError('bad_message', f'{name}[{i}]', 'expected {"role": one of '
                              f'{list(ROLES)}, "content": string}}, got {str(msg)[:80]!r}')
        out.append({'role': msg['role'], 'content': msg['content']})
    return out


def _response(value, name: str) -> str:
    msgs = _messages(value, name, 'assistant')
    if len(msgs) != 1 or msgs[0]['role'] != 'assistant':
        raise RecordError('bad_message', name,
                          'expected exactly one assistant message, got roles '
                          f'{[m["role"] for m in msgs]}')
    if not msgs[0]['content'].strip():
        raise RecordError('bad_message', name, 'the response is empty')
    return msgs[0]['content']


def _find_ignoring_whitespace(text: str, sent: str, start: int) -> Optional[Tuple[int, int]]:
    """Locate ``sent`` in ``text[start:]`` when the two differ only in whitespace."""
    keep = [i for i in range(start, len(text)) if not text[i].isspace()]
    squeezed = ''.join(text[i] for i in keep)
    target = ''.join(sent.split())
    pos = squeezed.find(target) if target else -1
    if pos < 0:
        return None
    return keep[pos], keep[pos + len(target) - 1] + 1


def locate_sentences(response: str, item, name: str) -> Tuple[List[Span], int]:
    """Character spans of ``item['sents']`` in ``response`` with their labels.

    With ``item['spans']`` the spans are checked (``response[start:end]`` must equal the
    sentence). Without, each sentence is searched in order after the previous one: exactly
    first, then ignoring whitespace (annotation pipelines often re-join whitespace).
    Returns the spans and how many needed the whitespace-insensitive search.
    """
    if not isinstance(item, dict):
        raise RecordError('missing_field', name, 'expected {"sents": [...], "type": [...]}')
    sents, types = item.get('sents'), item.get('type')
    if not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
        raise RecordError('missing_field', f'{name}.sents', 'expected a list of strings')
    if not isinstance(types, list):
        raise RecordError('missing_field', f'{name}.type', 'expected a list of labels')
    if len(sents) != len(types):
        raise RecordError('length_mismatch', name,
                          f'{len(sents)} sentences but {len(types)} labels')
    if not sents:
        raise RecordError('length_mismatch', name, 'no sentences')
    flags = []
    for i, t in enumerate(types):
        if t not in KNOWN_LABELS:
            raise RecordError('unknown_label', f'{name}.type[{i}]',
                              f'unknown label {t!r}; expected one of {sorted(KNOWN_LABELS)}')
        flags.append(is_hallucinated(t))

    spans = item.get('spans')
    out: List[Span] = []
    loose = 0
    if spans is not None:
        if not isinstance(spans, list) or len(spans) != len(sents):
            raise RecordError('bad_span', f'{name}.spans',
                              f'expected {len(sents)} [start, end] pairs')
        prev_end = 0
        for i, (sent, span) in enumerate(zip(sents, spans)):
            ok = (isinstance(span, (list, tuple)) and len(span) == 2
                  and all(isinstance(x, int) for x in span))
            if not ok or not prev_end <= span[0] < span[1] <= len(response):
                raise RecordError('bad_span', f'{name}.spans[{i}]',
                                  f'{span!r} is not an increasing, non-overlapping span '
                                  f'within the {len(response)}-character response')
            if response[span[0]:span[1]] != sent:
                raise RecordError('bad_span', f'{name}.spans[{i}]',
                                  f'response[{span[0]}:{span[1]}] is '
                                  f'{response[span[0]:span[1]]!r}, not the sentence {sent!r}')
            out.append((span[0], span[1], flags[i]))
            prev_end = span[1]
        return out, 0

    cursor = 0
    for i, sent in enumerate(sents):
        if not sent.strip():
            raise RecordError('sentence_not_found', f'{name}.sents[{i}]', 'empty sentence')
        pos = response.find(sent, cursor)
        if pos >= 0:
            start, end = pos, pos + len(sent)
        else:
            found = _find_ignoring_whitespace(response, sent, cursor)
            if found is None:
                raise RecordError('sentence_not_found', f'{name}.sents[{i}]',
                                  f'sentence {sent[:60]!r} not found in the response after '
                                  f'character {cursor}')
            start, end = found
            loose += 1
        out.append((start, end, flags[i]))
        cursor = end
    return out, loose


def validate_record(rec) -> Pair:
    """Check one record and return it as a :class:`Pair` (raises :class:`RecordError`)."""
    if not isinstance(rec, dict):
        raise RecordError('bad_json', '<record>', f'expected a JSON object, got '
                          f'{type(rec).__name__}')
    for key in ('prompt', 'chosen', 'rejected', 'chosen_item', 'rejected_item'):
        if key not in rec:
            raise RecordError('missing_field', key, 'missing')
    prompt = _messages(rec['prompt'], 'prompt', 'user')
    check_length(''.join(m['content'] for m in prompt), 'question', 'prompt')
    chosen = _response(rec['chosen'], 'chosen')
    rejected = _response(rec['rejected'], 'rejected')
    for name, text in (('chosen', chosen), ('rejected', rejected)):
        check_length(text, 'response', name)  # maskdpo_xtuner/io/limits.py
    c_spans, c_loose = locate_sentences(chosen, rec['chosen_item'], 'chosen_item')
    r_spans, r_loose = locate_sentences(rejected, rec['rejected_item'], 'rejected_item')
    meta = {k: rec[k] for k in ('id', 'question_id', 'topic') if k in rec}
    return Pair(prompt, chosen, rejected, c_spans, r_spans, c_loose + r_loose, meta)


def read_pairs(paths, on_error: str = 'raise',
               map_fn: Optional[Callable] = None) -> Tuple[List[Pair], ReadReport]:
    """Validate every record of one or more JSONL files.

    ``on_error='raise'`` stops at the first bad record with an error naming file, line and
    field; ``'skip'`` drops bad records and counts them by reason in the returned report.
    ``map_fn``, if given, converts each parsed JSON record (another format) first.
    """
    if on_error not in ('raise', 'skip'):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    paths = [paths] if isinstance(paths, str) else list(paths)
    pairs, report = [], ReadReport()
    for path in paths:
        for lineno, rec in iter_lines(path):  # not UTF-8, bad JSON: a RecordError value
            try:
                if isinstance(rec, RecordError):
                    raise rec
                if map_fn is not None:
                    rec = _apply(map_fn, rec)
                pair = validate_record(rec)
            except RecordError as err:
                err.at(path, lineno)
                if on_error == 'raise':
                    raise
                report.drop(err)
                continue
            pair.meta.setdefault('source', f'{path}:{lineno}')
            pairs.append(pair)
            report.kept += 1
            report.loose_matches += pair.loose_matches
    return pairs, report


def _apply(map_fn: Callable, rec):
    try:
        return map_fn(rec)
    except RecordError:
        raise
    except Exception as e:  # the user's converter failed on this record: say where
        raise RecordError('map_fn_failed', '<record>',
                          f'dataset_map_fn raised {type(e).__name__}: {e}') from e
