"""Sentence annotators: the ANAH-v2 protocol, or any class implementing ``Annotator``."""
import importlib

from maskdpo_xtuner.annotate.anah import AnahV2Annotator, load_templates
from maskdpo_xtuner.annotate.base import Annotator, SentenceLabel, SentenceTask
from maskdpo_xtuner.annotate.score import (is_hallucinated_label, label_counts, pooled_score,
                                           response_score, response_stats)

# Short names for load_annotator: the library's own, plus those that installed packages declare
# under the entry-point group below (the studies declare 'world' and 'countries' in
# pyproject.toml; a package of yours can add its own the same way). Anything else is an import
# path 'package.module:ClassName'.
ANNOTATORS = {'anah': 'maskdpo_xtuner.annotate.anah:AnahV2Annotator'}
ENTRY_POINTS = 'maskdpo_xtuner.annotators'


def annotator_names() -> dict:
    """{short name: 'package.module:ClassName'}: the built-in ones and the declared ones."""
    from importlib.metadata import entry_points
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINTS)}
    return {**names, **ANNOTATORS}


def resolve_annotator(spec: str) -> type:
    """The annotator class named by a short name (:func:`annotator_names`) or
    'package.module:ClassName'."""
    known = annotator_names()
    path = known.get(spec, spec)
    module, sep, name = path.partition(':')
    if not sep or not module or not name:
        raise ValueError(f'unknown annotator {spec!r}: use one of {sorted(known)} '
                         "or an import path 'package.module:ClassName'")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:
        raise ValueError(f'annotator {spec!r}: {module} has no attribute {name!r}')
    return cls


def load_annotator(spec: str, **kwargs) -> Annotator:
    """Instantiate the annotator named by ``spec`` with ``kwargs``."""
    return resolve_annotator(spec)(**kwargs)


__all__ = ['Annotator', 'SentenceTask', 'SentenceLabel', 'AnahV2Annotator', 'load_templates',
           'ANNOTATORS', 'annotator_names', 'resolve_annotator', 'load_annotator', 'is_hallucinated_label',
           'label_counts', 'response_stats', 'response_score', 'pooled_score']
