"""Mask-DPO on XTuner.

The method: ``labels.py`` (sentence labels, token classes), ``annotate/`` (sentence splitting,
judges), ``pairs.py`` (pair selection), ``dataset/`` (records -> token masks), ``model/`` (the
loss), ``train.py``. Around it: ``io/``, ``generation/``, ``evaluation/``, ``pipeline/`` (the
stages as functions), ``view/``, ``offline/`` (models made without a hub) and ``studies/``
(imported by tools and tests only).
"""
import sys
from importlib.abc import MetaPathFinder

# Modules that moved when the package was laid out anew: importing the old name says where to.
MOVED = {
    'metrics': 'evaluation.metrics', 'factscore': 'evaluation.factscore',
    'factparse': 'evaluation.factparse', 'retrieval': 'evaluation.retrieval',
    'compare': 'evaluation.compare', 'split': 'annotate.split',
    'ref_logps': 'dataset.ref_logps', 'manifest': 'io.manifest', 'validate': 'io.validate',
    'serve': 'generation.serve', 'tiny': 'offline.tiny', 'llama3': 'offline.llama3',
    'real_model': 'offline.smollm2', 'countries': 'studies.real.countries',
    'real_run': 'studies.real.run', 'real_report': 'studies.real.report',
    'world': 'studies.world', 'pipeline.annotate': 'pipeline.annotation',
    'pipeline.pairs': 'pipeline.pairing', 'pipeline.evaluate': 'pipeline.anah_eval',
    'pipeline.factscore': 'pipeline.factscore_eval', 'view.pairs': 'view.pair_view',
    'view.evals': 'view.eval_view',
}


class _MovedModules(MetaPathFinder):
    """Consulted only after the normal import found nothing: names the new place."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, rest = fullname.partition('.')
        if head != __name__:
            return None
        for old, new in MOVED.items():
            if rest == old or rest.startswith(old + '.'):
                raise ModuleNotFoundError(
                    f'{fullname} moved: import {__name__}.{new}{rest[len(old):]} instead',
                    name=fullname)
        return None


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
