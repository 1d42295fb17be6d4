"""Atomic writes whose leftovers the next run removes.

A file is written to ``PATH.tmp<pid>`` (the writer's process id) and renamed over ``PATH``
when complete, so ``PATH`` is either the old file or the new one, never half of one; nothing
reads a ``.tmp<pid>`` file. A writer killed before its rename leaves its temporary behind:
:func:`remove_stale` (run by every :func:`atomic_file` before it writes) deletes the
temporaries of ``PATH`` whose writer is no longer running on this machine, and keeps those of
a live writer. :func:`stale_owner` does the same test for other names that end in a pid (the
Arrow cache's ``.building-<key>-<host>-<pid>`` folders).
"""
import contextlib
import glob
import os
import re
import shutil
import socket
from typing import List, Optional

_PID_SUFFIX = re.compile(r'\.tmp(\d+)$')


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return True


def stale_owner(pid: int, host: Optional[str] = None) -> bool:
    """A leftover's writer (``pid`` on ``host``, default this machine) is known to be gone:
    it ran here and no longer runs. A writer on another machine is never called gone."""
    return (host is None or host == socket.gethostname()) and pid != os.getpid() \
        and not pid_alive(pid)


def remove_stale(path: str) -> List[str]:
    """Delete ``PATH.tmp<pid>`` files (or folders) of writers that no longer run, and bare
    ``PATH.tmp`` ones (older writers); returns what was removed."""
    removed = []
    for tmp in glob.glob(glob.escape(path) + '.tmp*'):
        m = _PID_SUFFIX.search(tmp)
        if tmp != path + '.tmp' and (m is None or not stale_owner(int(m.group(1)))):
            continue
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)
            else:
                os.remove(tmp)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_file(path: str, mode: str = 'w', encoding: Optional[str] = 'utf-8'):
    """``with atomic_file(PATH) as f: f.write(...)``: ``PATH`` appears complete or not at all;
    the temporary is removed if the block fails, and stale ones of killed writers first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_stale(path)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp, mode, encoding=None if 'b' in mode else encoding) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
