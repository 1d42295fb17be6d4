"""Per-response and pooled scores from sentence labels (used by annotate, pairs and eval).

Score = share of *non-hallucinated* sentences among the *parsed* ones. ``ok`` and ``nofact`` are
non-hallucinated, ``contradictory`` and ``unverifiable`` hallucinated (the ANAH-v2 convention).
``unparsed`` sentences are of unknown status: they are counted apart and left out of the score
(these per-response scores choose preference pairs, where an unknown sentence must not count as
correct). The official ``eval/anah_v2/eval.py`` keeps an unparsed answer in the denominator as
*correct*; the evaluation (maskdpo_xtuner/evaluation/metrics.py) reports that number as the paper's score
and this parsed-only one beside it.
"""
from collections import Counter
from typing import Dict, Iterable, List, Optional

from maskdpo_xtuner.labels import ANNOTATOR_LABELS, is_hallucinated


def is_hallucinated_label(label: str) -> Optional[bool]:
    """True (contradictory, unverifiable), False (ok, nofact), None for ``unparsed`` (unknown).

    The official Mask-DPO vocabulary (hallucination / no_hallucination) is accepted too; any
    other label raises ValueError. Callers must handle None explicitly, never treat it as False.
    """
    return None if label == 'unparsed' else is_hallucinated(label)


def label_counts(labels: Iterable[str]) -> Dict[str, int]:
    """Count of each annotator label (all of ANNOTATOR_LABELS present, zeros included)."""
    counts = Counter({lab: 0 for lab in ANNOTATOR_LABELS})
    counts.update(labels)
    return dict(counts)


def response_stats(labels: List[str]) -> dict:
    """``n_sentences``, ``n_hallucinated``, ``n_unparsed`` and ``score`` of one response.

    ``score`` is None when no sentence is parsed (an empty or wholly unparsed response).
    """
    flags = [is_hallucinated_label(lab) for lab in labels]
    parsed = [f for f in flags if f is not None]
    n_hal = sum(parsed)
    return {'n_sentences': len(labels), 'n_hallucinated': n_hal,
            'n_unparsed': len(labels) - len(parsed),
            'score': (len(parsed) - n_hal) / len(parsed) if parsed else None}


def response_score(labels: List[str]) -> Optional[float]:
    """Share of non-hallucinated sentences among the parsed ones (None if none is parsed)."""
    return response_stats(labels)['score']


def pooled_score(responses: Iterable[List[str]]) -> Optional[float]:
    """One ratio pooled over all parsed sentences of all responses (the paper's ANAH score
    when no sentence is unparsed; maskdpo_xtuner.evaluation.metrics.run_metrics gives both)."""
    return response_score([lab for labels in responses for lab in labels])
