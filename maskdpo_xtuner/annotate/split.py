"""Sentence splitting with exact character offsets, for English, Chinese and mixed text.

Answers are annotated sentence by sentence (ANAH-v2 protocol) and the training masks are built
from each sentence's character span, so every :class:`Sentence` indexes the original text:
``text[s.start:s.end] == s.text``, with no surrounding whitespace. Spans are increasing and
non-overlapping; what lies between them (whitespace, list markers) is separator text.

Rules (the same for every language, so mixed EN/ZH text splits correctly):

* Every line break ends a sentence; blank lines produce nothing.
* At the start of a line, list and markdown markers are excluded from the span and may
  repeat: ``1.`` ``2)`` ``(3)`` ``（4）`` ``5、`` ``一、`` ``a)`` ``-`` ``*`` ``+`` ``•``
  ``>`` and ``#``..``######`` headers. A line wholly wrapped in ``**...**`` / ``__...__``
  (a bold title) is unwrapped. Bold inside a line (``**Note:** text``) is kept as is.
* ``。！？；`` end a sentence right away. ``.!?;`` end one when followed by whitespace, the
  end of the line or a CJK character. Closing quotes/brackets (and ``*``) right after the
  terminator belong to the sentence. No end when the next character is ``，,、：:``, or when
  a quote/bracket closed the sentence and a lowercase word follows (``"Stop!" he said``).
* Not sentence ends: a period after an abbreviation, in any case: Mr Mrs Ms Dr Prof St Jr Sr
  vs Inc Ltd Co Corp Mt Gen Col Lt Sgt Gov Sen Rep Rev Dept Univ and the months Jan Feb Mar
  Apr Jun Jul Aug Sep Sept Oct Nov Dec; ``etc.`` unless a capital follows; ``et al.`` before
  a lowercase word; No Nos Fig Figs Vol Approx pp c ca b d fl before a number or a currency
  sign (``No. 5``, ``approx. $5``, ``c. 1500``). Nor after a dotted acronym (U.S. Ph.D.
  U.S.A. e.g. a.m.: parts of one or two letters), after a single capital initial that starts
  a word, ``I`` included as ANAH-v2 does (``J. K. Rowling``, ``I. Introduction``), inside
  numbers (``3.14``), or after a list number inside markup (``**1. Paris**``). A capital
  glued to a digit is no initial: ``H2O.``, ``3D.``, ``4K.`` end a sentence.
* Chinese and English terminators are the same rule: a full-width ``。！？；`` always ends a
  sentence, an ASCII ``!`` or ``?`` in Chinese text ends one before whitespace, a line end or
  a CJK character (``好!我们`` is two sentences), as ``.`` does.
* Ellipses, as ANAH-v2's splitter: in English a run of periods (``...``) followed by
  whitespace ends a sentence; ``…`` ends one before a capital, a CJK character or an opening
  quote. With ``lang='zh'`` no ellipsis ends a sentence (ANAH-v2 splits Chinese only at
  ``。！？；`` and line breaks). This is the only place where ``lang`` matters.
* A line whose text ends with a colon (``Key facts:``) is not a sentence of its own: it
  continues into the next non-blank line, as ANAH-v2 joins ``:`` + whitespace. The merged
  sentence's span then covers the line break and the next line's list marker.
* ``merge_headers=True`` (off by default: ANAH-v2 keeps them as sentences) does the same for
  header lines: a ``#`` header, a line wholly in bold, or a line of at most five words with no
  list marker and no final punctuation (``Early life``). As sentences of their own they come
  back ``nofact`` from the judge, which counts as correct.
* A segment with no letter, digit or non-marker symbol (``-``, ``1.``, ``---``, ``|--|``)
  is dropped.

Known limits: a sentence ending in a single capital (``grade A. Then``, ``and I. Then``) or a
protected abbreviation (``in the U.S. The``) is not split; numbers inside a line
(``Steps: 1. Mix``) are not treated as list markers.
"""
import re
import unicodedata
from typing import List, NamedTuple


class Sentence(NamedTuple):
    start: int   # character offsets into the ORIGINAL text
    end: int
    text: str    # == original_text[start:end]; stripped of surrounding whitespace


_CJK = re.compile('[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff'
                  '\U00020000-\U0002ffff]')
_LATIN_WORD = re.compile(r'[A-Za-z]+')
_LINE = re.compile('[^\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+')  # the breaks str.splitlines uses
_MARKER = re.compile(r'(?:#{1,6}|[-*+•·●◦▪>]|[a-zA-Z]\))(?=\s|$)'
                     r'|\d{1,3}[.)．](?![\d.])|[(（]\d{1,3}[)）]'
                     r'|(?:\d{1,3}|[一二三四五六七八九十]{1,3})、')
_LIST_NUMBER = re.compile(r'\W*\d{1,3}\s*')
_WRAP = re.compile(r'(\*\*|__)(?=\S)(.*\S)\1$')

_TERMS = set('.!?;…。！？；')
_WIDE_TERMS = set('。！？；')
_CLOSERS = set('"\'”’)]}」』》〉）】*')
_OPENERS = set('"\'“‘([（「『《')
_SOFT = set('，,、：:')
_MARKER_SYMBOLS = set('+=|>~^`')
_ABBR = {'mr', 'mrs', 'ms', 'dr', 'prof', 'st', 'jr', 'sr', 'vs', 'inc', 'ltd', 'co', 'corp',
         'mt', 'gen', 'col', 'lt', 'sgt', 'gov', 'sen', 'rep', 'rev', 'dept', 'jan', 'feb',
         'mar', 'apr', 'jun', 'jul', 'aug', 'sep', 'sept', 'oct', 'nov', 'dec', 'univ'}
# only before a number or a currency sign: No. 5, approx. $5, born c. 1500, (b. 1950)
_NUM_ABBR = {'no', 'nos', 'fig', 'figs', 'vol', 'approx', 'pp', 'c', 'ca', 'b', 'd',
             'fl'}
_CURRENCY = set('#$€£¥')


def _is_cjk(ch: str) -> bool:
    return bool(ch) and _CJK.match(ch) is not None


def detect_lang(text: str) -> str:
    """'zh' if CJK characters outnumber Latin words (one CJK character ~ one word), else 'en'."""
    return 'zh' if len(_CJK.findall(text)) > len(_LATIN_WORD.findall(text)) else 'en'


def _protected(text: str, i: int, after: str) -> bool:
    """Whether the single period at ``text[i]`` closes an abbreviation, acronym or initial."""
    k = i
    while k > 0 and (text[k - 1] == '.' or text[k - 1].isalpha() and not _is_cjk(text[k - 1])):
        k -= 1
    tok = text[k:i].lstrip('.')
    if not tok or (k > 0 and text[k - 1].isdigit()):
        return False  # no word, or a word glued to a digit (H2O, 3D, 4K): no abbreviation
    if '.' in tok:  # U.S / Ph.D / e.g / a.m / U.S.A
        return all(1 <= len(part) <= 2 for part in tok.split('.'))
    low = tok.lower()
    if low in _NUM_ABBR and (after.isdigit() or after in _CURRENCY):
        return True
    if low == 'etc':
        return not after.isupper()
    if low == 'al' and text[max(0, k - 3):k].lower() == 'et ':
        return after.islower()
    return low in _ABBR or (len(tok) == 1 and tok.isupper())


def _ends(text: str, s: int, i: int, j: int, b: int, lang: str) -> bool:
    """Whether the terminator run ``text[i:run_end]`` plus closers up to ``j`` ends a sentence."""
    run = text[i:j].rstrip(''.join(_CLOSERS))
    closed = len(run) < j - i
    nxt = text[j] if j < b else ''
    k = j
    while k < b and text[k].isspace():
        k += 1
    after = text[k] if k < b else ''
    if run == '.' and _LIST_NUMBER.fullmatch(text, s, i):
        return False  # "**1." : a list number rather than a sentence
    if not after:
        return True
    if after in _SOFT:
        return False
    if _WIDE_TERMS & set(run):
        return True
    if nxt and not nxt.isspace() and not _is_cjk(nxt):
        return False  # 3.14, U.S.A, a;b, "Wait...what"
    if '…' in run or '..' in run:
        if lang == 'zh':
            return False
        if '..' in run and nxt.isspace():
            return True
        return after.isupper() or _is_cjk(after) or after in _OPENERS
    if run == '.' and _protected(text, i, after):
        return False
    return not (closed and after.islower())


def _has_content(seg: str) -> bool:
    for c in seg:
        cat = unicodedata.category(c)[0]
        if cat in 'LN' or (cat == 'S' and c not in _MARKER_SYMBOLS):
            return True
    return False


def _emit(text: str, s: int, e: int, out: List[Sentence]) -> None:
    while s < e and text[s].isspace():  # ``e`` is a terminator/closer or the stripped line end
        s += 1
    if _has_content(text[s:e]):
        out.append(Sentence(s, e, text[s:e]))


def _line_body(text: str, a: int, b: int):
    """The line ``text[a:b]`` without leading markers, bold-title wrapping and outer spaces,
    and whether it is a header line (see the module doc)."""
    hashed = bold = marked = False
    while True:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        m = _MARKER.match(text, a, b)
        if m:
            hashed |= text[a] == '#'
            marked |= text[a] != '#'
            a = m.end()
            continue
        m = _WRAP.match(text, a, b)
        if m and m.group(1) not in m.group(2):
            a, b, bold = m.start(2), m.end(2), True
            continue
        plain = (not marked and a < b and text[b - 1] not in _TERMS | _CLOSERS
                 and len(text[a:b].split()) <= 5)
        return a, b, hashed or bold or plain


def _split_line(text: str, s: int, a: int, b: int, lang: str, out: List[Sentence]) -> int:
    """Emit the sentences of the line body ``text[a:b]``, the first one starting at ``s``
    (``s < a`` continues a sentence of an earlier line); return the start of the unfinished
    last one."""
    i = a
    while i < b:
        if text[i] not in _TERMS:
            i += 1
            continue
        j = i
        while j < b and text[j] in _TERMS:
            j += 1
        while j < b and text[j] in _CLOSERS:
            j += 1
        if _ends(text, s, i, j, b, lang):
            _emit(text, s, j, out)
            s = j
        i = j
    return s


def split_sentences(text: str, lang: str = 'auto', merge_headers: bool = False
                    ) -> List[Sentence]:
    """Split ``text`` into stripped, non-empty sentences with exact character offsets."""
    if lang == 'auto':
        lang = detect_lang(text)
    elif lang not in ('en', 'zh'):
        raise ValueError(f"lang must be 'auto', 'en' or 'zh', got {lang!r}")
    out: List[Sentence] = []
    pending, end = None, 0  # start of a sentence carried over from a colon (or header) line
    for m in _LINE.finditer(text):
        a, b, header = _line_body(text, m.start(), m.end())
        if not _has_content(text[a:b]):
            continue
        s = _split_line(text, a if pending is None else pending, a, b, lang, out)
        end = b
        if text[b - 1] in ':：' or merge_headers and header:
            pending = s
        else:
            _emit(text, s, b, out)
            pending = None
    if pending is not None:
        _emit(text, pending, end, out)
    return out
