"""What a killed run leaves behind is removed by the next run, never read as a result
(maskdpo_xtuner/io/atomic.py; the Arrow cache's .building-* folders, dataset/arrow.py)."""
import json
import os
import socket
import subprocess
import sys

from conftest import SAMPLE, load_script
from maskdpo_xtuner.io.atomic import atomic_file, remove_stale
from maskdpo_xtuner.io.jsonl import write_jsonl


def dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def test_temporaries_of_dead_writers_go_those_of_live_ones_stay(tmp_path):
    out = str(tmp_path / 'out.jsonl')
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        for pid in (dead_pid(), live.pid):
            open(f'{out}.tmp{pid}', 'w').write('{"half": ')
        open(out + '.tmp', 'w').write('older writer')
        write_jsonl(out, [{'id': 1}])
        left = sorted(os.listdir(tmp_path))
        assert left == ['out.jsonl', 'out.jsonl.lock', f'out.jsonl.tmp{live.pid}']
        assert open(out).read() == '{"id": 1}\n'
    finally:
        live.kill()
        live.wait()
    assert remove_stale(out) == [f'{out}.tmp{live.pid}']


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / 'x.json')
    open(path, 'w').write('old')
    try:
        with atomic_file(path) as f:
            f.write('new, half')
            raise RuntimeError('killed')
    except RuntimeError:
        pass
    assert os.listdir(tmp_path) == ['x.json'] and open(path).read() == 'old'


def test_build_pairs_after_a_killed_run(tmp_path):
    """What kill -9 during build_pairs' write leaves (out.jsonl.tmp<pid>) is removed by the
    next run, whose output is complete."""
    from bad_inputs import annotated, lines
    inp, out = tmp_path / 'a.jsonl', str(tmp_path / 'pairs.jsonl')
    inp.write_bytes(lines([annotated(i) for i in range(3)]))
    half = f'{out}.tmp{dead_pid()}'
    open(half, 'w').write('{"id": "q0", "prompt": [{"ro')
    summary = load_script('build_pairs').main(['--input', str(inp), '--out', out])
    assert not os.path.exists(half)
    assert summary['pairs'] == 3 == len(open(out).read().splitlines())


def test_the_next_arrow_build_removes_the_folders_of_killed_builds(tmp_path, bpe_tokenizer):
    from maskdpo_xtuner.dataset import build_maskdpo_dataset
    cache = tmp_path / 'cache'
    cache.mkdir()
    host, dead = socket.gethostname(), dead_pid()
    gone = [f'.building-0123456789abcdef0123-{host}-{dead}',
            f'.building-0123456789abcdef0123-{dead}']  # the older name, without the host
    kept = [f'.building-0123456789abcdef0123-another-host-{dead}',  # cannot tell: kept
            f'.building-0123456789abcdef0123-{host}-{os.getppid()}']  # still running
    for name in gone + kept:
        (cache / name / 'scratch').mkdir(parents=True)
        (cache / name / 'scratch' / 'mapped.arrow').write_bytes(b'half')
    ds = build_maskdpo_dataset(SAMPLE, bpe_tokenizer, 256, progress=False, backend='arrow',
                               cache_dir=str(cache))
    assert len(ds) == 32
    names = os.listdir(cache)
    assert not [n for n in gone if n in names] and all(n in names for n in kept)
    built = [n for n in names if not n.startswith('.')]
    assert len(built) == 1 and json.load(open(cache / built[0] / 'report.json'))['kept'] == 32
