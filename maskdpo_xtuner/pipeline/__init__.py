"""The pipeline as functions: sample -> annotate -> pairs -> train (configs) -> evaluate.

Each stage takes typed objects (a :class:`BackendSpec` or a backend, ``SamplingParams``, an
:class:`AnnotatorSpec` or an annotator, paths) and resumes where it stopped. The scripts in
``tools/`` are argparse shells over these functions; the world study and users' own scripts
call them directly::

    from maskdpo_xtuner.pipeline import BackendSpec, SamplingParams, load_questions, sample
    sample(load_questions('q.jsonl'), 'out.jsonl', BackendSpec('transformers', 'my/model'),
           SamplingParams(), n=32, model_name='my/model')
"""
from ..generation.base import SamplingParams
from .annotate import AnnotatorSpec, annotate, annotate_chunk, summarize
from .backends import (BackendSpec, OnDemand, add_backend_args, backend_spec, materialize,
                       opened)
from .evaluate import EvalSettings, evaluate_anah
from .factscore import FactScoreSettings, evaluate_factscore
from .pairs import make_pairs
from .sample import build_prompt, load_questions, sample

__all__ = ['SamplingParams', 'BackendSpec', 'OnDemand', 'add_backend_args', 'backend_spec',
           'materialize', 'opened', 'load_questions', 'build_prompt', 'sample',
           'AnnotatorSpec', 'annotate', 'annotate_chunk', 'summarize', 'make_pairs',
           'EvalSettings', 'evaluate_anah', 'FactScoreSettings', 'evaluate_factscore']
