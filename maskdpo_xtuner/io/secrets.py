"""API keys: read from the environment, handed to children by environment, never written.

A key given on the command line is visible to every user of the machine (``ps``, ``/proc``)
and ends up in shell histories and logs, so the tools read it from an environment variable:
``MASKDPO_API_KEY`` for the model's endpoints, ``MASKDPO_JUDGE_API_KEY`` for the judge's
(:func:`api_key`; ``--api-key`` / ``--judge-api-key`` still work, with a warning). A server
started by :mod:`maskdpo_xtuner.generation.serve` gets its key by environment too, and every
command line this project writes into a log goes through :func:`redact_command` first; no
manifest, result or page holds a key (``BackendSpec.describe`` leaves it out).
"""
import os
import sys
from typing import Iterable, List, Optional

NO_KEY = 'EMPTY'  # what OpenAI-compatible servers started without a key accept
KEY_FLAGS = ('--api-key', '--api-keys', '--judge-api-key')
_warned = set()


def key_variable(prefix: str = '') -> str:
    """``MASKDPO_API_KEY``, or ``MASKDPO_JUDGE_API_KEY`` for ``prefix='judge-'``."""
    return 'MASKDPO_' + prefix.replace('-', '_').upper() + 'API_KEY'


def api_key(given: Optional[str] = None, prefix: str = '') -> str:
    """The key to send: ``given`` (from the command line: warned about once), else the
    environment variable of ``prefix`` (:func:`key_variable`), else ``'EMPTY'``."""
    var = key_variable(prefix)
    if given is not None and given != NO_KEY:
        if var not in _warned:
            _warned.add(var)
            print(f'warning: --{prefix}api-key puts the key on the command line, where every '
                  f'user of this machine can read it (ps); set {var} instead', file=sys.stderr)
        return given
    return os.environ.get(var) or NO_KEY


def redact(text: str, secrets: Iterable[Optional[str]]) -> str:
    """``text`` with every non-trivial secret replaced by ``***``."""
    for s in secrets:
        if s and s != NO_KEY and len(s) >= 4:
            text = text.replace(s, '***')
    return text


def redact_command(cmd: List[str]) -> List[str]:
    """A command line with the values of its key flags (``--api-key K``, ``--api-key=K``,
    ``--api-keys K1 K2``) replaced by ``***``, for logs."""
    out, hiding = [], False
    for arg in map(str, cmd):
        if hiding and not arg.startswith('-'):
            out.append('***')
            continue
        hiding = arg in KEY_FLAGS
        flag, eq, _ = arg.partition('=')
        out.append(f'{flag}=***' if eq and flag in KEY_FLAGS else arg)
    return out
