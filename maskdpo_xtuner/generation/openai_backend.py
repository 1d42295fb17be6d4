"""Generation through OpenAI-compatible chat servers (``lmdeploy serve api_server``, vLLM, ...).

The request body is built by hand with ``requests`` so every field is explicit: ``top_k`` is a
top-level field on LMDeploy's and vLLM's servers (the ``openai`` client would need
``extra_body``), and neither the server's defaults (LMDeploy: temperature 0.7) nor the model
folder's ``generation_config.json`` (vLLM applies its repetition_penalty / min_p) ever apply.

One request per completion, run concurrently and spread round-robin over the endpoints that are
healthy. A request that fails (connection error, timeout, HTTP 5xx/408/429) puts its endpoint in
a cool-down, during which no request is sent there, and is sent again at once to another
healthy endpoint; when none is healthy it waits (exponential backoff) and probes the one that
failed longest ago. It keeps trying until ``retry_deadline`` seconds after its first failure, long
enough to outlive a server restart (30-130 s for vLLM on a CPU). Each request is one completion,
so a retried request replaces its own lost answer: nothing is lost or duplicated. Results come
back in input order.
"""
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import requests

from maskdpo_xtuner.generation.base import (Completion, SamplingParams, check_choice,
                                             choice_regex, copy_seeds)
from maskdpo_xtuner.io.errors import ToolError

RETRY_STATUS = {408, 429}  # besides every 5xx: the server is busy or restarting
AUTH_STATUS = {401, 403}
CHECK_KEY = ('check the key: MASKDPO_API_KEY (the judge\'s: MASKDPO_JUDGE_API_KEY) or '
             '--api-key must be one the server was started with (its --api-key / --api-keys, '
             'or VLLM_API_KEY)')
CHECK_SERVER = ('check that the server is running and listening there (tools/serve.py prints '
                '"ready at URL"), the host and port of --endpoints, and that no firewall or proxy '
                'is in the way')


class _Aborted(Exception):
    """Another request of the same generate() call failed for good."""


class OpenAIBackend:
    """Chat completion over HTTP, ``POST {endpoint}/v1/chat/completions``.

    Args:
        endpoints: server base URLs, e.g. ``['http://10.0.0.1:23333', 'http://10.0.0.2:23333']``
            (a trailing ``/v1`` is accepted).
        model: the ``model`` field of each request (the served model's name).
        api_key: sent as ``Authorization: Bearer ...``.
        concurrency: number of requests in flight at once (threads), over all endpoints.
        timeout: seconds to wait for one response (per attempt; connecting: at most 10 s).
        retry_deadline: seconds a request keeps being retried after its first failure; then a
            ``RuntimeError`` names the endpoints and the last error. An attempt started before
            the deadline may run ``timeout`` seconds more.
        max_retries: optional cap on the retries of one request (None: only the deadline).
        backoff: seconds to wait when no endpoint is healthy, doubled per failure of the
            request, at most ``max_backoff``.
        cooldown: seconds an endpoint is skipped after a failure.
    """

    def __init__(self, endpoints: List[str], model: str, api_key: str = 'EMPTY',
                 concurrency: int = 8, timeout: float = 300, retry_deadline: float = 300,
                 max_retries: Optional[int] = None, backoff: float = 1.0,
                 max_backoff: float = 15.0, cooldown: float = 10.0):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError('at least one endpoint is required')
        if concurrency < 1:
            raise ValueError(f'concurrency must be >= 1, got {concurrency}')
        self.endpoints = [self._base(e) for e in endpoints]
        self.model, self.api_key = model, api_key
        self.concurrency, self.timeout = concurrency, timeout
        self.retry_deadline, self.max_retries = retry_deadline, max_retries
        self.backoff, self.max_backoff, self.cooldown = backoff, max_backoff, cooldown
        self._local = threading.local()  # one requests.Session per thread
        self._turn = itertools.count()  # round-robin position, kept across generate() calls
        self._lock = threading.Lock()
        self._down_until = {e: 0.0 for e in self.endpoints}  # monotonic time; 0: healthy
        self._failed_at = {e: 0.0 for e in self.endpoints}

    @staticmethod
    def _base(endpoint: str) -> str:
        endpoint = endpoint.rstrip('/')
        return endpoint[:-3] if endpoint.endswith('/v1') else endpoint

    def healthy_endpoints(self) -> List[str]:
        now = time.monotonic()
        with self._lock:
            return [e for e in self.endpoints if self._down_until[e] <= now]

    def _pick(self, preferred: Optional[str] = None) -> Optional[str]:
        """``preferred`` if healthy, else the next healthy endpoint in round-robin order, or None
        if all are cooling down."""
        now = time.monotonic()
        with self._lock:
            if preferred is not None and self._down_until[preferred] <= now:
                return preferred
            start = next(self._turn)
            for k in range(len(self.endpoints)):
                e = self.endpoints[(start + k) % len(self.endpoints)]
                if self._down_until[e] <= now:
                    return e
        return None

    def _mark(self, endpoint: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._down_until[endpoint] = 0.0
            else:
                self._failed_at[endpoint] = now = time.monotonic()
                self._down_until[endpoint] = now + self.cooldown

    def check_endpoints(self, timeout: float = 10.0) -> None:
        """Before any work: ``GET /v1/models`` on each endpoint. A refused key (401/403) on any,
        or no endpoint reachable at all, is a :class:`ToolError` naming the URLs and what to
        check (later failures are retried until ``retry_deadline``: a restart is survived)."""
        unreachable = {}
        for e in self.endpoints:
            try:
                r = requests.get(e + '/v1/models', timeout=timeout,
                                 headers={'Authorization': f'Bearer {self.api_key}'})
            except requests.RequestException as err:
                unreachable[e] = f'{type(err).__name__}: {err}'
                continue
            if r.status_code in AUTH_STATUS:
                raise ToolError(f'{e}/v1/models refused the API key (HTTP {r.status_code}): '
                                f'{CHECK_KEY}')
        if len(unreachable) == len(self.endpoints):
            raise ToolError(f'no endpoint answers: {unreachable}; {CHECK_SERVER}')

    def request_body(self, messages: List[dict], params: SamplingParams,
                     seed: Optional[int]) -> dict:
        """The JSON body of one request (greedy: temperature 1.0, top_k 1, top_p 1.0, min_p 0)."""
        sample = params.do_sample
        body = dict(model=self.model, messages=messages, max_tokens=params.max_new_tokens, n=1,
                    temperature=params.temperature if sample else 1.0,
                    top_p=params.top_p if sample else 1.0,
                    top_k=params.top_k if sample else 1,
                    min_p=params.min_p if sample else 0.0,
                    repetition_penalty=params.repetition_penalty,
                    presence_penalty=params.presence_penalty,
                    frequency_penalty=params.frequency_penalty)
        if seed is not None:
            body['seed'] = seed
        return body

    def _attempt(self, endpoint: str, body: dict):
        """(text, None) on success, (None, error) on a retryable failure; raises otherwise."""
        session = getattr(self._local, 'session', None)
        if session is None:
            session = self._local.session = requests.Session()
        url = endpoint + '/v1/chat/completions'
        try:
            r = session.post(url, json=body, headers={'Authorization': f'Bearer {self.api_key}'},
                             timeout=(min(10.0, self.timeout), self.timeout))
        except (requests.ConnectionError, requests.Timeout) as e:
            return None, f'{type(e).__name__}: {e}'
        if r.status_code == 200:
            choice = r.json()['choices'][0]
            return Completion(choice['message']['content'], choice.get('finish_reason')), None
        if r.status_code >= 500 or r.status_code in RETRY_STATUS:
            return None, f'HTTP {r.status_code}: {r.text[:500]}'
        # a client error (bad request, wrong key, unknown model) will not go away by retrying
        if r.status_code in AUTH_STATUS:
            raise ToolError(f'{url} refused the API key (HTTP {r.status_code}): {CHECK_KEY}')
        raise ToolError(f'{url} answered HTTP {r.status_code}: {r.text[:500]}')

    def _complete(self, body: dict, abort: threading.Event, preferred: str) -> str:
        first_failure, failures, errors = None, 0, {}
        while True:
            if abort.is_set():
                raise _Aborted()
            endpoint = self._pick(preferred if failures == 0 else None)
            if endpoint is None:  # every endpoint is cooling down: wait, then probe one
                remaining = self.retry_deadline if first_failure is None else \
                    self.retry_deadline - (time.monotonic() - first_failure)
                abort.wait(max(0.0, min(self.backoff * 2 ** max(failures - 1, 0),
                                        self.max_backoff, remaining)))
                with self._lock:
                    endpoint = min(self.endpoints, key=self._failed_at.get)
            text, error = self._attempt(endpoint, body)
            self._mark(endpoint, ok=error is None)
            if error is None:
                return text
            now = time.monotonic()
            first_failure = first_failure or now
            failures += 1
            errors[endpoint] = error
            if now - first_failure >= self.retry_deadline or \
                    (self.max_retries is not None and failures > self.max_retries):
                hint = CHECK_SERVER if error.startswith(('ConnectionError', 'ConnectTimeout')) \
                    else 'the server kept failing; see its log'
                raise ToolError(
                    f'{endpoint}/v1/chat/completions failed after {failures} attempts over '
                    f'{now - first_failure:.0f} s (retry deadline {self.retry_deadline} s); '
                    f'last error: {error}; endpoints that failed: {sorted(errors)}; {hint}')

    def choose(self, conversations: List[List[dict]], choices: List[str],
               max_new_tokens: int = 32) -> List[str]:
        """Greedy answers constrained to ``choices`` (generation/base.py): vLLM's
        ``structured_outputs.choice`` (``self.structured = 'vllm'``, the default) or
        LMDeploy's ``response_format`` regex (``'lmdeploy'``); an answer outside the choices
        raises, so a server that ignores the field is noticed."""
        params = SamplingParams.greedy(max_new_tokens)
        bodies = []
        for conv in conversations:
            body = self.request_body(conv, params, None)
            if getattr(self, 'structured', 'vllm') == 'lmdeploy':
                body['response_format'] = {'type': 'regex_schema',
                                           'regex_schema': choice_regex(choices)}
            else:
                body['structured_outputs'] = {'choice': list(choices)}
            bodies.append(body)
        abort = threading.Event()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._complete, b, abort,
                                   self.endpoints[next(self._turn) % len(self.endpoints)])
                       for b in bodies]
            try:
                texts = [f.result() for f in futures]
            except BaseException:
                abort.set()
                raise
        return [check_choice(str(t), choices, self.endpoints[0]) for t in texts]

    def generate(self, conversations: List[List[dict]], params: SamplingParams,
                 n: int = 1, seeds=None) -> List[List[str]]:
        """For each conversation, ``n`` completions (n requests; each copy its own seed,
        generation/base.py)."""
        per_copy = copy_seeds(params, len(conversations), n, seeds)
        jobs = [(conv, None if per_copy is None else per_copy[i][j])
                for i, conv in enumerate(conversations) for j in range(n)]
        abort = threading.Event()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            # first choice spread round-robin when submitted (deterministic), healthy ones after
            futures = [pool.submit(self._complete, self.request_body(conv, params, seed), abort,
                                   self.endpoints[next(self._turn) % len(self.endpoints)])
                       for conv, seed in jobs]
            try:
                texts = [f.result() for f in futures]
            except BaseException:
                abort.set()  # the other requests stop at their next attempt
                for f in futures:
                    f.cancel()
                raise
        return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]
