"""One input-validation layer for every tool: JSON Lines, UTF-8, and each format's schema.

Every file a tool reads goes through :func:`read_records` with the check of its format
(data/README.md): ``check_question`` (questions), ``check_sample`` (the sampler's output),
``check_annotated`` (the annotator's output), ``check_document``, ``check_generation``
(FactScore inputs). A problem raises :class:`RecordError`, whose text names the file, the line,
the record's id when it has one, and the field::

    ann.jsonl:3: (id 'q7') field 'annotations[0].sentences[1].label': unknown label 'true'; ...

With ``on_error='skip'`` bad records are left out and counted by reason (:class:`Skipped`),
and the count is printed; problems with the file as a whole (a JSON array instead of JSON
Lines) always raise.

Every text a model or a judge reads has a length limit (:mod:`maskdpo_xtuner.io.limits`): a
record over one is an error ``too_long`` naming the field, or is skipped and counted; a line
over the byte limit is never read whole. Training pairs have their own, stricter check
(:mod:`maskdpo_xtuner.dataset.records`), which raises the same :class:`RecordError`.
"""
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Tuple

from maskdpo_xtuner.io.limits import limit, limit_text
from maskdpo_xtuner.labels import KNOWN_LABELS

ON_ERROR = ('raise', 'skip')

def check_length(text: str, name: str, field_name: str):
    """RecordError ``too_long`` when ``text`` is longer than the limit ``name``."""
    if len(text) > limit(name):
        raise RecordError('too_long', field_name, f'{len(text):,} characters, over '
                          f'{limit_text(name)}')


class RecordError(ValueError):
    """A record that cannot be used. ``reason`` is a short key used for skip counts."""

    def __init__(self, reason: str, field_name: str, message: str,
                 source: str = '<record>', line: Optional[int] = None, record_id=None):
        self.reason, self.field, self.message = reason, field_name, message
        self.source, self.line, self.record_id = source, line, record_id
        super().__init__(self._text())

    def _text(self):
        where = self.source if self.line is None else f'{self.source}:{self.line}'
        rid = '' if self.record_id is None else f' (id {self.record_id!r})'
        what = '' if self.field.startswith('<') else f' field {self.field!r}:'  # <line>, <file>
        return f'{where}:{rid}{what} {self.message}'

    def at(self, source: str, line: int, record_id=None) -> 'RecordError':
        self.source, self.line = source, line
        if record_id is not None:
            self.record_id = record_id
        self.args = (self._text(),)
        return self


@dataclass
class Skipped:
    """Records left out with ``on_error='skip'``, by reason, with the first example of each."""
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, err: RecordError):
        self.counts[err.reason] += 1
        self.examples.setdefault(err.reason, str(err))

    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, path: str) -> str:
        lines = [f'{path}: skipped {self.total()} invalid record(s)']
        lines += [f'  {r}: {n}  (e.g. {self.examples[r]})' for r, n in sorted(self.counts.items())]
        return '\n'.join(lines)


def add_on_error_arg(p):
    p.add_argument('--on-error', choices=ON_ERROR, default='raise',
                   help='an invalid input record: stop naming file:line:field (raise), or '
                        'leave it out and count it by reason (skip)')


def iter_text_lines(path: str) -> Iterator[Tuple[int, object]]:
    """(line number, text) of every non-blank line, or a :class:`RecordError` value for a line
    that is not UTF-8 or is over the line limit (never read whole); raises one for a file
    that cannot be read or holds no line at all (an empty input is never what was meant)."""
    try:
        f = open(path, 'rb')
    except OSError as e:
        raise RecordError('unreadable', '<file>', f'cannot read: {e.strerror}', path) from None
    max_line, lineno, seen = limit('line'), 0, False
    with f:
        while True:
            try:
                raw = f.readline(max_line + 1)
            except OSError as e:  # a folder, a device
                raise RecordError('unreadable', '<file>', f'cannot read: {e.strerror}',
                                  path) from None
            if not raw:
                break
            lineno += 1
            if len(raw) > max_line and not raw.endswith(b'\n'):
                size = len(raw) + _skip_line(f)
                seen = True
                yield lineno, RecordError('too_long', '<line>', f'a line of {size:,} bytes, '
                                          f'over {limit_text("line")}', path, lineno)
                continue
            try:
                line = raw.decode('utf-8')
            except UnicodeDecodeError as e:
                seen = True
                yield lineno, RecordError(
                    'not_utf8', '<line>', f'not UTF-8 (byte {e.start} of the line: '
                    f'{raw[e.start:e.start + 4]!r}); save the file as UTF-8', path, lineno)
                continue
            if line.strip():
                seen = True
                yield lineno, line
    if not seen:
        raise RecordError('empty', '<file>', 'no records: the file is empty', path)


def iter_lines(path: str) -> Iterator[Tuple[int, object]]:
    """(line number, parsed JSON value) of every non-blank line (:func:`iter_text_lines`); a
    RecordError value for a line that is not UTF-8, too long or not JSON; raises one for a file
    that is empty or one JSON array."""
    for lineno, line in iter_text_lines(path):
        if isinstance(line, RecordError):
            yield lineno, line
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == 1 and line.lstrip().startswith('['):
                raise RecordError('json_array', '<file>', 'starts a JSON array: this tool '
                                  'reads JSON Lines, one object per line (convert with '
                                  "jq -c '.[]')", path, 1) from None
            value = RecordError('bad_json', '<line>', f'invalid JSON: {e}', path, lineno)
        if lineno == 1 and isinstance(value, list):
            raise RecordError('json_array', '<file>', 'is a JSON array: this tool reads '
                              "JSON Lines, one object per line (convert with jq -c '.[]')",
                              path, 1)
        yield lineno, value


def _skip_line(f) -> int:
    """Read past the rest of the current line in 1 MiB pieces; the bytes skipped."""
    n = 0
    while True:
        piece = f.readline(2 ** 20)
        n += len(piece)
        if not piece or piece.endswith(b'\n'):
            return n


def read_records(path: str, check: Optional[Callable] = None, on_error: str = 'raise',
                 skipped: Optional[Skipped] = None, quiet: bool = False
                 ) -> List[Tuple[int, dict]]:
    """[(line number, record)] of a JSON Lines file, each record an object passing ``check``
    (a function that raises :class:`RecordError`). See the module docstring for ``on_error``;
    ``skipped`` collects what was left out (a new one is made and printed if not given)."""
    if on_error not in ON_ERROR:
        raise ValueError(f'on_error must be one of {ON_ERROR}, got {on_error!r}')
    own = skipped is None
    skipped = Skipped() if own else skipped
    out = []
    for lineno, value in iter_lines(path):
        try:
            if isinstance(value, RecordError):
                raise value
            if not isinstance(value, dict):
                raise RecordError('not_an_object', '<line>', 'expected a JSON object, got '
                                  f'{type(value).__name__}')
            if check is not None:
                check(value)
        except RecordError as err:
            rid = value.get('id') if isinstance(value, dict) else None
            err.at(path, lineno, rid if isinstance(rid, (str, int)) else None)
            if on_error == 'raise':
                raise
            skipped.add(err)
            continue
        out.append((lineno, value))
    if own and skipped.total() and not quiet:
        print(skipped.summary(path), file=sys.stderr)
    return out


def records(path: str, check: Optional[Callable] = None, on_error: str = 'raise',
            skipped: Optional[Skipped] = None) -> List[dict]:
    """The records of :func:`read_records`, without line numbers."""
    return [r for _, r in read_records(path, check, on_error, skipped)]


# ---------------------------------------------------------------- the formats' checks
def _type(rec: dict, key: str, types, what: str, required: bool = True, where: str = ''):
    name = where + key
    if key not in rec:
        if required:
            raise RecordError('missing_field', name, f'missing ({what})')
        return None
    v = rec[key]
    if not isinstance(v, types) or isinstance(v, bool):
        raise RecordError('bad_type', name, f'expected {what}, got {type(v).__name__} '
                          f'{json.dumps(v, ensure_ascii=False)[:60]}')
    return v


def _str_list(rec: dict, key: str, what: str, nonempty: bool = True) -> list:
    v = _type(rec, key, list, what)
    for i, x in enumerate(v):
        if not isinstance(x, str):
            raise RecordError('bad_type', f'{key}[{i}]', f'expected a string, got '
                              f'{type(x).__name__}')
    if nonempty and not v:
        raise RecordError('bad_type', key, f'expected {what}, got an empty list')
    return v


def check_id(rec: dict):
    _type(rec, 'id', (str, int), 'a string or integer id')


def check_messages(value, name: str):
    if not isinstance(value, list) or not value:
        raise RecordError('bad_message', name, 'expected a non-empty list of '
                          '{"role", "content"} messages')
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get('content'), str) \
                or m.get('role') not in ('system', 'user', 'assistant'):
            raise RecordError('bad_message', f'{name}[{i}]', 'expected {"role": system|user|'
                              f'assistant, "content": string}}, got {str(m)[:80]!r}')


def check_question(rec: dict):
    """A question: ``id``, and ``question`` (a string) or ``messages`` (a chat list)."""
    check_id(rec)
    if 'messages' in rec:
        check_messages(rec['messages'], 'messages')
        check_length(''.join(m['content'] for m in rec['messages']), 'question', 'messages')
    elif not (_type(rec, 'question', str, 'the question text (or "messages")') or '').strip():
        raise RecordError('bad_type', 'question', 'empty question')
    else:
        check_length(rec['question'], 'question', 'question')
    _document(rec)
    _type(rec, 'lang', str, "'en' or 'zh'", required=False)


def _document(rec: dict, required: bool = False):
    doc = _type(rec, 'document', str, 'the reference document text', required=required)
    if doc is not None:
        check_length(doc, 'document', 'document')


def check_responses(responses: list, key: str = 'responses'):
    """Every response within the length limit."""
    for i, r in enumerate(responses):
        check_length(r, 'response', f'{key}[{i}]')


def check_sample(rec: dict):
    """The sampler's output: ``id``, ``question``, ``responses`` (a list of strings)."""
    check_id(rec)
    check_length(_type(rec, 'question', str, 'the question text (the annotator shows it to '
                       'the judge)'), 'question', 'question')
    check_responses(_str_list(rec, 'responses', 'a list of response strings', nonempty=False))
    _document(rec)
    _type(rec, 'lang', str, "'en' or 'zh'", required=False)


def check_annotated(rec: dict):
    """The annotator's output: a sample plus one ``annotations`` item per response, whose
    ``sentences`` have ``start``, ``end``, ``text`` (= response[start:end]) and a known
    ``label`` (or ``unparsed``)."""
    check_sample(rec)
    anns = _type(rec, 'annotations', list, 'one annotation per response')
    if len(anns) != len(rec['responses']):
        raise RecordError('length_mismatch', 'annotations', f'{len(anns)} annotations for '
                          f'{len(rec["responses"])} responses')
    labels = KNOWN_LABELS | {'unparsed'}
    for j, (resp, ann) in enumerate(zip(rec['responses'], anns)):
        where = f'annotations[{j}].'
        if not isinstance(ann, dict):
            raise RecordError('bad_type', where[:-1], 'expected {"sentences": [...]}')
        sents = _type(ann, 'sentences', list, 'a list of sentences', where=where)
        prev_end = 0
        for k, s in enumerate(sents):
            w = f'{where}sentences[{k}].'
            if not isinstance(s, dict):
                raise RecordError('bad_type', w[:-1], 'expected {"start", "end", "text", '
                                  '"label"}')
            a = _type(s, 'start', int, 'a character offset', where=w)
            b = _type(s, 'end', int, 'a character offset', where=w)
            text = _type(s, 'text', str, 'the sentence text', where=w)
            label = _type(s, 'label', str, 'a sentence label', where=w)
            if label not in labels:
                raise RecordError('unknown_label', w + 'label', f'unknown sentence label '
                                  f'{label!r}; expected one of {sorted(labels)}')
            check_span(a, b, prev_end, len(resp), w)
            if resp[a:b] != text:
                raise RecordError('bad_span', w + 'start', f'response {j}[{a}:{b}] is '
                                  f'{resp[a:b][:40]!r}, not the sentence {text[:40]!r}')
            prev_end = b


def check_span(start: int, end: int, prev_end: int, length: int, where: str):
    """A sentence span ``[start, end)`` of a ``length``-character text: inside it, not empty,
    and starting at or after the previous sentence's end (in order, no overlap). Python's
    slicing would accept ``[-5, -1]`` or ``[3, 2]``; a span is character offsets."""
    if start < 0 or end > length:
        raise RecordError('bad_span', where + ('start' if start < 0 else 'end'),
                          f'[{start}, {end}] is outside the {length}-character response')
    if end <= start:
        raise RecordError('bad_span', where + 'end', f'[{start}, {end}] is empty or reversed')
    if start < prev_end:
        raise RecordError('bad_span', where + 'start', f'[{start}, {end}] starts before the '
                          f'previous sentence ends ({prev_end}): sentences overlap or are out '
                          'of order')


def check_document(rec: dict):
    check_id(rec)
    _document(rec, required=True)


def check_entity(rec: dict):
    """A FactScore entity: ``topic`` or ``entity`` (a string)."""
    key = 'topic' if 'topic' in rec else 'entity'
    check_length(_type(rec, key, str, 'the entity the answer is about ("topic" or "entity")'),
                 'question', key)


def check_generation(rec: dict):
    """A FactScore input: ``topic`` or ``entity``, and ``response`` or ``responses``."""
    check_entity(rec)
    if 'response' in rec:
        check_length(_type(rec, 'response', str, 'the answer text'), 'response', 'response')
    else:
        check_responses(_str_list(rec, 'responses', 'a non-empty list of answers (the first '
                                  'is scored)'))


# ---------------------------------------------------------------- evaluation files (report)
def read_json(path: str):
    """One JSON document (metrics.json, factscore.json), with the path in every error."""
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read().decode('utf-8'))
    except UnicodeDecodeError as e:
        raise RecordError('not_utf8', '<file>', f'not UTF-8 (byte {e.start})', path) from None
    except json.JSONDecodeError as e:
        raise RecordError('bad_json', '<file>', f'invalid JSON: {e}', path) from None
    except OSError as e:
        raise RecordError('unreadable', '<file>', f'cannot read: {e.strerror}', path) from None


def check_anah_metrics(doc, path: str):
    """tools/eval_anah.py's metrics.json: a non-empty ``runs`` list whose runs evaluated
    something (an empty evaluation is refused, never drawn as a 0 % bar)."""
    try:
        runs = _type(doc if isinstance(doc, dict) else {}, 'runs', list,
                     "a list of runs (tools/eval_anah.py's metrics.json)")
        if not runs:
            raise RecordError('empty', 'runs', 'no runs: nothing was evaluated')
        for i, r in enumerate(runs):
            where = f'runs[{i}].'
            if not isinstance(r, dict):
                raise RecordError('bad_type', where[:-1], 'expected a run object')
            n = _type(r, 'n_sentences', int, 'the number of judged sentences', where=where)
            if n == 0:
                raise RecordError('empty', where + 'n_sentences', f'run {r.get("run")!r} '
                                  'judged 0 sentences: an empty evaluation has no score')
            pq = _type(r, 'per_question', dict, 'per-question counts', where=where)
            counts = _type(pq, 'counts', list, 'a list of label counts',
                           where=where + 'per_question.')
            width = len(pq.get('columns') or []) or None
            for k, row in enumerate(counts):
                if not isinstance(row, list) or not all(
                        isinstance(x, int) and not isinstance(x, bool) for x in row) \
                        or width is not None and len(row) != width:
                    raise RecordError('bad_type', f'{where}per_question.counts[{k}]',
                                      f'expected {width or "a list of"} whole numbers, got '
                                      f'{json.dumps(row)[:60]}')
    except RecordError as err:
        raise err.at(path, None) if err.source == '<record>' else err


def check_factscore_metrics(doc, path: str):
    """tools/eval_factscore.py's factscore.json: ``metrics`` with scored ``per_response``."""
    try:
        m = _type(doc if isinstance(doc, dict) else {}, 'metrics', dict,
                  "the metrics (tools/eval_factscore.py's factscore.json)")
        if not _type(m, 'per_response', list, 'per-response scores', where='metrics.'):
            raise RecordError('empty', 'metrics.per_response', 'no scored response')
    except RecordError as err:
        raise err.at(path, None) if err.source == '<record>' else err
