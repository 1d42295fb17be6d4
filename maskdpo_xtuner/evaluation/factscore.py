"""FActScore-style factual precision (Min et al., EMNLP 2023) with open models, offline.

Pipeline for one ``(topic, response)`` pair:

1. **Abstention flag.** A response whose first sentence matches
   :data:`~maskdpo_xtuner.evaluation.factparse.ABSTENTION_PATTERNS` ("I don't know", "I'm not familiar
   with", ...) without going on past a contrast ("..., but she was born in 1960") is flagged
   ``abstained``. It is scored anyway (FActScore's default has no abstention detection); the
   metrics report both ways.
2. **Atomic facts.** The response is split with :func:`maskdpo_xtuner.annotate.split.split_sentences`;
   the judge breaks each sentence into facts (prompt ``maskdpo_xtuner/prompts/factscore_atomic_facts.json``,
   one fact per line; :func:`~maskdpo_xtuner.evaluation.factparse.parse_facts`). All sentences of all
   responses of a call to :meth:`FactScorer.score` go to ONE ``generate`` call.
3. **Retrieval.** BM25 (``bm25s``, lowercase, English stop words, one-character tokens kept, no
   stemming) over the passages of the topic's own article, query = the fact preceded by the
   topic's words it lacks (:func:`retrieval_query`), top ``k = 5``.
4. **Verification.** The judge gets the passages (most relevant last, nearest the question, as in
   FActScore) and ``Input: <fact> True or False?\\nOutput:``
   (``maskdpo_xtuner/prompts/factscore_verify.json``); :func:`~maskdpo_xtuner.evaluation.factparse.parse_verdict`
   gives ``supported`` / ``not_supported`` / ``unparsed``. ONE ``generate`` call for all facts.

Scores (:func:`aggregate`), for a response with ``n`` facts of which ``S`` supported and ``U``
not supported (``unparsed`` verdicts are counted and reported, and left out of the fraction):
``s = S / (S + U) * exp(1 - gamma / n)`` if ``n < gamma``, else ``S / (S + U)``; ``gamma``
defaults to FActScore's 10 and ``n`` counts all facts, as FActScore does. FActScore is the
mean of ``s`` over the responses with at least one fact and ``S + U > 0`` (a per-response
mean, not ``mean(S) / (mean(S) + mean(U))``). Also: the score without penalty, the score with
flagged abstentions left out, response ratio (responses with a fact / all but judge errors; a
*judge error* is a response with no fact and an unparsed extraction answer), facts per
responding response, ``#Cor`` = mean ``S`` and ``#Inc`` = mean ``U`` over responding responses
(the Mask-DPO paper's columns), unparsed facts and unparsed extraction answers, and the
per-response scores (``per_response``) that maskdpo_xtuner/evaluation/compare.py pairs between models.

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

Differences from the original FActScore (docs/evaluation.md): any open chat model judges
through :class:`~maskdpo_xtuner.generation.base.Backend` (not InstructGPT / ChatGPT /
Inst-LLaMA + NPM); the verdict is parsed from generated text with a negation scope (no
True/False logit comparison, no keyword fallback: FActScore reads "do not say it is true" as
supported); BM25 replaces GTR-T5-large, and the query does not repeat the topic the fact
already names (FActScore's is ``topic + " " + fact``); passages are <= 256 words instead of
<= 256 RoBERTa tokens (about 190 words); sentences are split by our splitter (not NLTK); facts
are extracted with our own prompt and fixed demos (FActScore picks demos by BM25), may name the
topic instead of a pronoun, and exact duplicates within a sentence are dropped; unparsed
verdicts are left out of the fraction (FActScore falls back to keyword heuristics).
"""
import json
import math
import os
import re
from typing import List, Optional, Sequence, Tuple

from maskdpo_xtuner.evaluation.factparse import (ABSTENTION_PATTERNS, NOT_SUPPORTED,  # noqa: F401
                                                 SUPPORTED, UNPARSED, is_abstention, parse_facts,
                                                 parse_verdict)
from maskdpo_xtuner.generation.base import Backend, SamplingParams
from maskdpo_xtuner.evaluation.retrieval import (SQLITE_SEPARATOR, KnowledgeSource,  # noqa: F401
                                                 retrieval_query, split_passages)
from maskdpo_xtuner.annotate.split import split_sentences

PROMPT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'prompts')  # package data
EXTRACT_PROMPT = os.path.join(PROMPT_DIR, 'factscore_atomic_facts.json')
VERIFY_PROMPT = os.path.join(PROMPT_DIR, 'factscore_verify.json')
BIO_PROMPT = 'Tell me a bio of {entity}.'

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
            for s in split_sentences(item['response']):  # abstentions too (FActScore)
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
                hits = self.knowledge.retrieve(rec['topic'],
                                               retrieval_query(rec['topic'], fact['text']), self.k)
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
            failed = any(x['extraction'] == 'unparsed' for x in rec['sentences'])
            rec.update(responding=bool(labels), judge_error=not labels and failed,
                       n_facts=len(labels), n_supported=sup,
                       n_not_supported=uns, n_unparsed=labels.count(UNPARSED),
                       score=sup / (sup + uns) if sup + uns else None)
        return recs


DEFAULT_GAMMA = 10.0  # FActScore's documented default length penalty


def length_penalty(n: int, gamma: float) -> float:
    """``exp(1 - gamma / n)`` when ``0 < n < gamma``, else 1."""
    return math.exp(1 - gamma / n) if gamma > 0 and 0 < n < gamma else 1.0


def _mean(xs: List[float]) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


def judge_error(d: dict) -> bool:
    """No fact, and at least one sentence whose extraction answer was unparsed: the judge
    failed, the response did not abstain (old detail records lack the field)."""
    if 'judge_error' in d:
        return d['judge_error']
    return not d['n_facts'] and any(s.get('extraction') == 'unparsed'
                                    for s in d.get('sentences', []))


def response_scores(d: dict, gamma: float = DEFAULT_GAMMA, abstention: bool = False):
    """(penalised score, score without penalty) of one detail record, or (None, None) when it
    is not scored: no fact, only unparsed verdicts, or (with ``abstention``) an abstention.
    The penalty's n counts all of the response's facts, unparsed verdicts included."""
    sup, uns = d['n_supported'], d['n_not_supported']
    if not d['n_facts'] or not sup + uns or abstention and d['abstained']:
        return None, None
    raw = sup / (sup + uns)
    return raw * length_penalty(d['n_facts'], gamma), raw


def aggregate(details: List[dict], gamma: float = DEFAULT_GAMMA) -> dict:
    """Metrics over detail records (see the module doc); scores in percent."""
    errors = [d for d in details if judge_error(d)]
    responding = [d for d in details if d['n_facts']]
    pairs = [response_scores(d, gamma) for d in details]
    pen, raw = [p for p, _ in pairs if p is not None], [r for _, r in pairs if r is not None]
    detected = [response_scores(d, gamma, abstention=True)[0] for d in details]
    detected = [p for p in detected if p is not None]
    n_valid = len(details) - len(errors)
    pct = (lambda x: None if x is None else 100 * x)
    return {
        'factscore': pct(_mean(pen)),
        'factscore_no_penalty': pct(_mean(raw)),
        'factscore_abstention_detected': pct(_mean(detected)),
        'gamma': gamma,
        'n_responses': len(details),
        'n_responding': len(responding),
        'n_scored': len(pen),
        'n_abstained': sum(d['abstained'] for d in details),
        'n_no_facts': sum(not d['n_facts'] and not judge_error(d) and not d['abstained']
                          for d in details),
        'n_judge_errors': len(errors),
        'response_ratio': len(responding) / n_valid if n_valid else None,
        'response_ratio_abstention_detected':
            sum(bool(d['n_facts']) and not d['abstained'] for d in details) / n_valid
            if n_valid else None,
        'facts_per_response': _mean([d['n_facts'] for d in responding]),
        'correct_per_response': _mean([d['n_supported'] for d in responding]),
        'incorrect_per_response': _mean([d['n_not_supported'] for d in responding]),
        'unparsed_facts': sum(d['n_unparsed'] for d in details),
        'unparsed_extractions': sum(s['extraction'] == 'unparsed'
                                    for d in details for s in d['sentences']),
        'per_response': [{'key': d.get('key', d.get('topic')), 'topic': d.get('topic'),
                          'score': p, 'n_facts': d['n_facts'],
                          'n_supported': d['n_supported'],
                          'n_not_supported': d['n_not_supported'], 'abstained': d['abstained'],
                          'judge_error': judge_error(d)}
                         for d, (p, _) in zip(details, pairs)],
    }


def render_markdown(metrics: dict, config: Optional[dict] = None) -> str:
    """A short report: the metrics table, then the run's settings."""
    def fmt(v):
        return '-' if v is None else f'{v:.2f}' if isinstance(v, float) else str(v)
    rows = [("FActScore (%) (FActScore's defaults: penalty gamma, no abstention detection)",
             metrics['factscore']),
            ('FActScore without length penalty (%)', metrics['factscore_no_penalty']),
            ('FActScore, abstentions detected and not scored (%)',
             metrics.get('factscore_abstention_detected')),
            ('length penalty gamma (0 = off; FActScore: 10)', metrics['gamma']),
            ('# Cor. per responding response', metrics['correct_per_response']),
            ('# Inc. per responding response', metrics['incorrect_per_response']),
            ('facts per responding response', metrics['facts_per_response']),
            ('response ratio (judge errors left out)', metrics['response_ratio']),
            ('responses / responding / scored', '{n_responses} / {n_responding} / {n_scored}'
             .format(**metrics)),
            ('abstentions detected (still scored) / no facts / judge errors',
             f"{metrics['n_abstained']} / {metrics['n_no_facts']} / "
             f"{metrics.get('n_judge_errors', 0)}"),
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
