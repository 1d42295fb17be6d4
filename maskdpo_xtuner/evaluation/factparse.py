"""Parsing the judge's answers of the FActScore pipeline (maskdpo_xtuner/evaluation/factscore.py), and
abstention detection. Pure text functions, no model.
"""
import re
from typing import Dict, List, Tuple

from maskdpo_xtuner.annotate.split import split_sentences

SUPPORTED, NOT_SUPPORTED, UNPARSED = 'supported', 'not_supported', 'unparsed'

# Checked on the first sentence only (after mapping ’ to '), case-insensitively. A match is
# an abstention only if the sentence does not go on past a contrast ("..., but he was born in
# 1950") and does not only limit what is known ("I don't know much about his early life").
ABSTENTION_PATTERNS = [
    r"\bI (?:do not|don't) know\b",
    r"\bI(?:'m| am) not (?:familiar|aware|sure who)\b",
    r"\bI(?: could not| couldn't| cannot| can't| was unable to| am unable to|'m unable to)"
    r" find\b",
    r"\bI (?:do not|don't) have (?:any |enough |specific |much |reliable )*"
    r"(?:information|details|data)\b",
    r"\bthere (?:is|was) no (?:\w+ ){0,3}information\b",
    r"\bI(?: cannot| can't| am unable to|'m unable to) (?:provide|give|write)\b",
]
_ABSTAIN = re.compile('|'.join(ABSTENTION_PATTERNS), re.IGNORECASE)
_CONTRAST = re.compile(r"\b(?:but|however|although|though|yet|that said|nonetheless|"
                       r"nevertheless|still)\b|;", re.IGNORECASE)
_PARTIAL = re.compile(r"\bI (?:do not|don't) know (?:much|many|a lot|a great deal|everything|"
                      r"all|the (?:details|specifics|exact))\b", re.IGNORECASE)


_MARK = r'^\s*(?:[-*•‣▪]|\d{1,3}[.)]|\(\d{1,3}\))'
_ITEM = re.compile(_MARK + r'\s+(.*\S)\s*$')
_BOLD = re.compile(r'\*\*|__')
_NOTE = re.compile(r'^(?:note|notes|here (?:are|is)|the (?:atomic )?facts?|atomic facts?|facts?)\b'
                   r'.*:$|^note\b', re.IGNORECASE)


def _clean_fact(text: str) -> str:
    return _BOLD.sub('', text).strip().strip('*').strip()


def parse_facts(answer: str, none_answer: str = 'None') -> Tuple[List[str], str]:
    """Facts from an extraction answer and a status: ``ok``, ``none`` (no claim) or
    ``unparsed``. Facts are the list items (``- x``, ``* x``, ``• x``, ``1. x``, ``1) x``,
    ``(1) x``), in order, exact duplicates dropped, markdown bold removed; when there is no
    list item at all, every line of three words or more is a fact except preambles, notes and
    questions (a line ending in ``:`` or ``?`` or starting with "Note"). ``none`` if the
    answer is empty or is the ``none_answer`` / "no facts" as a whole word (so "Nonetheless
    ..." is not none); ``unparsed`` if nothing is left.
    """
    items, lines = [], []
    for line in answer.splitlines():
        m = _ITEM.match(line)
        (items if m else lines).append(_clean_fact(m.group(1) if m else line))
    none = re.compile(rf'^(?:{re.escape(none_answer.lower())}|no (?:atomic )?facts?)\b')
    head = _clean_fact(re.sub(_MARK + r'\s*', '', answer.strip())).strip('"\'`. ').lower()
    if not head or none.match(head):
        return [], 'none'
    facts: List[str] = []
    loose = [ln for ln in lines if len(ln.split()) >= 3 and not _NOTE.match(ln)
             and not ln.endswith(('?', ':'))]
    for fact in items or loose:
        if fact and not none.match(fact.lower().rstrip('.')) and fact not in facts:
            facts.append(fact)
    return (facts, 'ok') if facts else ([], 'unparsed')


_NEGATORS = {'not', 'no', 'never', 'neither', 'nor', 'without', 'cannot', 'none', 'nothing',
             'hardly', 'unable', 'insufficient', 'lack', 'lacks'}
_HEDGES = {'partially', 'partly', 'mostly', 'somewhat', 'half', 'largely', 'possibly',
           'probably', 'likely', 'maybe', 'perhaps', 'mainly', 'arguably'}
_CLAUSE = {'but', 'however', 'although', 'though', 'yet', 'so', 'therefore', 'thus', 'because',
           'while', 'whereas', 'and', 'or'}


def _negated(words: List[str], i: int) -> bool:
    """Whether a negation stands in the clause before ``words[i]`` (back to the previous
    punctuation mark or clause word: "do not say it is true", "no evidence that this is
    true", "so I can't say it's true")."""
    for w in reversed(words[:i]):
        if w in '.,;:!?' or w in _CLAUSE:
            return False
        if w in _NEGATORS or w.endswith("n't"):
            return True
    return False


def parse_verdict(answer: str, answers: Dict[str, List[str]]) -> str:
    """``supported`` / ``not_supported`` / ``unparsed`` from a verification answer.

    The keywords of ``answers`` found as whole words (after markup, quotes and an ``Output:``
    / ``Answer:`` prefix) decide when they all belong to one category. A negation in the
    clause before a keyword ("The passages do not say it is true.", "There is no evidence
    that this is true.") turns a ``supported`` keyword into ``not_supported`` and makes a
    ``not_supported`` one ("not false") ``unparsed``; a hedge anywhere ("Partially true",
    "probably true") makes a ``supported`` verdict ``not_supported``. No keyword, or
    keywords of both kinds ("True or False? ...", "true, not false") give ``unparsed``."""
    text = re.sub(r'[*_`"#]', ' ', answer.replace('’', "'")).strip()
    text = re.sub(r'^(?:output|answer)\s*:\s*', '', text, flags=re.IGNORECASE)
    kw = {k.lower(): cat for cat, ks in answers.items() for k in ks}
    words = re.findall(r"[\w']+|[.,;:!?]", text.lower())
    words = [w.strip("'") or w for w in words]
    cats = set()
    for i, w in enumerate(words):
        if w not in kw:
            continue
        cat = kw[w]
        if _negated(words, i):
            cat = NOT_SUPPORTED if cat == SUPPORTED else UNPARSED
        cats.add(cat)
    if len(cats) != 1 or UNPARSED in cats:
        return UNPARSED
    cat = cats.pop()
    return NOT_SUPPORTED if cat == SUPPORTED and _HEDGES & set(words) else cat


def is_abstention(response: str) -> bool:
    """Empty, or the first sentence matches :data:`ABSTENTION_PATTERNS`, is not a partial
    "I don't know much ..." and has no contrast (but, however, ...) after the match."""
    sents = split_sentences(response.replace('’', "'"), 'en')
    if not sents:
        return True
    first = sents[0].text
    m = _ABSTAIN.search(first)
    if m is None or _PARTIAL.search(first):
        return False
    return _CONTRAST.search(first, m.end()) is None


