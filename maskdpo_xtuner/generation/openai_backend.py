"""Generation through OpenAI-compatible chat servers (``lmdeploy serve api_server``, vLLM, ...).

The request body is built by hand with ``requests`` so every field is explicit: ``top_k`` is a
top-level field on LMDeploy's server (the ``openai`` client would need ``extra_body``), and the
server's own defaults (LMDeploy: temperature 0.7) never apply. One request per completion, spread
round-robin over the endpoints and run concurrently; results come back in input order.
"""
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import requests

from .base import Completion, SamplingParams, copy_seeds


class OpenAIBackend:
    """Chat completion over HTTP, ``POST {endpoint}/v1/chat/completions``.

    Args:
        endpoints: server base URLs, e.g. ``['http://10.0.0.1:23333', 'http://10.0.0.2:23333']``
            (a trailing ``/v1`` is accepted). Requests are spread round-robin over them.
        model: the ``model`` field of each request (the served model's name).
        api_key: sent as ``Authorization: Bearer ...``.
        concurrency: number of requests in flight at once (threads).
        timeout: seconds to wait for one response.
        max_retries: retries after a connection error, a timeout or a 5xx answer, with
            exponential backoff; after the last one a ``RuntimeError`` names the endpoint.
        backoff: seconds before the first retry, doubled each time.
    """

    def __init__(self, endpoints: List[str], model: str, api_key: str = 'EMPTY',
                 concurrency: int = 8, timeout: float = 600, max_retries: int = 3,
                 backoff: float = 1.0):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError('at least one endpoint is required')
        self.endpoints = [self._base(e) for e in endpoints]
        self.model, self.api_key = model, api_key
        self.concurrency, self.timeout = concurrency, timeout
        self.max_retries, self.backoff = max_retries, backoff
        self._local = threading.local()  # one requests.Session per thread
        self._turn = itertools.count()  # round-robin position, kept across generate() calls

    @staticmethod
    def _base(endpoint: str) -> str:
        endpoint = endpoint.rstrip('/')
        return endpoint[:-3] if endpoint.endswith('/v1') else endpoint

    def _next_endpoint(self) -> str:
        return self.endpoints[next(self._turn) % len(self.endpoints)]

    def request_body(self, messages: List[dict], params: SamplingParams,
                     seed: Optional[int]) -> dict:
        """The JSON body of one request (greedy: temperature 1.0, top_k 1, top_p 1.0)."""
        body = dict(model=self.model, messages=messages, max_tokens=params.max_new_tokens, n=1,
                    temperature=params.temperature if params.do_sample else 1.0,
                    top_p=params.top_p if params.do_sample else 1.0,
                    top_k=params.top_k if params.do_sample else 1)
        if seed is not None:
            body['seed'] = seed
        return body

    def _post(self, endpoint: str, body: dict) -> str:
        session = getattr(self._local, 'session', None)
        if session is None:
            session = self._local.session = requests.Session()
        url = endpoint + '/v1/chat/completions'
        headers = {'Authorization': f'Bearer {self.api_key}'}
        last_error = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                r = session.post(url, json=body, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as e:
                last_error = f'{type(e).__name__}: {e}'
                continue
            if r.status_code >= 500:
                last_error = f'HTTP {r.status_code}: {r.text[:500]}'
                continue
            if r.status_code != 200:  # a client error will not go away by retrying
                raise RuntimeError(f'{url} answered HTTP {r.status_code}: {r.text[:500]}')
            choice = r.json()['choices'][0]
            return Completion(choice['message']['content'], choice.get('finish_reason'))
        raise RuntimeError(f'{url} failed after {self.max_retries + 1} attempts; '
                           f'last error: {last_error}')

    def generate(self, conversations: List[List[dict]], params: SamplingParams,
                 n: int = 1, seeds=None) -> List[List[str]]:
        """For each conversation, ``n`` completions (n requests; each copy its own seed,
        generation/base.py)."""
        per_copy = copy_seeds(params, len(conversations), n, seeds)
        jobs = [(conv, None if per_copy is None else per_copy[i][j])
                for i, conv in enumerate(conversations) for j in range(n)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._post, self._next_endpoint(),
                                   self.request_body(conv, params, seed))
                       for conv, seed in jobs]
            try:
                texts = [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]
