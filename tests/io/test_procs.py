"""Nothing left running: every process a program starts ends within 10 s of the program's
SIGTERM, SIGINT or SIGKILL (maskdpo_xtuner/io/procs.py). Each test kills a real program while
its children run, then looks for any of them (psutil)."""
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from conftest import ROOT

KILLS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]
# the checkout whose tools are killed (another one measures the code before: docs/integrity.md)
ROOT = os.environ.get('MASKDPO_DRILL_ROOT', ROOT)
ENV = dict(os.environ, PYTHONPATH=ROOT, TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1')

# a child that starts a grandchild in its group, as vLLM starts its engine core
GRANDCHILD = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(600)']); time.sleep(600)")


def spawn(cmd, **popen):
    """The program under test, with SIGINT at its default action as from a terminal: a shell
    that runs this suite in the background ignores SIGINT, its children inherit that, and a
    Python started so never turns SIGINT into KeyboardInterrupt."""
    return subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **popen)


def descendants(pid):
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def running(pids):
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_for(cond, proc, timeout=240, what='children'):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f'the program ended before its {what} started'
        assert time.time() - t0 < timeout, f'no {what} after {timeout} s'
        time.sleep(0.2)


def working(pids):
    """The running ones that are not watchdogs (``python -S -c``, maskdpo_xtuner/io/procs.py)."""
    out = []
    for pid in running(pids):
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).cmdline()[1:3] != ['-S', '-c']:
                out.append(pid)
    return out


def named(pids, text):
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if text in ' '.join(psutil.Process(pid).cmdline()):
                out.append(pid)
    return out


def kill_and_check(proc, sig, expected_children, settle=0.0, match=None):
    """Kill ``proc`` with ``sig`` once it has ``expected_children`` working descendants (the
    watchdogs not counted); every descendant must be gone within 10 s. Returns the seconds it
    took. ``settle``: seconds to let them work first; ``match``: the children counted are those
    whose command line holds it (not, e.g., the compiler DeepSpeed runs at import)."""
    def children():
        found = working(descendants(proc.pid))
        return named(found, match) if match else found
    wait_for(lambda: len(children()) >= expected_children, proc)
    time.sleep(settle)
    pids = descendants(proc.pid)
    assert children(), 'the children ended by themselves before the kill: nothing measured'
    proc.send_signal(sig)
    t0 = time.monotonic()
    while running(pids) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    gone, left = time.monotonic() - t0, running(pids)
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    proc.wait(30)
    assert not left, f'{sig.name}: {len(left)} of {len(pids)} children still running after 10 s'
    print(f'{sig.name}: {len(pids)} children gone in {gone:.1f} s')
    return gone


@pytest.mark.parametrize('sig', KILLS, ids=lambda s: s.name)
def test_an_owned_child_and_its_group_end_with_their_owner(tmp_path, sig):
    owner = tmp_path / 'owner.py'
    owner.write_text(textwrap.dedent(f'''
        import sys
        from maskdpo_xtuner.io.errors import tool_main
        from maskdpo_xtuner.io.procs import call

        @tool_main
        def main():
            return call([sys.executable, '-c', {GRANDCHILD!r}])
        main()
    '''))
    proc = spawn([sys.executable, str(owner)], env=ENV)
    seconds = kill_and_check(proc, sig, 2)  # the child and its grandchild
    assert seconds < 10
    if sig != signal.SIGKILL:
        assert proc.returncode in (1, 130, 143, -sig)


def test_stop_ends_the_group_and_the_watchdog():
    from maskdpo_xtuner.io.procs import Child
    child = Child([sys.executable, '-c', GRANDCHILD])
    wait_for(lambda: len(running(descendants(child.pid))) >= 1, child.proc)
    pids = [child.pid, child.watchdog.pid] + descendants(child.pid)
    child.stop(grace=2)
    assert not running(pids)


def test_communicate_gives_the_output_and_the_exit_code():
    from maskdpo_xtuner.io.procs import Child
    with Child([sys.executable, '-c', 'import sys; print("out"); sys.exit(3)'],
               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        out, err = child.communicate(timeout=60)
    assert (out, err, child.returncode) == ('out\n', '', 3)


FAKE_VLLM = r'''#!{python}
import subprocess, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[sys.argv.index('--port') + 1])
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])  # the "engine core"
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'{{"data": []}}')
    def log_message(self, *a): pass
HTTPServer(('127.0.0.1', port), H).serve_forever()
'''


@pytest.mark.parametrize('sig', KILLS, ids=lambda s: s.name)
def test_serve_leaves_no_server_running(tmp_path, sig):
    """tools/serve.py (vLLM's command, a stand-in python that serves and starts a child)."""
    from maskdpo_xtuner.generation.serve import free_port
    fake = tmp_path / 'python'
    fake.write_text(FAKE_VLLM.format(python=sys.executable))
    fake.chmod(0o755)
    proc = spawn([sys.executable, os.path.join(ROOT, 'tools', 'serve.py'), '--model',
                  str(tmp_path), '--port', str(free_port()), '--log',
                  str(tmp_path / 'serve.log')], env=dict(ENV, MASKDPO_VLLM_PYTHON=str(fake)),
                 stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait for "ready"
        if 'ready at' in line:
            break
    kill_and_check(proc, sig, 2)  # the server and its "engine core"


SLOW_BUILD = '''
import os, time
from maskdpo_xtuner.dataset import build_maskdpo_dataset
from maskdpo_xtuner.offline.tiny import train_bpe_tokenizer

def slow(rec):
    time.sleep(600)
    return rec

build_maskdpo_dataset({data!r}, train_bpe_tokenizer(), 256, dataset_map_fn=slow,
                      progress=False, backend='arrow', cache_dir={cache!r}, num_proc=2)
'''


@pytest.mark.parametrize('sig', KILLS, ids=lambda s: s.name)
def test_arrow_build_workers_end_with_their_parent(tmp_path, sig):
    """The Arrow build's num_proc workers (forked by ``datasets``) die with the process that
    forked them (before: they kept running after a kill of their parent)."""
    script = tmp_path / 'build.py'
    script.write_text(SLOW_BUILD.format(data=os.path.join(ROOT, 'data', 'sample_pairs.jsonl'),
                                        cache=str(tmp_path / 'cache')))
    proc = spawn([sys.executable, str(script)], env=ENV)
    wait_for(lambda: len(running(descendants(proc.pid))) >= 2, proc, what='workers')
    time.sleep(3)  # let them enter the map function
    kill_and_check(proc, sig, 2)


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_train_leaves_no_trainer_running(tmp_path, sig, tiny_model_dir):
    """tools/train.py on the tiny config: the trainer (and its Arrow workers) end with it
    (before: a SIGTERM or SIGKILL left the training child running to completion)."""
    proc = spawn(
        [sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
         os.path.join(ROOT, 'configs', 'maskdpo', 'tiny_cpu_maskdpo.py'), '--model',
         tiny_model_dir, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
         f'train_dataloader.dataset.cache_dir={tmp_path / "cache"}'],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    kill_and_check(proc, sig, 1, settle=5, match='maskdpo_xtuner.train')  # the trainer


def test_no_program_starts_a_process_it_does_not_own():
    """Every Popen of the package and the tools goes through Child (the short subprocess.run
    calls that remain wait for their command: a setup script, git, pip download)."""
    import re
    found = []
    for top in ('maskdpo_xtuner', 'tools'):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                path = os.path.join(folder, name)
                if not name.endswith('.py') or path.endswith(os.path.join('io', 'procs.py')):
                    continue
                if re.search(r'\bPopen\(', open(path).read()):
                    found.append(os.path.relpath(path, ROOT))
    assert found == []
