"""The world's exact annotator: reads each sentence back into (subject, attribute, value) and
checks it against the topic's facts. Plugs into ``tools/annotate.py --annotator world``.

=================  ==========================================================================
label              sentence
=================  ==========================================================================
``ok``             states one of the topic's attributes with its true value, for the first
                   time in this answer
``contradictory``  states one of the topic's attributes with a wrong value (often a
                   neighbour's: the "bleeding" the paper describes)
``unverifiable``   anything else: a repeat of an attribute already stated in this answer
                   (a repeated fact is not a new correct sentence, so it cannot be used to pad
                   precision), a claim about another subject, an attribute this kind of topic
                   does not have, or text the world cannot read
=================  ==========================================================================

``nofact``           the answer's opener ("Here is what I know about X."), once; a second one
                   is a repeat (``unverifiable``)

The reason for each label is in ``SentenceLabel.trace['reason']``.

The oracle needs no files: the world's question records carry ``topic``, ``kind`` and
``facts``; ``tools/annotate.py`` hands each task its record in ``meta['record']``.
"""
import functools
import re
from typing import List, Optional, Tuple

from maskdpo_xtuner.annotate.base import SentenceLabel, SentenceTask
from maskdpo_xtuner.annotate.split import split_sentences
from maskdpo_xtuner.studies.world.world import KINDS, OPENER


def _pattern(template: str):
    body = re.escape(template).replace(r'\{s\}', '(?P<s>.+?)').replace(r'\{v\}', '(?P<v>.+?)')
    return re.compile(rf'^{body}$')


# (kind, attribute, compiled template) for every template the world writes
PATTERNS = [(kind, attr, _pattern(t)) for kind, spec in KINDS.items()
            for attr, (_, _, answer, paraphrases) in spec.items()
            for t in [answer] + paraphrases]


_OPENER = re.compile('^' + re.escape(OPENER).replace(r'\{s\}', '(?P<s>.+?)') + '$')


def _opener_subject(sentence: str):
    m = _OPENER.match(sentence)
    return m.group('s') if m else None


def parse(sentence: str, kind: str) -> Optional[Tuple[str, str, str, bool]]:
    """(subject, attribute, value, attribute belongs to ``kind``) or None if unreadable.
    Templates of the topic's own kind are tried first."""
    sentence = ' '.join(sentence.split())
    for own in (True, False):
        for k, attr, pat in PATTERNS:
            if (k == kind) != own:
                continue
            m = pat.match(sentence)
            if m:
                return m.group('s'), attr, m.group('v'), own
    return None


@functools.lru_cache(maxsize=4096)
def judge_answer(response: str, topic: str, kind: str, facts_items: tuple) -> tuple:
    """(text, (label, trace)) for each sentence of one answer (repeats need the ones before)."""
    facts = dict(facts_items)
    seen, out = set(), []
    for sent in split_sentences(response, lang='en'):
        out.append((sent.text, _judge(sent.text, topic, kind, facts, seen)))
    return tuple(out)


def _judge(sentence, topic, kind, facts, seen):
    subject = _opener_subject(' '.join(sentence.split()))
    if subject is not None:
        if subject != topic:
            return 'unverifiable', {'reason': 'other_subject', 'subject': subject}
        if 'opener' in seen:
            return 'unverifiable', {'reason': 'repeat'}
        seen.add('opener')
        return 'nofact', {'reason': 'opener'}
    claim = parse(sentence, kind)
    if claim is None:
        return 'unverifiable', {'reason': 'unreadable'}
    subject, attr, value, own = claim
    trace = {'attribute': attr, 'value': value}
    if subject != topic:
        return 'unverifiable', {**trace, 'reason': 'other_subject', 'subject': subject}
    if not own:
        return 'unverifiable', {**trace, 'reason': 'not_an_attribute_of_this_kind'}
    truth = facts[attr]
    if value != truth:
        return 'contradictory', {**trace, 'reason': 'wrong_value', 'truth': truth}
    if attr in seen:
        return 'unverifiable', {**trace, 'reason': 'repeat'}
    seen.add(attr)
    return 'ok', {**trace, 'reason': 'true'}


class WorldOracle:
    """Exact sentence labels for answers about the synthetic world's topics."""

    needs_document = False

    def annotate(self, tasks: List[SentenceTask]) -> List[SentenceLabel]:
        out = []
        for task in tasks:
            rec = task.meta.get('record') or {}
            if not all(k in rec for k in ('topic', 'kind', 'facts')):
                raise ValueError(f"the world oracle needs the world's question records "
                                 f"(fields topic, kind, facts); question {task.meta.get('id')!r} "
                                 'has none')
            labels = judge_answer(task.response or task.sentence, rec['topic'], rec['kind'],
                                   tuple(sorted(rec['facts'].items())))
            label, trace = self._locate(task, labels)
            reference = rec['facts'].get(trace.get('attribute'), '') if label != 'unverifiable' \
                else ''
            out.append(SentenceLabel(label=label, reference=reference, trace=trace))
        return out

    @staticmethod
    def _locate(task, labels):
        """The label of this task's sentence: by index when given, checked against the text."""
        k = task.meta.get('sentence')
        if k is None or k >= len(labels) or labels[k][0] != task.sentence:
            # no usable index: the first sentence with this text (a repeat then reads as new)
            k = next((i for i, (text, _) in enumerate(labels) if text == task.sentence), None)
        if k is None:  # a sentence given without its answer: judge it alone
            return judge_answer(task.sentence, task.meta['record']['topic'],
                                 task.meta['record']['kind'],
                                 tuple(sorted(task.meta['record']['facts'].items())))[0][1]
        return labels[k][1]
