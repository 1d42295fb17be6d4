"""Sentence annotators: the ANAH-v2 protocol, or any class implementing ``Annotator``."""
import importlib

from .anah import AnahV2Annotator, load_templates
from .base import Annotator, SentenceLabel, SentenceTask
from .score import (is_hallucinated_label, label_counts, pooled_score, response_score,
                    response_stats)

# Short names for load_annotator; anything else is an import path 'package.module:ClassName'.
ANNOTATORS = {'anah': 'maskdpo_xtuner.annotate.anah:AnahV2Annotator',
              'world': 'maskdpo_xtuner.world.oracle:WorldOracle',
              'countries': 'maskdpo_xtuner.countries:CountryJudge'}


def resolve_annotator(spec: str) -> type:
    """The annotator class named by a short name in ANNOTATORS or 'package.module:ClassName'."""
    path = ANNOTATORS.get(spec, spec)
    module, sep, name = path.partition(':')
    if not sep or not module or not name:
        raise ValueError(f'unknown annotator {spec!r}: use one of {sorted(ANNOTATORS)} '
                         "or an import path 'package.module:ClassName'")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:
        raise ValueError(f'annotator {spec!r}: {module} has no attribute {name!r}')
    return cls


def load_annotator(spec: str, **kwargs) -> Annotator:
    """Instantiate the annotator named by ``spec`` with ``kwargs``."""
    return resolve_annotator(spec)(**kwargs)


__all__ = ['Annotator', 'SentenceTask', 'SentenceLabel', 'AnahV2Annotator', 'load_templates',
           'ANNOTATORS', 'resolve_annotator', 'load_annotator', 'is_hallucinated_label',
           'label_counts', 'response_stats', 'response_score', 'pooled_score']
