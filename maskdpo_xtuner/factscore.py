"""FActScore-style factual precision (Min et al., EMNLP 2023) with open models, offline.

Pipeline for one ``(topic, response)`` pair:

1. **Abstention.** A response whose first sentence matches :data:`ABSTENTION_PATTERNS`
   ("I don't know", "I'm not familiar with", "I couldn't find any information", ...) or that is
   empty is *non-responding*; nothing is sent to the judge.
2. **Atomic facts.** The response is split with :func:`maskdpo_xtuner.split.split_sentences`;
   the judge breaks each sentence into facts (prompt ``maskdpo_xtuner/prompts/factscore_atomic_facts.json``,
   one fact per line starting with ``- ``; :func:`parse_facts`). All sentences of all responses
   of a call to :meth:`FactScorer.score` go to ONE ``generate`` call.
3. **Retrieval.** BM25 (``bm25s``, lowercase, English stop words, no stemming) over the passages
   of the topic's own article, query ``topic + " " + fact``, top ``k = 5``.
4. **Verification.** The judge gets the passages (most relevant last, nearest the question, as in
   FActScore) and ``Input: <fact> True or False?\\nOutput:``
   (``maskdpo_xtuner/prompts/factscore_verify.json``); :func:`parse_verdict` gives ``supported`` /
   ``not_supported`` / ``unparsed``. ONE ``generate`` call for all facts.

Scores (:func:`aggregate`). A response is *responding* unless it abstains or yields no fact.
With ``S`` supported and ``U`` not-supported facts (``unparsed`` verdicts are counted and
reported, never scored), a response's score is ``s = S / (S + U)``; with a length penalty
``gamma > 0`` and ``n = S + U < gamma``, ``s * exp(1 - gamma / n)``. FActScore is the mean of
``s`` over responding responses with ``S + U > 0`` (a per-response mean, not
``mean(S) / (mean(S) + mean(U))``). Also: response ratio (responding / all), facts per
responding response, ``#Cor`` = mean ``S`` and ``#Inc`` = mean ``U`` over responding responses
(the Mask-DPO paper's columns), unparsed facts and unparsed extraction answers.

Knowledge source (:class:`KnowledgeSource`), looked up by exact title:

* JSONL, one ``{"title": str, "text": str | [str, ...]}`` per line: whole articles, or already
  split passages with the title repeated. Records of one title are concatenated in file order.
* SQLite in FActScore's layout: table ``documents(title, text)``, one row per title, ``text`` =
  passages joined by ``####SPECIAL####SEPARATOR####``; the ``<s>`` / ``</s>`` markers that
  FActScore's RoBERTa decoding leaves in the text are removed.

Every text unit (a JSONL record's text or list item, a SQLite passage) is split into sentences
and packed into passages of at most ``passage_words`` whitespace words (default 256); units are
never merged, so already split passages stay as they are, and only a sentence longer than the
limit is cut mid-sentence. A topic missing from the source is an error unless the caller skips
it (``tools/eval_factscore.py --skip-missing-topics`` counts it as ``no_knowledge``).

Differences from the original FActScore: any open chat model judges through
:class:`~maskdpo_xtuner.generation.base.Backend` (not InstructGPT / ChatGPT / Inst-LLaMA + NPM);
the verdict is parsed from generated text (no True/False logit comparison); BM25 replaces
GTR-T5-large; passages are <= 256 words instead of <= 256 RoBERTa tokens (about 190 words);
sentences are split by our splitter (not NLTK); facts are extracted with our own prompt and
fixed demos (FActScore picks demos by BM25), may name the topic instead of a pronoun, and exact
duplicates within a sentence are dropped; unparsed verdicts are excluded (FActScore falls back
to keyword heuristics); the length penalty is off by default (FActScore's later versions use
``gamma = 10``), and ``n`` counts scored facts.
"""
import json
import math
import os
import re
import sqlite3
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .generation.base import Backend, SamplingParams
from .io import iter_jsonl
from .split import split_sentences

PROMPT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'prompts')  # package data
EXTRACT_PROMPT = os.path.join(PROMPT_DIR, 'factscore_atomic_facts.json')
VERIFY_PROMPT = os.path.join(PROMPT_DIR, 'factscore_verify.json')
BIO_PROMPT = 'Tell me a bio of {entity}.'
SQLITE_SEPARATOR = '####SPECIAL####SEPARATOR####'
SUPPORTED, NOT_SUPPORTED, UNPARSED = 'supported', 'not_supported', 'unparsed'

# Checked on the first sentence only (after mapping ’ to '), case-insensitively.
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


# ---------------------------------------------------------------------------- knowledge

def split_passages(texts, max_words: int = 256) -> List[str]:
    """Pack the sentences of each text unit into passages of at most ``max_words`` words."""
    if isinstance(texts, str):
        texts = [texts]
    out = []
    for text in texts:
        cur: List[str] = []
        for sent in split_sentences(text, 'en'):
            words = sent.text.split()
            if cur and len(cur) + len(words) > max_words:
                out.append(' '.join(cur))
                cur = []
            while len(words) > max_words:  # only a sentence longer than a passage is cut
                out.append(' '.join(words[:max_words]))
                words = words[max_words:]
            cur += words
        if cur:
            out.append(' '.join(cur))
    return out


def _tokenize(texts: List[str]) -> List[List[str]]:
    import bm25s
    return bm25s.tokenize(texts, lower=True, stopwords='en', return_ids=False,
                          show_progress=False)


class KnowledgeSource:
    """Passages per topic title from a JSONL or FActScore-layout SQLite file (see module doc).

    ``topics``: with a JSONL file, keep only these titles in memory (a SQLite file is read
    lazily anyway).
    """

    def __init__(self, path: str, passage_words: int = 256,
                 topics: Optional[Iterable[str]] = None):
        self.path, self.passage_words = path, passage_words
        self._units: Dict[str, List[str]] = {}
        self._db = None
        self._cache: Dict[str, Tuple[List[str], object]] = {}
        if self._is_sqlite(path):
            self._db = sqlite3.connect(path)
            self._db.execute('SELECT title, text FROM documents LIMIT 1')  # checks the layout
        else:
            wanted = None if topics is None else set(topics)
            for i, rec in enumerate(iter_jsonl(path), 1):
                if 'title' not in rec or 'text' not in rec:
                    raise ValueError(f'{path}: record {i} needs "title" and "text"')
                if wanted is None or rec['title'] in wanted:
                    text = rec['text']
                    self._units.setdefault(rec['title'], []).extend(
                        [text] if isinstance(text, str) else text)

    @staticmethod
    def _is_sqlite(path: str) -> bool:
        with open(path, 'rb') as f:
            return f.read(16) == b'SQLite format 3\x00'

    def _lookup(self, topic: str) -> Optional[List[str]]:
        if self._db is None:
            return self._units.get(topic)
        row = self._db.execute('SELECT text FROM documents WHERE title = ?',
                               (topic,)).fetchone()
        if row is None:
            return None
        units = [p.replace('<s>', '').replace('</s>', '').strip()
                 for p in row[0].split(SQLITE_SEPARATOR)]
        return [u for u in units if u]

    def __contains__(self, topic: str) -> bool:
        return topic in self._cache or self._lookup(topic) is not None

    def _entry(self, topic: str):
        if topic not in self._cache:
            units = self._lookup(topic)
            if units is None:
                raise KeyError(f'topic {topic!r} is not a title in {self.path}')
            passages = split_passages(units, self.passage_words)
            index = None
            if passages:
                import bm25s
                index = bm25s.BM25()
                index.index(_tokenize(passages), show_progress=False)
            self._cache[topic] = (passages, index)
        return self._cache[topic]

    def passages(self, topic: str) -> List[str]:
        return self._entry(topic)[0]

    def retrieve(self, topic: str, query: str, k: int = 5) -> List[Tuple[int, float]]:
        """The ``k`` best passages of ``topic`` for ``query`` as ``(passage index, BM25
        score)``, best first; ties keep article order."""
        passages, index = self._entry(topic)
        if not passages:
            return []
        tokens = _tokenize([query])[0]
        scores = index.get_scores(tokens) if tokens else [0.0] * len(passages)
        order = sorted(range(len(passages)), key=lambda i: (-float(scores[i]), i))[:k]
        return [(i, float(scores[i])) for i in order]


# ---------------------------------------------------------------------------- prompts

def load_prompt(path: str) -> dict:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def fill(template: str, **values: str) -> str:
    """Replace ``{name}`` for the given names only, in one pass (values are not re-scanned, and
    any other brace is literal)."""
    pattern = re.compile(r'\{(' + '|'.join(map(re.escape, values)) + r')\}')
    return pattern.sub(lambda m: values[m.group(1)], template)


def _chat(prompt: dict, turns: List[Tuple[str, str]], user: str) -> List[dict]:
    msgs = [{'role': 'system', 'content': prompt['system']}] if prompt.get('system') else []
    for u, a in turns:
        msgs += [{'role': 'user', 'content': u}, {'role': 'assistant', 'content': a}]
    return msgs + [{'role': 'user', 'content': user}]


def extraction_conversation(prompt: dict, topic: str, sentence: str) -> List[dict]:
    """System message, one user/assistant turn pair per demo, then this sentence."""
    demos = [(fill(prompt['template'], topic=d['topic'], sentence=d['sentence']),
              '\n'.join('- ' + f for f in d['facts']) if d['facts'] else prompt['none_answer'])
             for d in prompt.get('demos', [])]
    return _chat(prompt, demos, fill(prompt['template'], topic=topic, sentence=sentence))


def verification_conversation(prompt: dict, topic: str, fact: str,
                              passages: Sequence[str]) -> List[dict]:
    """``passages`` best first; they are shown in reverse, the best nearest the question."""
    shown = prompt['passage_separator'].join(
        fill(prompt['passage_template'], title=topic, text=p) for p in reversed(passages))
    return _chat(prompt, [], fill(prompt['template'], topic=topic, fact=fact, passages=shown))


# ---------------------------------------------------------------------------- parsing

_MARK = r'^\s*(?:[-*•‣▪]|\d{1,3}[.)]|\(\d{1,3}\))'
_ITEM = re.compile(_MARK + r'\s+(.*\S)\s*$')


def parse_facts(answer: str, none_answer: str = 'None') -> Tuple[List[str], str]:
    """Facts from an extraction answer and a status: ``ok``, ``none`` (no claim) or
    ``unparsed``. Facts are the list items (``- x``, ``* x``, ``• x``, ``1. x``, ``1) x``,
    ``(1) x``), in order, exact duplicates dropped; other lines (preambles, notes) are ignored.
    No item: ``none`` if the answer is empty or starts with ``none_answer`` / "no fact",
    else ``unparsed``."""
    facts = []
    for line in answer.splitlines():
        m = _ITEM.match(line)
        if m:
            fact = m.group(1).strip().strip('*').strip()
            if fact and fact.lower().rstrip('.') != none_answer.lower() and fact not in facts:
                facts.append(fact)
    if facts:
        return facts, 'ok'
    head = re.sub(_MARK + r'\s*', '', answer.strip()).strip('*"\'`. ').lower()
    none = not head or head.startswith(none_answer.lower()) or head.startswith('no fact')
    return [], 'none' if none else 'unparsed'


def parse_verdict(answer: str, answers: Dict[str, List[str]]) -> str:
    """``supported`` / ``not_supported`` / ``unparsed`` from a verification answer.

    The answer's first word (after markup, quotes and an ``Output:`` / ``Answer:`` prefix)
    decides if it is a keyword of ``answers``. Otherwise the keywords found as whole words
    anywhere decide if they all belong to one category and none follows "not"; anything else
    (no keyword, both kinds, "not true") is ``unparsed``."""
    text = re.sub(r'[*_`"\'#]', ' ', answer.replace('’', "'")).strip()
    text = re.sub(r'^(?:output|answer)\s*:\s*', '', text, flags=re.IGNORECASE)
    kw = {k.lower(): cat for cat, ks in answers.items() for k in ks}
    words = re.findall(r"[\w']+", text.lower())
    if words and words[0] in kw:
        return kw[words[0]]
    found = [(i, kw[w]) for i, w in enumerate(words) if w in kw]
    cats = {c for _, c in found}
    negated = any(i > 0 and words[i - 1] in ('not', "isn't", "n't") for i, _ in found)
    return cats.pop() if len(cats) == 1 and not negated else UNPARSED


def is_abstention(response: str) -> bool:
    """Empty, or the first sentence matches :data:`ABSTENTION_PATTERNS`."""
    sents = split_sentences(response.replace('’', "'"), 'en')
    return not sents or _ABSTAIN.search(sents[0].text) is not None


# ---------------------------------------------------------------------------- scoring

def _generate(judge: Backend, convs: List[List[dict]], params: SamplingParams,
              batch_size: Optional[int]) -> List[str]:
    out: List[str] = []
    step = batch_size or max(1, len(convs))
    for s in range(0, len(convs), step):
        out += [c[0] for c in judge.generate(convs[s:s + step], params, n=1)]
    return out


class FactScorer:
    """Scores ``(topic, response)`` items with a judge backend and a knowledge source.

    ``batch_size``: max conversations per ``generate`` call (None: one call per stage).
    """

    def __init__(self, judge: Backend, knowledge: KnowledgeSource, k: int = 5,
                 extract_prompt: Optional[dict] = None, verify_prompt: Optional[dict] = None,
                 batch_size: Optional[int] = None):
        self.judge, self.knowledge, self.k, self.batch_size = judge, knowledge, k, batch_size
        self.extract_prompt = extract_prompt or load_prompt(EXTRACT_PROMPT)
        self.verify_prompt = verify_prompt or load_prompt(VERIFY_PROMPT)

    def score(self, items: List[dict]) -> List[dict]:
        """One detail record per item (``{"topic", "response", ...}``; other fields are
        copied): ``abstained``, ``responding``, ``sentences`` [{text, facts, extraction}],
        ``facts`` [{text, sentence, label, answer, passages, bm25}], ``passages``
        {index: text}, ``n_facts``, ``n_supported``, ``n_not_supported``, ``n_unparsed`` and
        ``score`` = S / (S + U) (None if no fact was scored)."""
        ep, vp = self.extract_prompt, self.verify_prompt
        recs, jobs = [], []
        for item in items:
            rec = dict(item, abstained=is_abstention(item['response']), sentences=[], facts=[],
                       passages={})
            if not rec['abstained']:
                for s in split_sentences(item['response']):
                    rec['sentences'].append({'text': s.text, 'facts': [], 'extraction': None})
                    jobs.append((rec, len(rec['sentences']) - 1))
            recs.append(rec)

        # stage 1: atomic facts, one generate call
        convs = [extraction_conversation(ep, r['topic'], r['sentences'][i]['text'])
                 for r, i in jobs]
        params = SamplingParams.greedy(ep.get('max_new_tokens', 512))
        answers = _generate(self.judge, convs, params, self.batch_size) if convs else []
        for (rec, i), ans in zip(jobs, answers):
            facts, status = parse_facts(ans, ep.get('none_answer', 'None'))
            sent = rec['sentences'][i]
            sent.update(facts=facts, extraction=status)
            if status == 'unparsed':
                sent['raw'] = ans
            rec['facts'] += [{'text': f, 'sentence': i} for f in facts]

        # stage 2: retrieval; stage 3: verification, one generate call
        convs, fact_jobs = [], []
        for rec in recs:
            for fact in rec['facts']:
                hits = self.knowledge.retrieve(rec['topic'], rec['topic'] + ' ' + fact['text'],
                                               self.k)
                texts = [self.knowledge.passages(rec['topic'])[j] for j, _ in hits]
                fact.update(passages=[j for j, _ in hits], bm25=[round(s, 4) for _, s in hits])
                rec['passages'].update({str(j): t for (j, _), t in zip(hits, texts)})
                convs.append(verification_conversation(vp, rec['topic'], fact['text'], texts))
                fact_jobs.append(fact)
        params = SamplingParams.greedy(vp.get('max_new_tokens', 32))
        answers = _generate(self.judge, convs, params, self.batch_size) if convs else []
        for fact, ans in zip(fact_jobs, answers):
            fact.update(label=parse_verdict(ans, vp['answers']), answer=ans)

        for rec in recs:
            labels = [f['label'] for f in rec['facts']]
            sup, uns = labels.count(SUPPORTED), labels.count(NOT_SUPPORTED)
            rec.update(responding=bool(labels), n_facts=len(labels), n_supported=sup,
                       n_not_supported=uns, n_unparsed=labels.count(UNPARSED),
                       score=sup / (sup + uns) if sup + uns else None)
        return recs


def length_penalty(n: int, gamma: float) -> float:
    """``exp(1 - gamma / n)`` when ``0 < n < gamma``, else 1."""
    return math.exp(1 - gamma / n) if gamma > 0 and 0 < n < gamma else 1.0


def _mean(xs: List[float]) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


def aggregate(details: List[dict], gamma: float = 0.0) -> dict:
    """Metrics over detail records (see the module doc); scores in percent."""
    responding = [d for d in details if d['responding']]
    scored = [d for d in responding if d['n_supported'] + d['n_not_supported']]
    raw = [d['n_supported'] / (d['n_supported'] + d['n_not_supported']) for d in scored]
    pen = [s * length_penalty(d['n_supported'] + d['n_not_supported'], gamma)
           for s, d in zip(raw, scored)]
    pct = (lambda x: None if x is None else 100 * x)
    return {
        'factscore': pct(_mean(pen)),
        'factscore_no_penalty': pct(_mean(raw)),
        'gamma': gamma,
        'n_responses': len(details),
        'n_responding': len(responding),
        'n_scored': len(scored),
        'n_abstained': sum(d['abstained'] for d in details),
        'n_no_facts': sum(not d['abstained'] and not d['responding'] for d in details),
        'response_ratio': len(responding) / len(details) if details else None,
        'facts_per_response': _mean([d['n_facts'] for d in responding]),
        'correct_per_response': _mean([d['n_supported'] for d in responding]),
        'incorrect_per_response': _mean([d['n_not_supported'] for d in responding]),
        'unparsed_facts': sum(d['n_unparsed'] for d in details),
        'unparsed_extractions': sum(s['extraction'] == 'unparsed'
                                    for d in details for s in d['sentences']),
    }


def render_markdown(metrics: dict, config: Optional[dict] = None) -> str:
    """A short report: the metrics table, then the run's settings."""
    def fmt(v):
        return '-' if v is None else f'{v:.2f}' if isinstance(v, float) else str(v)
    rows = [('FActScore (%)', metrics['factscore']),
            ('FActScore without length penalty (%)', metrics['factscore_no_penalty']),
            ('length penalty gamma (0 = off)', metrics['gamma']),
            ('# Cor. per responding response', metrics['correct_per_response']),
            ('# Inc. per responding response', metrics['incorrect_per_response']),
            ('facts per responding response', metrics['facts_per_response']),
            ('response ratio', metrics['response_ratio']),
            ('responses / responding / scored', '{n_responses} / {n_responding} / {n_scored}'
             .format(**metrics)),
            ('abstained / no facts', f"{metrics['n_abstained']} / {metrics['n_no_facts']}"),
            ('unparsed verdicts (not scored)', metrics['unparsed_facts']),
            ('unparsed extraction answers', metrics['unparsed_extractions'])]
    if 'n_no_knowledge' in metrics:
        rows.append(('skipped: topic not in knowledge source', metrics['n_no_knowledge']))
    lines = ['# FActScore', '', '| metric | value |', '|---|---|']
    lines += [f'| {k} | {fmt(v)} |' for k, v in rows]
    if config:
        lines += ['', '## Settings', '']
        lines += [f'- {k}: `{v}`' for k, v in config.items()]
    return '\n'.join(lines) + '\n'
