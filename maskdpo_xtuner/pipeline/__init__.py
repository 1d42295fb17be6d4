"""The pipeline as functions: sample -> annotate -> pairs -> train (configs) -> evaluate.

Each stage takes typed objects (a :class:`BackendSpec` or a backend, ``SamplingParams``, an
:class:`AnnotatorSpec` or an annotator, paths) and resumes where it stopped. The scripts in
``tools/`` are argparse shells over these functions; the world study and users' own scripts
call them directly::

    from maskdpo_xtuner.pipeline import BackendSpec, SamplingParams, load_questions, sample
    sample(load_questions('q.jsonl'), 'out.jsonl', BackendSpec('transformers', 'my/model'),
           SamplingParams(), n=32, model_name='my/model')
"""
from maskdpo_xtuner.generation.base import SamplingParams
from maskdpo_xtuner.pipeline.annotation import AnnotatorSpec, annotate, annotate_chunk, summarize
from maskdpo_xtuner.pipeline.backends import (BackendSpec, OnDemand, add_backend_args, backend_spec,
                                              materialize, opened)
from maskdpo_xtuner.pipeline.anah_eval import EvalSettings, evaluate_anah
from maskdpo_xtuner.pipeline.factscore_eval import FactScoreSettings, evaluate_factscore
from maskdpo_xtuner.pipeline.pairing import make_pairs
from maskdpo_xtuner.pipeline.sample import build_prompt, load_questions, sample

__all__ = ['SamplingParams', 'BackendSpec', 'OnDemand', 'add_backend_args', 'backend_spec',
           'materialize', 'opened', 'load_questions', 'build_prompt', 'sample',
           'AnnotatorSpec', 'annotate', 'annotate_chunk', 'summarize', 'make_pairs',
           'EvalSettings', 'evaluate_anah', 'FactScoreSettings', 'evaluate_factscore']
