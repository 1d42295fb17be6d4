"""Stages with caching: each stage writes into its own directory a ``stage.json`` holding a hash
of its inputs (its settings, the source files it runs, and the hashes of the stages it depends
on). A stage whose ``stage.json`` matches and is marked done is skipped; one whose inputs changed
is cleared and redone (so is everything downstream, whose inputs include its hash); an
interrupted stage with the same inputs is resumed where its function can resume (sampling,
evaluation) and redone otherwise.
"""
import hashlib
import json
import os
import shutil
import time
from typing import List

from maskdpo_xtuner.io.manifest import hash_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# source files whose change invalidates a stage (and, through its hash, everything after it)
CODE = {
    'world': ['maskdpo_xtuner/studies/world/world.py'],
    'base': ['maskdpo_xtuner/studies/world/pretrain.py', 'maskdpo_xtuner/offline/tiny.py'],
    'sample': ['maskdpo_xtuner/pipeline/sample.py', 'maskdpo_xtuner/pipeline/backends.py',
               'maskdpo_xtuner/generation'],
    'annotate': ['maskdpo_xtuner/pipeline/annotation.py', 'maskdpo_xtuner/studies/world/oracle.py',
                 'maskdpo_xtuner/annotate/split.py'],
    'pairs': ['maskdpo_xtuner/pipeline/pairing.py', 'maskdpo_xtuner/pairs.py'],
    'train': ['configs/world', 'configs/_base_', 'configs/maskdpo/tiny_cpu_maskdpo.py',
              'configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py',  # the bases it inherits
              'maskdpo_xtuner/model', 'maskdpo_xtuner/dataset'],
    'eval': ['maskdpo_xtuner/pipeline/anah_eval.py', 'maskdpo_xtuner/pipeline/sample.py',
             'maskdpo_xtuner/pipeline/annotation.py', 'maskdpo_xtuner/pipeline/backends.py',
             'maskdpo_xtuner/generation', 'maskdpo_xtuner/studies/world/oracle.py',
             'maskdpo_xtuner/annotate/split.py', 'maskdpo_xtuner/evaluation/metrics.py'],
}


def hash_inputs(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_hash(stage) -> str:
    """Hash of the source files of ``stage`` (a name in CODE, or a list of paths under ROOT)."""
    h = hashlib.sha256()
    for rel in (CODE[stage] if isinstance(stage, str) else stage):
        path = os.path.join(ROOT, rel)
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
                       if f.endswith('.py')) if os.path.isdir(path) else [path]
        for p in files:
            h.update(os.path.relpath(p, ROOT).encode())
            hash_file(h, p)
    return h.hexdigest()[:16]


class Stages:
    """Runs stages, skipping those whose inputs are unchanged; ``log`` records what happened."""

    def __init__(self):
        self.log: List[tuple] = []  # (stage name, 'skipped' | 'ran' | 'resumed')

    def run(self, name: str, out_dir: str, inputs: dict, fn, resumable: bool = False) -> str:
        key = hash_inputs(inputs)
        path = os.path.join(out_dir, 'stage.json')
        old = None
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
        if old and old['key'] == key and old.get('done'):
            print(f'[{name}] up to date, skipped', flush=True)
            self.log.append((name, 'skipped'))
            return key
        if old and old['key'] == key and resumable:
            status = 'resumed'
            print(f'[{name}] resuming an interrupted run', flush=True)
        else:
            status = 'ran'
            if os.path.exists(out_dir):
                why = 'inputs changed' if old and old['key'] != key else 'incomplete output'
                print(f'[{name}] {why}: clearing {out_dir} and redoing', flush=True)
                shutil.rmtree(out_dir)
            print(f'[{name}] running', flush=True)
        os.makedirs(out_dir, exist_ok=True)
        record = {'key': key, 'inputs': inputs, 'done': False}
        write_json(path, record)
        start = time.time()
        fn()
        record.update(done=True, seconds=round(time.time() - start, 1))
        write_json(path, record)
        print(f'[{name}] done in {record["seconds"]:.0f} s', flush=True)
        self.log.append((name, status))
        return key


def write_json(path, obj):
    """Write JSON atomically (a temporary file renamed over the target)."""
    from maskdpo_xtuner.io.atomic import atomic_file
    with atomic_file(path) as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, default=str)
