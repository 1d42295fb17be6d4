"""kill -9 drills (issue 10): sample, annotate, eval_anah and eval_factscore are killed at random
points, several times, then resumed; every output file must be byte-identical to that of an
uninterrupted run. The jobs run as subprocesses with the deterministic fakes of
tests/drill_jobs.py (DRILL_DELAY seconds per model call leave time to kill them)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from maskdpo_xtuner.io.jsonl import write_jsonl

pytestmark = pytest.mark.slow
JOBS = os.path.join(ROOT, 'tests', 'drill_jobs.py')
KILLS = 3


def command(tool, argv):
    return [sys.executable, JOBS, tool, *argv]


def env(delay):
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', DRILL_DELAY=str(delay))


def lines(paths):
    return sum(open(p, 'rb').read().count(b'\n') for p in paths if os.path.exists(p))


def outputs(folder):
    """{relative path: bytes} of every output file (lock files hold a pid: left out)."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            if not n.endswith('.lock'):
                p = os.path.join(root, n)
                out[os.path.relpath(p, folder)] = open(p, 'rb').read()
    return out


def drill(tmp_path, tool, make_argv, watched, total, seed):
    """Reference run, then KILLS killed runs (at random progress points) and a final one."""
    ref, run = tmp_path / 'ref', tmp_path / 'run'
    subprocess.run(command(tool, make_argv(ref)), env=env(0), check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rng, landed = random.Random(seed), []
    for k in range(KILLS):
        done = lines(watched(run))
        target = done + rng.randint(1, max(1, (total - done) // 2))
        proc = subprocess.Popen(command(tool, make_argv(run)), env=env(0.03), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and lines(watched(run)) < target and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))  # anywhere in the next call, or mid-write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed.append((lines(watched(run)), proc.returncode == -signal.SIGKILL))
    subprocess.run(command(tool, make_argv(run)), env=env(0), check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f'{tool}: killed at {landed} of {total} lines')
    assert sum(hit for _, hit in landed) >= 2, landed  # most kills landed mid-run
    want, got = outputs(ref), outputs(run)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name
    return landed


@pytest.fixture
def questions(tmp_path):
    path = str(tmp_path / 'q.jsonl')
    write_jsonl(path, [{'id': f'q{i}', 'question': f'Who was person {i}?',
                        'document': f'Doc {i}.'} for i in range(30)])
    return path


@pytest.mark.parametrize('seed', [0, 1])
def test_sample_killed_and_resumed_is_byte_identical(tmp_path, questions, seed):
    argv = (lambda d: ['--questions', questions, '--out', str(d / 'out.jsonl'), '--model',
                       'fake', '--n', '2', '--batch-size', '2', '--seed', '3'])
    drill(tmp_path, 'sample', argv, lambda d: [d / 'out.jsonl'], 30, seed)


def test_annotate_killed_and_resumed_is_byte_identical(tmp_path, questions):
    samples = str(tmp_path / 'samples.jsonl')
    subprocess.run(command('sample', ['--questions', questions, '--out', samples, '--model',
                                      'fake', '--n', '3']), env=env(0), check=True, cwd=ROOT)
    argv = (lambda d: ['--input', samples, '--out', str(d / 'ann.jsonl'),
                       '--chunk-questions', '1'])
    drill(tmp_path, 'annotate', argv, lambda d: [d / 'ann.jsonl'], 30, 2)


def test_eval_anah_killed_and_resumed_is_byte_identical(tmp_path, questions):
    argv = (lambda d: ['--questions', questions, '--model', 'fake', '--out-dir', str(d),
                       '--batch-size', '1', '--seeds', '0', '1', '--n-boot', '50'])
    watched = (lambda d: [d / s / f for s in ('seed0', 'seed1')
                          for f in ('responses.jsonl', 'annotated.jsonl')])
    drill(tmp_path, 'eval_anah', argv, watched, 120, 3)


def test_eval_factscore_killed_and_resumed_is_byte_identical(tmp_path):
    names = [f'Person {i}' for i in range(20)]
    kb = str(tmp_path / 'kb.jsonl')
    write_jsonl(kb, [{'title': n, 'text': f'{n} was born in Lyon. {n} won a prize.'}
                     for n in names])
    ents = tmp_path / 'entities.txt'
    ents.write_text('\n'.join(names) + '\n')
    argv = (lambda d: ['--entities', str(ents), '--knowledge', kb, '--out-dir', str(d),
                       '--model', 'fake', '--judge-model', 'judge', '--chunk', '1'])
    watched = (lambda d: [d / 'generations.jsonl', d / 'factscore_details.jsonl'])
    drill(tmp_path, 'eval_factscore', argv, watched, 40, 4)


def test_a_second_writer_of_a_running_job_is_refused(tmp_path, questions):
    out = tmp_path / 'out.jsonl'
    argv = ['--questions', questions, '--out', str(out), '--model', 'fake', '--n', '2',
            '--batch-size', '2']
    # slow enough (>= 15 batches x 0.4 s) that the second writer starts while the first writes,
    # even on a loaded machine (at 0.05 s the first could finish before the second started)
    first = subprocess.Popen(command('sample', argv), env=env(0.4), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while lines([out]) < 1:
            time.sleep(0.01)
        second = subprocess.run(command('sample', argv), env=env(0), cwd=ROOT,
                                capture_output=True, text=True)
        assert second.returncode != 0
        assert f'{out} is being written by another process (pid {first.pid}' in second.stderr
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0
    ids = [json.loads(x)['id'] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 30  # each id once
