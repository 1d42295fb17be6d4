"""The one interface every sentence annotator implements (ANAH-v2 protocol, the synthetic
world's exact oracle, or your own judge)."""
from dataclasses import dataclass, field
from typing import List, Protocol

from maskdpo_xtuner.labels import (ANNOTATOR_LABELS)  # ok, nofact, contradictory, unverifiable, unparsed


@dataclass
class SentenceTask:
    """One sentence to judge, with what a judge may need to judge it."""
    question: str
    sentence: str
    response: str = ''   # the whole answer the sentence comes from
    document: str = ''   # the question's reference document
    lang: str = 'en'     # 'en' or 'zh'
    meta: dict = field(default_factory=dict)  # e.g. topic id (the world's oracle uses it)


@dataclass
class SentenceLabel:
    label: str                  # one of ANNOTATOR_LABELS
    reference: str = ''         # reference points the judge relied on, if any
    trace: dict = field(default_factory=dict)  # raw answers of each step, for auditing

    def __post_init__(self):
        if self.label not in ANNOTATOR_LABELS:
            raise ValueError(f'label must be one of {ANNOTATOR_LABELS}, got {self.label!r}')


class Annotator(Protocol):
    """Label a batch of sentences; one result per task, in order."""

    def annotate(self, tasks: List[SentenceTask]) -> List[SentenceLabel]:
        ...
