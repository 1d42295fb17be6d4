"""Child processes this process owns: they end within seconds of its death, however it dies.

Every program of the project that starts a long-lived process (the trainer of ``tools/train.py``
and of the studies, a vLLM or LMDeploy server, the Arrow build's ``num_proc`` workers) starts it
through this module, so that a SIGTERM, a SIGINT or a SIGKILL of the program leaves nothing
running.

* :class:`Child` starts a command in its own process group (``setsid``: the group holds the
  command and everything it starts, e.g. vLLM's engine core, torchrun's workers) and a
  **watchdog**: a tiny separate Python process (``python -S``, ~10 MB) that polls, five times a
  second, whether its parent (this process) is still alive. When the parent is gone (a
  SIGKILL, a crash, a SIGTERM with no handler), the watchdog sends SIGTERM to the child's
  group, waits ``grace`` seconds (5 by default), and SIGKILLs whatever is left. The watchdog
  ignores SIGINT/SIGTERM/SIGHUP, so a Ctrl-C or a ``kill`` of the terminal's group does not
  take it down before it has done its job; it exits as soon as the group is empty.
  :meth:`Child.stop` (also on leaving ``with Child(...)``, or on any exception, Ctrl-C
  included, in :func:`call`) stops the group the same way at once.
* :func:`die_with_parent` is for processes *forked* by a library (``datasets``' ``num_proc``
  pool): called in the worker, it asks the kernel (``prctl(PR_SET_PDEATHSIG)``) to SIGKILL the
  worker when the process that forked it dies.
* :func:`guard_forks` (a context) covers forked processes that run none of our code (the
  ``multiprocess`` manager ``datasets`` starts beside its pool): a watchdog notes this
  process's descendants five times a second and SIGKILLs them if this process dies inside the
  block.
* :func:`terminate_on_sigterm` (a context) turns a SIGTERM into ``SystemExit(143)`` in the main
  thread, so ``finally`` blocks and context managers (a server's ``stop``) run, as they do for
  Ctrl-C.
  The command-line tools install it (:mod:`maskdpo_xtuner.io.errors`).
"""
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional

GRACE = 5.0  # seconds between SIGTERM and SIGKILL of a child's group
POLL = 0.2   # seconds between two looks of the watchdog at its parent

_WATCHDOG = r'''
import os, signal, sys, time
parent, pgid, grace, poll = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
while alive() and os.getppid() == parent:
    time.sleep(poll)
if alive():
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    end = time.monotonic() + grace
    while alive() and time.monotonic() < end:
        time.sleep(0.1)
    if alive():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
'''


_FORK_WATCHDOG = r'''
import os, signal, sys, time
parent, poll, me = int(sys.argv[1]), float(sys.argv[2]), os.getpid()
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
def children(pid):
    out = []
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f'/proc/{pid}/task/{t}/children') as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out
def started(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except OSError:
        return None
seen = {}
while os.getppid() == parent:
    stack = [parent]
    while stack:
        for c in children(stack.pop()):
            if c != me:
                seen.setdefault(c, started(c))
                stack.append(c)
    time.sleep(poll)
for pid, t in seen.items():
    if t is not None and started(pid) == t:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
'''


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` exists that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for pid in os.listdir('/proc'):  # zombies count as gone (their parent reaps them)
        if pid.isdigit():
            try:
                with open(f'/proc/{pid}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != 'Z':
                return True
    return False


def stop_group(pgid: int, grace: float = GRACE, kill_after: float = 10.0) -> bool:
    """SIGTERM to group ``pgid``, SIGKILL after ``grace`` seconds; True when it is empty
    (waits at most ``kill_after`` more seconds for the SIGKILL to take effect)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_after)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if not group_alive(pgid):
                return True
            time.sleep(0.1)
    return not group_alive(pgid)


class Child:
    """A command in its own process group, owned by this process (see the module docstring).

    Arguments are those of ``subprocess.Popen`` (``stdout``, ``stderr``, ``env``, ``cwd``,
    ``text`` ...); ``grace``: seconds between SIGTERM and SIGKILL when stopping.

    >>> with Child(['python', 'server.py'], stdout=log) as child:   # doctest: +SKIP
    ...     child.wait()
    """

    def __init__(self, cmd: List[str], grace: float = GRACE, **popen):
        self.cmd, self.grace = list(cmd), grace
        popen.setdefault('stdin', subprocess.DEVNULL)
        self.proc = subprocess.Popen(self.cmd, start_new_session=True, **popen)
        self.pid = self.proc.pid  # = its process group id
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, '-S', '-c', _WATCHDOG, str(os.getpid()), str(self.pid),
                 str(grace), str(POLL)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except BaseException:
            self.stop()
            raise

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.returncode

    @property
    def stdout(self):
        return self.proc.stdout

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def wait(self, timeout: Optional[float] = None) -> int:
        return self.proc.wait(timeout)

    def communicate(self, timeout: Optional[float] = None):
        """(stdout, stderr) of a command started with pipes, once it has ended."""
        return self.proc.communicate(timeout=timeout)

    def running(self) -> bool:
        """The command or anything it started is still alive."""
        return self.proc.poll() is None or group_alive(self.pid)

    def stop(self, grace: Optional[float] = None) -> Optional[int]:
        """Stop the whole group (SIGTERM, SIGKILL after ``grace`` s); returns the exit code."""
        stop_group(self.pid, self.grace if grace is None else grace)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        watchdog = getattr(self, 'watchdog', None)
        if watchdog is not None and watchdog.poll() is None:
            watchdog.kill()
            watchdog.wait()
        return self.proc.returncode

    def __enter__(self) -> 'Child':
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def call(cmd: List[str], grace: float = GRACE, **popen) -> int:
    """``subprocess.call`` for an owned child: its exit code; on any exception here (Ctrl-C, a
    SIGTERM turned into SystemExit) the child's group is stopped before it propagates, and the
    watchdog stops it if this process is killed."""
    child = Child(cmd, grace, **popen)
    try:
        code = child.wait()
    except BaseException:
        child.stop()
        raise
    child.stop()  # anything the command left behind in its group
    return code


@contextlib.contextmanager
def guard_forks():
    """Within the block, the processes this one forks (and theirs) are SIGKILLed by a watchdog
    if this process dies (see the module docstring); the watchdog ends with the block."""
    watchdog = subprocess.Popen(
        [sys.executable, '-S', '-c', _FORK_WATCHDOG, str(os.getpid()), str(POLL)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()


_PR_SET_PDEATHSIG = 1
_armed_pid = None


def die_with_parent(parent: Optional[int] = None, sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; once per
    process, cheap to call per record). ``parent``: the pid it should have; if the parent is
    already gone (another one, or init, adopted this process), exit now."""
    global _armed_pid
    if _armed_pid == os.getpid() or not sys.platform.startswith('linux'):
        return
    _armed_pid = os.getpid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != (parent or os.getppid()) or os.getppid() == 1:
        os.kill(os.getpid(), sig)  # the parent died before the request


@contextlib.contextmanager
def terminate_on_sigterm():
    """Within the block, SIGTERM raises ``SystemExit(143)`` in the main thread (when it had the
    default action), so cleanups run as for Ctrl-C; the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise SystemExit(128 + signum)
