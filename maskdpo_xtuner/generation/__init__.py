"""Generation backends behind one interface (``Backend.generate(conversations, params, n)``).

* ``transformers``: ``model.generate`` on CPU or GPU (tests, small jobs);
* ``lmdeploy``: an offline LMDeploy pipeline (NVIDIA GPU only);
* ``openai``: OpenAI-compatible servers such as ``lmdeploy serve api_server``.

Backends import their heavy libraries lazily, so importing this package is cheap.
"""
from maskdpo_xtuner.generation.base import Backend, Completion, SamplingParams, finish_reason
from maskdpo_xtuner.generation.lmdeploy_backend import LMDeployBackend, build_generation_config
from maskdpo_xtuner.generation.openai_backend import OpenAIBackend
from maskdpo_xtuner.generation.transformers_backend import TransformersBackend

BACKENDS = {'transformers': TransformersBackend, 'lmdeploy': LMDeployBackend,
            'openai': OpenAIBackend}


def build_backend(name: str, **kwargs) -> Backend:
    """Build a backend by name ('transformers' | 'lmdeploy' | 'openai'); ``kwargs`` go to its
    constructor."""
    if name not in BACKENDS:
        raise ValueError(f'unknown backend {name!r}; choose one of {sorted(BACKENDS)}')
    return BACKENDS[name](**kwargs)


__all__ = ['Backend', 'Completion', 'SamplingParams', 'finish_reason', 'TransformersBackend', 'LMDeployBackend',
           'OpenAIBackend', 'build_backend', 'build_generation_config', 'BACKENDS']
