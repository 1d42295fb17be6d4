"""One way to describe a generation backend, for every tool and for Python callers.

A :class:`BackendSpec` says which backend runs which model with which engine settings; its
``build()`` makes the backend, so a pipeline stage can receive the description and build the
backend only when it has work (a resumed job that is complete never loads a model).

Command-line tools add the same flags with :func:`add_backend_args` (``prefix='judge-'`` for
the annotator's backend) and read them back with :func:`backend_spec`; every flag exists on
every tool, and ``--endpoints`` takes URLs separated by spaces, commas, or both.
"""
import argparse
import json
import os
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Union

from maskdpo_xtuner.io.manifest import fingerprint, folder_fingerprint
from maskdpo_xtuner.io.secrets import api_key, key_variable

BACKEND_NAMES = ('transformers', 'lmdeploy', 'openai')


@dataclass(frozen=True)
class BackendSpec:
    """What is needed to build a backend.

    ``model`` is a model folder (transformers, lmdeploy) or the served model's name (openai).
    ``batch_size`` is the sequences generated together (transformers, lmdeploy) and, unless
    ``concurrency`` is set, the requests in flight (openai).
    """
    backend: str = 'transformers'
    model: Optional[str] = None
    endpoints: List[str] = field(default_factory=list)
    batch_size: int = 64
    device: str = 'cpu'
    engine: str = 'pytorch'
    tp: int = 1
    api_key: str = field(default='EMPTY', repr=False)  # never printed nor recorded
    concurrency: Optional[int] = None
    timeout: float = 300.0          # openai: seconds for one response
    retry_deadline: float = 300.0   # openai: retry (and fail over) this long after a failure

    def __post_init__(self):
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f'unknown backend {self.backend!r}; choose one of {BACKEND_NAMES}')

    def check(self, role: str = 'model') -> 'BackendSpec':
        """Raise ``ValueError`` naming the missing setting, before any model is loaded."""
        if not self.model:
            raise ValueError(f'the {role} backend ({self.backend}) needs a model: a folder, or '
                             'the served model name for openai')
        if self.backend == 'openai' and not self.endpoints:
            raise ValueError(f'the {role} backend openai needs endpoints (server base URLs)')
        return self

    def build(self):
        """The backend (loads the model or connects to the servers)."""
        from maskdpo_xtuner.generation import build_backend  # heavy: only when there is work
        self.check()
        if self.backend == 'transformers':
            return build_backend('transformers', model_path_or_model=self.model,
                                 batch_size=self.batch_size, device=self.device)
        if self.backend == 'lmdeploy':
            return build_backend('lmdeploy', model_path=self.model, engine=self.engine,
                                 tp=self.tp, batch_size=self.batch_size)
        backend = build_backend('openai', endpoints=list(self.endpoints), model=self.model,
                                api_key=self.api_key, timeout=self.timeout,
                                retry_deadline=self.retry_deadline,
                                concurrency=self.concurrency or self.batch_size)
        backend.check_endpoints()  # a wrong key or no server: said now, not after retrying
        return backend

    def describe(self) -> dict:
        """The settings that define what the backend computes (for manifests and configs):
        no API key, no concurrency or timeout."""
        d = asdict(self)
        for k in ('api_key', 'concurrency', 'timeout', 'retry_deadline', 'batch_size'):
            d.pop(k)
        return d

    def fingerprint(self) -> dict:
        """What can be known of the weights: a local folder's content hash, or for a served
        model its name and the model lists of its endpoints."""
        if self.backend == 'openai':
            return {'backend': self.backend, 'kind': 'served', 'name': self.model,
                    'endpoint_models': _served_models(self),
                    'note': 'a served model: only its name and the model lists of its '
                            'endpoints are known, not its weights'}
        if self.model and os.path.isdir(self.model):
            return {'backend': self.backend, **folder_fingerprint(self.model)}
        return {'backend': self.backend, 'kind': 'name', 'name': self.model,
                'note': 'not a local folder: only its name is known'}


def _served_models(spec: BackendSpec) -> list:
    out = []
    for url in spec.endpoints:
        req = urllib.request.Request(url.rstrip('/') + '/v1/models',
                                     headers={'Authorization': f'Bearer {spec.api_key}'})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                out.append(sorted(m.get('id') for m in json.load(r).get('data', [])))
        except Exception:  # an endpoint that does not list its models
            out.append(None)
    return out


BackendLike = Union[BackendSpec, Callable[[], object], object]


def materialize(backend: BackendLike):
    """A backend from a :class:`BackendSpec` (built), a zero-argument factory (called), or an
    object that already has ``generate`` (returned as is)."""
    if isinstance(backend, BackendSpec):
        return backend.build()
    if hasattr(backend, 'generate') or hasattr(backend, 'annotate'):
        return backend
    if callable(backend):
        return backend()
    raise TypeError(f'expected a BackendSpec, a backend or a factory, got {type(backend)}')


@contextmanager
def opened(backend: BackendLike):
    """The backend: a :class:`BackendSpec` is built here and closed afterwards (an LMDeploy
    engine keeps its GPU memory until closed); a backend object, or what a factory returns, is
    the caller's to close."""
    built = materialize(backend)
    try:
        yield built
    finally:
        if isinstance(backend, BackendSpec):
            close_backend(built)


class OnDemand:
    """A backend built the first time it is called for and reused by later calls (one engine
    for several runs); ``close()`` releases it if it was built here from a spec.

    >>> with contextlib.closing(OnDemand(spec)) as policy:
    ...     sample(..., backend=policy)   # built at the first question that needs it
    """

    def __init__(self, backend: BackendLike):
        self.backend, self._built = backend, None

    def __call__(self):
        if self._built is None:
            self._built = materialize(self.backend)
        return self._built

    def fingerprint(self):
        return fingerprint(self.backend)

    def close(self):
        if self._built is not None and isinstance(self.backend, BackendSpec):
            close_backend(self._built)
        self._built = None


def close_backend(backend) -> None:
    close = getattr(backend, 'close', None)
    if callable(close):
        close()


def _urls(text: str) -> List[str]:
    return [u for u in text.replace(',', ' ').split() if u]


def add_backend_args(p: argparse.ArgumentParser, prefix: str = '', role: str = 'model',
                     model_required: bool = False, batch_size: int = 64):
    """Add ``--{prefix}backend --{prefix}model --{prefix}endpoints ...`` to a parser."""
    g = p.add_argument_group(f'{role} backend')
    g.add_argument(f'--{prefix}backend', choices=BACKEND_NAMES, default='transformers')
    g.add_argument(f'--{prefix}model', required=model_required,
                   help=f'{role}: model folder (transformers, lmdeploy) or served name (openai)')
    g.add_argument(f'--{prefix}endpoints', nargs='+', type=_urls, default=[],
                   help='openai: server base URLs, separated by spaces or commas')
    g.add_argument(f'--{prefix}batch-size', type=int, default=batch_size,
                   help='sequences generated together (openai: requests in flight unless '
                        f'--{prefix}concurrency)')
    g.add_argument(f'--{prefix}device', default='cpu', help='transformers: torch device')
    g.add_argument(f'--{prefix}engine', choices=['pytorch', 'turbomind'], default='pytorch',
                   help='lmdeploy: inference engine')
    g.add_argument(f'--{prefix}tp', type=int, default=1, help='lmdeploy: tensor-parallel GPUs')
    g.add_argument(f'--{prefix}api-key', default=None,
                   help=f'openai: API key; better set ${key_variable(prefix)} (a key on the '
                        'command line is visible to every user of the machine)')
    g.add_argument(f'--{prefix}concurrency', type=int, default=None,
                   help='openai: requests in flight (default: the batch size)')
    g.add_argument(f'--{prefix}timeout', type=float, default=300.0,
                   help='openai: seconds to wait for one response')
    g.add_argument(f'--{prefix}retry-deadline', type=float, default=300.0,
                   help='openai: keep retrying, failing over to healthy endpoints, this many '
                        'seconds after a request first fails (a server restart takes 30-130 s)')
    return g


def backend_spec(args: argparse.Namespace, prefix: str = '') -> BackendSpec:
    """The :class:`BackendSpec` of the flags added by :func:`add_backend_args`."""
    a = prefix.replace('-', '_')
    get = lambda name: getattr(args, a + name)  # noqa: E731
    if get('batch_size') < 1:
        raise ValueError(f'--{prefix}batch-size must be >= 1')
    return BackendSpec(backend=get('backend'), model=get('model'),
                       endpoints=[u for group in get('endpoints') for u in group],
                       batch_size=get('batch_size'), device=get('device'),
                       engine=get('engine'), tp=get('tp'),
                       api_key=api_key(get('api_key'), prefix),  # the environment's
                       concurrency=get('concurrency'), timeout=get('timeout'),
                       retry_deadline=get('retry_deadline'))
