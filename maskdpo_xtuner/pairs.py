"""Preference pairs from sentence-annotated responses (paper §2.2; no official code exists).

Input: one record per question as written by ``tools/annotate.py`` (``id``, ``question``,
``responses``, optional ``prompt``, and ``annotations[j]['sentences']`` with ``start``, ``end``,
``text``, ``label`` for response j). Output: one official Mask-DPO record per kept question::

    {"id", "prompt": [messages], "chosen": [{"role": "assistant", "content"}], "rejected": [...],
     "chosen_item": {"sents", "type", "spans"}, "rejected_item": {...},
     "chosen_score", "rejected_score"}

Rules, in order, for each question:

1. **Usable responses.** A response with no sentence is excluded (``no_sentences``). One with
   an ``unparsed`` sentence is excluded (``unparsed``), or is an error with
   ``unparsed='error'``. Each sentence's span must satisfy ``response[start:end] == text``.
2. **Score** of a response = (#ok + #nofact) / #sentences = Σ_i (1 − a_i) / N.
3. **Selection.** chosen = a highest-scoring response, rejected = a lowest-scoring one.
   Ties are broken by ``tie_break``: ``random`` picks uniformly with a RNG seeded by
   sha256(seed, question id); ``longest`` / ``shortest`` prefer the response with the most /
   fewest characters, and remaining ties go to the same seeded RNG. Candidates are put in a
   canonical order (by text) first, so the result depends on the seed and on the set of
   responses of the question, never on the order of questions or responses in the file.
   The rejected one is never the chosen response itself, and is preferably not a copy of its
   text (a duplicate sample would make an ``identical`` pair for no reason).
4. **Drops**, first matching reason counted: ``fewer_than_two_responses`` (usable ones);
   the paper's filters ``identical`` (same text), ``chosen_no_correct`` (chosen has no
   ok/nofact sentence), ``rejected_no_hallucination`` (rejected has no hallucinated sentence);
   then ``equal_scores`` (chosen score == rejected score, i.e. every usable response scores
   the same: no preference). The paper's filters come first so that they are counted as the
   paper defines them (all-correct questions are ``rejected_no_hallucination``, all-wrong ones
   ``chosen_no_correct``); what ``equal_scores`` adds is mixed responses that all score alike.
   ``keep_equal_scores=True`` keeps those: under Mask-DPO's masks such a pair still raises
   the chosen's correct sentences and lowers the rejected's hallucinated ones.
"""
import hashlib
import json
import random
from collections import Counter
from typing import Iterable, List, Optional, Tuple

from maskdpo_xtuner.annotate.score import is_hallucinated_label, response_stats
from maskdpo_xtuner.io.validate import RecordError, check_span

TIE_BREAKS = ('random', 'longest', 'shortest')
DROP_REASONS = ('fewer_than_two_responses', 'identical', 'chosen_no_correct',
                'rejected_no_hallucination', 'equal_scores')
EXCLUDE_REASONS = ('no_sentences', 'unparsed')


class Candidate:
    """One usable response: its index, text, sentences, labels and score."""

    def __init__(self, index: int, text: str, sentences: List[dict]):
        self.index, self.text, self.sentences = index, text, sentences
        self.labels = [s['label'] for s in sentences]
        self.flags = [is_hallucinated_label(lab) for lab in self.labels]
        self.score = response_stats(self.labels)['score']

    def item(self) -> dict:
        return {'sents': [s['text'] for s in self.sentences], 'type': self.labels,
                'spans': [[s['start'], s['end']] for s in self.sentences]}


def question_rng(seed: int, qid) -> random.Random:
    """A RNG that depends only on (seed, question id): sha256 of both, not Python's hash()."""
    key = json.dumps([seed, qid], ensure_ascii=False, sort_keys=True).encode('utf-8')
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], 'big'))


def candidates(rec: dict, unparsed: str = 'exclude') -> Tuple[List[Candidate], Counter]:
    """The usable responses of one record and the count of excluded ones by reason."""
    if unparsed not in ('exclude', 'error'):
        raise ValueError(f"unparsed must be 'exclude' or 'error', got {unparsed!r}")
    responses, anns = rec['responses'], rec['annotations']
    if len(responses) != len(anns):
        raise ValueError(f'question {rec["id"]!r}: {len(responses)} responses but '
                         f'{len(anns)} annotations')
    out, excluded = [], Counter()
    for j, (text, ann) in enumerate(zip(responses, anns)):
        sents, prev_end = ann['sentences'], 0
        for k, s in enumerate(sents):
            try:  # in range, in order, no overlap (maskdpo_xtuner/io/validate.py)
                check_span(s['start'], s['end'], prev_end, len(text),
                           f'annotations[{j}].sentences[{k}].')
            except RecordError as err:
                raise err.at(f'question {rec["id"]!r}', None) from None
            if text[s['start']:s['end']] != s['text']:
                raise ValueError(f'question {rec["id"]!r} response {j} sentence {k}: span '
                                 f'[{s["start"]}, {s["end"]}] does not hold {s["text"]!r}')
            prev_end = s['end']
        if not sents:
            excluded['no_sentences'] += 1
        elif any(s['label'] == 'unparsed' for s in sents):
            if unparsed == 'error':
                raise ValueError(f'question {rec["id"]!r} response {j} has unparsed '
                                 'sentence(s); re-annotate it or use --unparsed exclude')
            excluded['unparsed'] += 1
        else:
            out.append(Candidate(j, text, sents))
    return out, excluded


def _pick(pool: List[Candidate], tie_break: str, rng: random.Random) -> Candidate:
    pool = sorted(pool, key=lambda c: (c.text, c.index))  # canonical order
    if tie_break != 'random':
        sign = 1 if tie_break == 'longest' else -1
        best = max(sign * len(c.text) for c in pool)
        pool = [c for c in pool if sign * len(c.text) == best]
    return pool[rng.randrange(len(pool))]


def select(cands: List[Candidate], rng: random.Random, tie_break: str = 'random'
           ) -> Tuple[Optional[Candidate], Optional[Candidate]]:
    """(chosen, rejected): a highest- and a lowest-scoring candidate, ties broken as above."""
    if len(cands) < 2:
        return None, None
    hi, lo = max(c.score for c in cands), min(c.score for c in cands)
    chosen = _pick([c for c in cands if c.score == hi], tie_break, rng)
    worst = [c for c in cands if c.score == lo and c is not chosen]
    worst = [c for c in worst if c.text != chosen.text] or worst
    return chosen, _pick(worst, tie_break, rng)


def drop_reason(chosen: Candidate, rejected: Candidate,
                keep_equal_scores: bool = False) -> Optional[str]:
    """The first filter (see the module docstring) the pair fails, or None to keep it."""
    if chosen.text.strip() == rejected.text.strip():
        return 'identical'
    if all(chosen.flags):
        return 'chosen_no_correct'
    if not any(rejected.flags):
        return 'rejected_no_hallucination'
    if chosen.score == rejected.score and not keep_equal_scores:
        return 'equal_scores'
    return None


def make_record(rec: dict, chosen: Candidate, rejected: Candidate) -> dict:
    prompt = rec.get('prompt') or [{'role': 'user', 'content': rec['question']}]
    return {'id': rec['id'], 'prompt': prompt,
            'chosen': [{'role': 'assistant', 'content': chosen.text}],
            'rejected': [{'role': 'assistant', 'content': rejected.text}],
            'chosen_item': chosen.item(), 'rejected_item': rejected.item(),
            'chosen_score': chosen.score, 'rejected_score': rejected.score}


def build_pairs(records: Iterable[dict], seed: int = 0, tie_break: str = 'random',
                unparsed: str = 'exclude', keep_equal_scores: bool = False
                ) -> Tuple[List[dict], dict]:
    """All kept pairs (in input order) and a summary of what was kept, dropped and excluded."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f'tie_break must be one of {TIE_BREAKS}, got {tie_break!r}')
    pairs, dropped, excluded, seen = [], Counter(), Counter(), set()
    n_questions = n_responses = 0
    for rec in records:
        if 'id' not in rec:
            raise ValueError(f'record {n_questions + 1} has no "id"')
        if rec['id'] in seen:
            raise ValueError(f'duplicate question id {rec["id"]!r}')
        seen.add(rec['id'])
        n_questions += 1
        n_responses += len(rec['responses'])
        cands, exc = candidates(rec, unparsed)
        excluded.update(exc)
        chosen, rejected = select(cands, question_rng(seed, rec['id']), tie_break)
        reason = 'fewer_than_two_responses' if chosen is None else \
            drop_reason(chosen, rejected, keep_equal_scores)
        if reason:
            dropped[reason] += 1
        else:
            pairs.append(make_record(rec, chosen, rejected))
    mean = (lambda k: sum(p[k] for p in pairs) / len(pairs) if pairs else None)
    summary = {'questions': n_questions, 'responses': n_responses, 'pairs': len(pairs),
               'dropped': {r: dropped[r] for r in DROP_REASONS},
               'responses_excluded': {r: excluded[r] for r in EXCLUDE_REASONS},
               'mean_chosen_score': mean('chosen_score'),
               'mean_rejected_score': mean('rejected_score'),
               'config': {'seed': seed, 'tie_break': tie_break, 'unparsed': unparsed,
                          'keep_equal_scores': keep_equal_scores}}
    return pairs, summary
