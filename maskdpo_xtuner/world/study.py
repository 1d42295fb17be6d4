"""The whole study in the synthetic world, one command (``tools/world_study.py``):

    world -> base model -> sample K answers per train question -> annotate (the world's oracle)
    -> build pairs -> train each arm with ``xtuner train`` -> convert to Hugging Face
    -> evaluate every model (greedy and sampled) on held-out topics and out-of-domain questions
    -> results.md, results.json, results.png

Studies (each one command, over one or several seeds, mean ± std):

* ``main``: base, vanilla DPO, Mask-DPO;
* ``ablation``: which masks (both / chosen / rejected / none) and the end-of-turn token
  (``both`` with ``model.end_tokens=mask``);
* ``scaling``: Mask-DPO on 1/3, 2/3, all train topics (3 questions each) versus all topics with
  1, 2, 3 questions each (paper Table 4);
* ``tune``: DPO and Mask-DPO over a grid of learning rates, evaluated on the *validation*
  topics (choose hyperparameters here, never on test).

Caching. Every stage writes into its own directory a ``stage.json`` holding a hash of its inputs:
its settings, the code it runs (source files) and the hashes of the stages it depends on. A stage
whose ``stage.json`` matches and is marked done is skipped; one whose inputs changed is cleared
and redone (so is everything downstream, whose inputs include its hash); an interrupted stage
with the same inputs is resumed where its tool can resume (sampling, evaluation) and redone
otherwise. Training depends on the *content* of the pairs file, not on how it was made, so a
change to the sampler or annotator code that yields the same pairs keeps the trained models.
The world and the base model are shared by all seeds and studies, and so are trained models:
the training directory is named by what defines it (masks, lr, data subset), so the
``maskdpo`` of the main study is the ``both`` of the ablation and the ``all`` of scaling.

Layout of ``--out``::

    world/                  world.json, questions/{train,val,test}{,_ood}.jsonl
    base/model/             the base model (Hugging Face folder)
    base/eval/<set>-<dec>/  its evaluations (greedy shared by seeds; sampled per seed)
    seed<S>/sample|annotate|pairs/
    seed<S>/train/<spec>/   xtuner work dir, hf/ (the converted policy), losses.json
    seed<S>/eval/<spec>/<set>-<dec>/
    results.{md,json,png}           the main study on test topics
    <study>[-val]/results.{md,json,png}   the other studies (tune: always on val)

Threads: every process uses ``threads`` torch threads (1 by default: on 2 shared cores one
thread per process was ~4x faster than two), and ``jobs`` trainings run side by side.
"""
import copy
import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..io import hash_file, read_jsonl, write_jsonl
from ..tools import ROOT, load_tool
from .pretrain import PretrainConfig, pretrain
from .world import World, WorldConfig

CONFIGS = {'maskdpo': 'configs/world/world_maskdpo_cpu.py',
           'dpo': 'configs/world/world_dpo_cpu.py'}
# source files whose change invalidates a stage (and, through its hash, everything after it)
CODE = {
    'world': ['maskdpo_xtuner/world/world.py'],
    'base': ['maskdpo_xtuner/world/pretrain.py', 'maskdpo_xtuner/tiny.py'],
    'sample': ['tools/sample.py', 'maskdpo_xtuner/generation'],
    'annotate': ['tools/annotate.py', 'maskdpo_xtuner/world/oracle.py', 'maskdpo_xtuner/split.py'],
    'pairs': ['tools/build_pairs.py', 'maskdpo_xtuner/pairs.py'],
    'train': ['configs/world', 'configs/_base_', 'maskdpo_xtuner/model',
              'maskdpo_xtuner/dataset'],
    'eval': ['tools/eval_anah.py', 'tools/sample.py', 'tools/annotate.py',
             'maskdpo_xtuner/generation', 'maskdpo_xtuner/world/oracle.py', 'maskdpo_xtuner/split.py',
             'maskdpo_xtuner/metrics.py'],
}


# ------------------------------------------------------------------------------ settings
@dataclass
class StudySettings:
    preset: str = 'default'
    world: WorldConfig = field(default_factory=WorldConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    k: int = 8                      # samples per train question (top-k 40, temperature 0.8)
    temperature: float = 0.8
    top_k: int = 40
    max_new_tokens: int = 96
    batch_size: int = 64            # sequences generated together
    eval_samples: int = 4           # sampled answers per eval question (one run each)
    lr: Optional[float] = None      # None: the config's learning rate
    train_batch_size: Optional[int] = None  # pairs per step; None: the config's
    lrs: List[float] = field(default_factory=lambda: [2e-5, 5e-5, 1e-4, 2e-4])  # tune grid
    threads: int = 1                # torch threads per process (1 is fastest on shared cores)
    jobs: int = 2                   # trainings run at the same time


def preset(name: str) -> StudySettings:
    if name == 'default':
        return StudySettings(preset='default')
    if name == 'quick':  # a quarter of the world, a small base model: the pipeline in minutes
        return StudySettings(
            preset='quick',
            world=WorldConfig(n_person=60, n_organisation=30, n_place=30, n_event=30),
            pretrain=PretrainConfig(steps=300, batch_size=32, hidden_size=96, num_layers=2,
                                    intermediate_size=288, lr=3e-3, warmup=20),
            k=4, max_new_tokens=64, eval_samples=1, lr=1e-4, train_batch_size=8)
    raise ValueError(f'unknown preset {name!r}: quick or default')


# ------------------------------------------------------------------------------ arms
def spec(mask='both', end='keep', lr=None, topics=None, questions=None) -> dict:
    """What defines a trained model (besides the seed): masks, end-of-turn tokens, learning
    rate, and the data subset (share of train topics as 'a/b', questions per topic)."""
    return {'mask': mask, 'end': end, 'lr': lr, 'topics': topics, 'questions': questions}


def spec_name(s: dict) -> str:
    name = f'mask-{s["mask"]}'
    if s['end'] != 'keep':
        name += f'_end-{s["end"]}'
    if s['lr'] is not None:
        name += f'_lr{s["lr"]:g}'
    if s['topics'] is not None:
        name += f'_topics{s["topics"].replace("/", "of")}'
    if s['questions'] is not None:
        name += f'_q{s["questions"]}'
    return name


def arms(study: str, settings: StudySettings) -> Dict[str, Optional[dict]]:
    """Display name -> training spec (None: the base model, not trained)."""
    lr = settings.lr
    if study == 'main':
        return {'base': None, 'dpo': spec('none', lr=lr), 'maskdpo': spec('both', lr=lr)}
    if study == 'ablation':
        return {'base': None, 'none (DPO)': spec('none', lr=lr),
                'chosen': spec('chosen', lr=lr), 'rejected': spec('rejected', lr=lr),
                'both (Mask-DPO)': spec('both', lr=lr),
                'both + end masked': spec('both', end='mask', lr=lr)}
    if study == 'scaling':
        return {'base': None,
                'topics 1/3 x 3q': spec('both', lr=lr, topics='1/3'),
                'topics 2/3 x 3q': spec('both', lr=lr, topics='2/3'),
                'all topics x 1q': spec('both', lr=lr, questions=1),
                'all topics x 2q': spec('both', lr=lr, questions=2),
                'all topics x 3q': spec('both', lr=lr)}
    if study == 'tune':
        out = {'base': None}
        for x in settings.lrs:
            out[f'dpo lr={x:g}'] = spec('none', lr=x)
            out[f'maskdpo lr={x:g}'] = spec('both', lr=x)
        return out
    raise ValueError(f'unknown study {study!r}')


# ------------------------------------------------------------------------------ stages
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_hash(stage: str) -> str:
    h = hashlib.sha256()
    for rel in CODE[stage]:
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
        key = _hash(inputs)
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
        _write_json(path, record)
        start = time.time()
        fn()
        record.update(done=True, seconds=round(time.time() - start, 1))
        _write_json(path, record)
        print(f'[{name}] done in {record["seconds"]:.0f} s', flush=True)
        self.log.append((name, status))
        return key


def _write_json(path, obj):
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, default=str)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ the study
class Study:
    def __init__(self, settings: StudySettings, out: str, seeds: List[int], study: str = 'main',
                 eval_split: str = 'test'):
        self.s, self.out, self.seeds, self.study = settings, os.path.abspath(out), seeds, study
        self.eval_split = 'val' if study == 'tune' else eval_split
        self.stages = Stages()
        self.arms = arms(study, settings)

    # --------------------------------------------------------------- shared: world, base
    def build_world(self) -> str:
        d = os.path.join(self.out, 'world')

        def make():
            world = World.generate(self.s.world)
            world.save(os.path.join(d, 'world.json'))
            for split in ('train', 'val', 'test'):
                for ood in (False, True):
                    qs = [q for t in world.split(split) for q in world.questions(t, ood)]
                    write_jsonl(self._questions(split, ood), qs)
            print(f'  topics per split: '
                  f'{ {s: len(world.split(s)) for s in ("sft", "train", "val", "test")} }')
        self.world_key = self.stages.run('world', d, {'config': asdict(self.s.world),
                                                      'code': code_hash('world')}, make)
        self.world = World.load(os.path.join(d, 'world.json'))
        return self.world_key

    def _questions(self, split, ood=False):
        return os.path.join(self.out, 'world', 'questions',
                            f'{split}{"_ood" if ood else ""}.jsonl')

    def build_base(self) -> str:
        d = os.path.join(self.out, 'base', 'model')
        self.base_dir = d
        self.base_key = self.stages.run(
            'base model', d, {'world': self.world_key, 'config': asdict(self.s.pretrain),
                              'code': code_hash('base')},
            lambda: pretrain(self.world, d, self.s.pretrain))
        return self.base_key

    # --------------------------------------------------------------- per seed: data
    def seed_dir(self, seed, *parts):
        return os.path.join(self.out, f'seed{seed}', *parts)

    def build_pairs(self, seed: int) -> str:
        s = self.s
        sample_dir, ann_dir, pairs_dir = (self.seed_dir(seed, x)
                                          for x in ('sample', 'annotate', 'pairs'))
        samples = os.path.join(sample_dir, 'responses.jsonl')
        annotated = os.path.join(ann_dir, 'annotated.jsonl')
        self.pairs_file = pairs = os.path.join(pairs_dir, 'pairs.jsonl')
        key = self.stages.run(
            f'seed {seed}: sample {s.k} answers per train question', sample_dir,
            {'base': self.base_key, 'world': self.world_key, 'k': s.k, 'seed': seed,
             'temperature': s.temperature, 'top_k': s.top_k, 'max_new_tokens': s.max_new_tokens,
             'batch_size': s.batch_size, 'code': code_hash('sample')},
            lambda: load_tool('sample').main(
                ['--questions', self._questions('train'), '--out', samples,
                 '--backend', 'transformers', '--model', self.base_dir, '--n', str(s.k),
                 '--temperature', str(s.temperature), '--top-k', str(s.top_k),
                 '--max-new-tokens', str(s.max_new_tokens), '--batch-size', str(s.batch_size),
                 '--seed', str(seed)]),
            resumable=True)
        key = self.stages.run(
            f'seed {seed}: annotate with the world oracle', ann_dir,
            {'sample': key, 'code': code_hash('annotate')},
            lambda: load_tool('annotate').main(['--input', samples, '--out', annotated,
                                            '--annotator', 'world']),
            resumable=True)
        self.stages.run(
            f'seed {seed}: build pairs', pairs_dir,
            {'annotate': key, 'seed': seed, 'code': code_hash('pairs')},
            lambda: load_tool('build_pairs').main(['--input', annotated, '--out', pairs,
                                               '--seed', str(seed)]))
        h = hashlib.sha256()
        hash_file(h, pairs)
        return 'pairs-' + h.hexdigest()[:16]  # training is keyed by what it trains on

    # --------------------------------------------------------------- per seed: training
    def subset_pairs(self, sp: dict, seed: int) -> List[dict]:
        """The pairs of the spec's data subset, chosen deterministically from the seed and
        nested (1/3 of the topics within 2/3, 1 question within 2): the first share of each
        kind's train topics in a seeded order, or the first n of each topic's questions in a
        seeded per-topic order."""
        pairs = read_jsonl(self.pairs_file)
        if sp['topics'] is None and sp['questions'] is None:
            return pairs
        keep = set()
        for kind in sorted({t.kind for t in self.world.topics}):
            topics = sorted((t for t in self.world.split('train') if t.kind == kind),
                            key=lambda t: t.id)
            random.Random(f'scaling-{seed}-{kind}').shuffle(topics)
            if sp['topics'] is not None:
                a, b = map(int, sp['topics'].split('/'))
                topics = topics[:round(len(topics) * a / b)]
            for topic in topics:
                qids = [q['id'] for q in self.world.questions(topic)]
                random.Random(f'scaling-{seed}-{kind}-{topic.id}').shuffle(qids)
                keep.update(qids[:sp['questions'] or len(qids)])
        return [p for p in pairs if p['id'] in keep]

    def train_key(self, sp: dict, seed: int, pairs_key: str) -> tuple:
        d = self.seed_dir(seed, 'train', spec_name(sp))
        return d, {'pairs': pairs_key, 'base': self.base_key, 'spec': sp, 'seed': seed,
                   'batch_size': self.s.train_batch_size, 'code': code_hash('train')}

    def train(self, sp: dict, seed: int, pairs_key: str) -> str:
        d, inputs = self.train_key(sp, seed, pairs_key)
        return self.stages.run(f'seed {seed}: train {spec_name(sp)}', d, inputs,
                               lambda: self._train(sp, seed, d))

    def _train(self, sp, seed, d):
        pairs = self.subset_pairs(sp, seed)
        if not pairs:
            raise RuntimeError(f'{spec_name(sp)}: no training pairs (seed {seed})')
        data = os.path.join(d, 'pairs.jsonl')
        write_jsonl(data, pairs)
        config = CONFIGS['dpo' if sp['mask'] == 'none' else 'maskdpo']
        paths = [f'{k}={self.base_dir}' for k in (
            'tokenizer.pretrained_model_name_or_path', 'model.llm.pretrained_model_name_or_path',
            'train_dataloader.dataset.tokenizer.pretrained_model_name_or_path')]
        opts = paths + [f'train_dataloader.dataset.data_files={data}',
                        f'randomness.seed={seed}', f'model.mask_mode={sp["mask"]}',
                        f'model.end_tokens={sp["end"]}']
        if sp['lr'] is not None:
            opts.append(f'optim_wrapper.optimizer.lr={sp["lr"]}')
        if self.s.train_batch_size:
            opts.append(f'train_dataloader.batch_size={self.s.train_batch_size}')
        if -(-len(pairs) // (self.s.train_batch_size or 16)) < 4:  # warm-up: 0.3 epoch >= 1 step
            raise RuntimeError(f'{spec_name(sp)}: only {len(pairs)} training pairs (seed '
                               f'{seed}): too few for the schedule; sample more (--k) or train '
                               'the base model longer (--pretrain-steps)')
        tag = f'seed{seed}/{spec_name(sp)}'
        work = os.path.join(d, 'xtuner')
        self._run([sys.executable, '-m', 'xtuner.tools.train', config, '--work-dir', work,
                   '--cfg-options', *opts], os.path.join(d, 'train.log'), tag,
                  # `xtuner train` exits 0 even when training failed: check its checkpoint
                  expect=os.path.join(work, 'last_checkpoint'))
        with open(os.path.join(work, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        self._run([sys.executable, '-m', 'xtuner.tools.model_converters.pth_to_hf', config, ckpt,
                   os.path.join(d, 'hf'), '--fp32', '--cfg-options', *paths],
                  os.path.join(d, 'convert.log'), tag, expect=os.path.join(d, 'hf', 'config.json'))
        for pth in os.listdir(work):  # the converted model is kept; checkpoints are not needed
            if pth.endswith('.pth'):
                os.remove(os.path.join(work, pth))
        scalars = sorted(os.path.join(work, x, 'vis_data', 'scalars.json')
                         for x in os.listdir(work)
                         if os.path.exists(os.path.join(work, x, 'vis_data', 'scalars.json')))
        rows = [json.loads(line) for line in open(scalars[-1])] if scalars else []
        log = [{k: r[k] for k in ('iter', 'loss', 'reward_acc', 'reward_margin') if k in r}
               for r in rows if 'loss' in r]
        _write_json(os.path.join(d, 'losses.json'), {'pairs': len(pairs), 'log': log})

    def _run(self, cmd, log_path, tag, expect):
        """A subprocess whose output goes to ``log_path`` (its progress lines are echoed) and
        which must exit 0 and leave the file ``expect``."""
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
                   OMP_NUM_THREADS=str(self.s.threads), TOKENIZERS_PARALLELISM='false')
        with open(log_path, 'w') as log:
            log.write('$ ' + ' '.join(cmd) + '\n')
            log.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                log.write(line)
                if 'Iter(train)' in line:
                    print(f'  [{tag}] {line.split(" - INFO - ")[-1].strip()[:110]}', flush=True)
            proc.wait()
        if proc.returncode != 0 or not os.path.exists(expect):
            with open(log_path) as f:
                tail = f.readlines()[-40:]
            raise RuntimeError(f'{tag}: {" ".join(cmd[:4])} failed (exit {proc.returncode}); '
                               f'last lines of {log_path}:\n' + ''.join(tail))

    # --------------------------------------------------------------- evaluation
    def eval_sets(self):
        return {'in-domain': self._questions(self.eval_split),
                'ood': self._questions(self.eval_split, ood=True)}

    def evaluate(self, model_dir: str, model_key: str, out_base: str, seed: int,
                 tag: str) -> dict:
        """{set: {'greedy': metrics, 'sampled': metrics}} of one model."""
        s, out = self.s, {}
        for set_name, questions in self.eval_sets().items():
            set_tag = f'{self.eval_split}-{set_name}'
            out[set_name] = {}
            for dec in ('greedy', 'sampled'):
                sub = f'{set_tag}-greedy' if dec == 'greedy' else f'{set_tag}-sample{seed}'
                d = os.path.join(out_base, sub)
                seeds = [seed * 1000 + j for j in range(s.eval_samples)]
                opts = ['--backend', 'transformers', '--annotator', 'world',
                        '--max-new-tokens', str(s.max_new_tokens),
                        '--batch-size', str(s.batch_size), '--n-boot', '200']
                opts += ['--greedy'] if dec == 'greedy' else \
                    ['--seeds', *map(str, seeds), '--temperature', str(s.temperature),
                     '--top-k', str(s.top_k)]
                argv = ['--questions', questions, '--model', model_dir, '--out-dir', d, *opts]
                self.stages.run(f'{tag}: evaluate {sub}', d,
                                {'model': model_key, 'world': self.world_key, 'set': set_tag,
                                 'options': opts, 'code': code_hash('eval')},
                                lambda argv=argv: load_tool('eval_anah').main(argv), resumable=True)
                with open(os.path.join(d, 'metrics.json')) as f:
                    out[set_name][dec] = summarize_runs(json.load(f)['runs'])
        return out

    # --------------------------------------------------------------- everything
    def run(self) -> dict:
        import torch
        torch.set_num_threads(self.s.threads)
        t0 = time.time()
        print(f'== world study: {self.study}, preset {self.s.preset}, seeds {self.seeds}, '
              f'evaluated on {self.eval_split} topics -> {self.out}', flush=True)
        self.build_world()
        self.build_base()
        per_seed = {}
        for seed in self.seeds:
            print(f'== seed {seed}', flush=True)
            pairs_key = self.build_pairs(seed)
            with open(self.pairs_file + '.summary.json') as f:
                pairs_summary = json.load(f)
            trained = {name: sp for name, sp in self.arms.items() if sp is not None}
            unique = {spec_name(sp): sp for sp in trained.values()}
            with ThreadPoolExecutor(max(1, self.s.jobs)) as pool:
                keys = dict(zip(unique, pool.map(lambda sp: self.train(sp, seed, pairs_key),
                                                 unique.values())))
            results, training = {}, {}
            for name, sp in self.arms.items():
                if sp is None:
                    results[name] = self.evaluate(self.base_dir, self.base_key,
                                                  os.path.join(self.out, 'base', 'eval'),
                                                  seed, f'seed {seed}: base')
                    continue
                sname = spec_name(sp)
                d = self.seed_dir(seed, 'train', sname)
                results[name] = self.evaluate(os.path.join(d, 'hf'), keys[sname],
                                              self.seed_dir(seed, 'eval', sname), seed,
                                              f'seed {seed}: {sname}')
                with open(os.path.join(d, 'losses.json')) as f:
                    losses = json.load(f)
                log = losses['log']
                training[name] = {'spec': sp, 'dir': d, 'pairs': losses['pairs'],
                                  'steps': log[-1]['iter'] if log else 0,
                                  'first_loss': log[0]['loss'] if log else None,
                                  'last_loss': log[-1]['loss'] if log else None,
                                  'last_reward_acc': log[-1].get('reward_acc') if log else None}
            per_seed[seed] = {'results': results, 'pairs': pairs_summary, 'training': training}
        with open(os.path.join(self.base_dir, 'pretrain.json')) as f:
            base = json.load(f)
        setup = {'topics': {s: len(self.world.split(s)) for s in ('sft', 'train', 'val', 'test')},
                 'base_final_loss': base.get('final_loss')}
        doc = {'study': self.study, 'preset': self.s.preset, 'seeds': self.seeds,
               'eval_split': self.eval_split, 'settings': asdict(self.s), 'setup': setup,
               'arms': {n: sp for n, sp in self.arms.items()},
               'per_seed': per_seed, 'aggregate': aggregate_results(per_seed, self.arms),
               'stage_log': self.stages.log, 'seconds': round(time.time() - t0, 1)}
        if self.study == 'tune':
            doc['selected_lr'] = select_lr(doc['aggregate'], self.arms)
        write_results(doc, self.results_dir())
        print(f'== done in {time.time() - t0:.0f} s; results in {self.results_dir()}')
        return doc

    def results_dir(self):
        """--out for the main study on test topics, else --out/<study>[-val]."""
        if self.study == 'main' and self.eval_split == 'test':
            return self.out
        suffix = '-val' if self.eval_split == 'val' and self.study != 'tune' else ''
        return os.path.join(self.out, self.study + suffix)


# ------------------------------------------------------------------------------ results
METRICS = {'score': 'Score %', 'sentences': 'Sent./ans.', 'facts': 'Facts/ans.'}


def summarize_runs(runs: List[dict]) -> dict:
    """One model x set x decoding: the ANAH score (pooled share of non-hallucinated
    sentences), sentences per answer, unique correct facts per answer (``ok`` labels: the oracle
    labels a repeated fact ``unverifiable``), wrong facts per answer and fact precision
    (ok / (ok + contradictory + unverifiable): the opener left out), mean over runs."""
    per = []
    for r in runs:
        lab, n = r['labels'], r['n_responses']
        claims = lab.get('ok', 0) + lab.get('contradictory', 0) + lab.get('unverifiable', 0)
        per.append({'score': r['score'], 'sentences': r['sentences_per_response'],
                    'facts': lab.get('ok', 0) / n if n else None,
                    'wrong': (lab.get('contradictory', 0) + lab.get('unverifiable', 0)) / n
                    if n else None,
                    'fact_precision': lab.get('ok', 0) / claims if claims else None,
                    'responses': n})
    return {k: (float(np.mean([p[k] for p in per if p[k] is not None]))
                if any(p[k] is not None for p in per) else None) for k in per[0]}


def aggregate_results(per_seed: dict, arms_: dict) -> dict:
    """arm -> set -> decoding -> metric -> {mean, std (ddof 1, None for one seed), n}."""
    out = {}
    seeds = list(per_seed)
    for arm in arms_:
        out[arm] = {}
        for set_name, decs in per_seed[seeds[0]]['results'][arm].items():
            out[arm][set_name] = {}
            for dec, metrics in decs.items():
                out[arm][set_name][dec] = {}
                for k in metrics:
                    vals = [per_seed[s]['results'][arm][set_name][dec][k] for s in seeds]
                    vals = np.array([v for v in vals if v is not None], dtype=float)
                    out[arm][set_name][dec][k] = {
                        'mean': float(vals.mean()) if len(vals) else None,
                        'std': float(vals.std(ddof=1)) if len(vals) > 1 else None,
                        'n': int(len(vals))}
    return out


def select_lr(agg: dict, arms_: dict) -> dict:
    """Per method, the learning rate with the best mean sampled in-domain score (validation)."""
    best = {}
    for name, sp in arms_.items():
        if sp is None:
            continue
        method = 'dpo' if sp['mask'] == 'none' else 'maskdpo'
        score = agg[name]['in-domain']['sampled']['score']['mean']
        if score is not None and (method not in best or score > best[method]['score']):
            best[method] = {'lr': sp['lr'], 'score': score}
    return best


def _setup_line(doc: dict) -> str:
    st, p = doc['settings'], doc['settings']['pretrain']
    loss = doc['setup']['base_final_loss']
    return (f'Setup: topics {doc["setup"]["topics"]}; base model hidden {p["hidden_size"]} x '
            f'{p["num_layers"]} layers, {p["steps"]} steps of batch {p["batch_size"]} (final loss '
            f'{"n/a" if loss is None else f"{loss:.3f}"}); K = {st["k"]} samples per train '
            f'question; DPO lr {"from the config" if st["lr"] is None else st["lr"]}; '
            f'max {st["max_new_tokens"]} new tokens. From the world and pretraining values of '
            'maskdpo_xtuner/world/{world,pretrain}.py at the time of the run.')


def _cell(m: dict, scale=1.0, digits=2) -> str:
    if m['mean'] is None:
        return 'n/a'
    s = f'{m["mean"] * scale:.{digits}f}'
    return s + (f' ± {m["std"] * scale:.{digits}f}' if m['std'] is not None else '')


def results_markdown(doc: dict) -> str:
    agg, seeds = doc['aggregate'], doc['seeds']
    lines = [f'# World study: {doc["study"]} (preset {doc["preset"]})', '',
             f'Evaluated on the held-out **{doc["eval_split"]}** topics: their in-domain '
             'questions and the out-of-domain question style. '
             f'Seeds {seeds}: mean ± std over seeds (ddof 1). Score = ANAH-style share of '
             'non-hallucinated sentences, pooled; Facts/ans. = unique correct facts per answer '
             '(a repeated fact is labelled unverifiable). Greedy decoding, and sampling (top-k '
             f'{doc["settings"]["top_k"]}, temperature {doc["settings"]["temperature"]}, '
             f'{doc["settings"]["eval_samples"]} answer(s) per question per seed).', '',
             _setup_line(doc), '']
    for set_name in next(iter(agg.values())):
        lines += [f'## {set_name}', '',
                  '| Model | ' + ' | '.join(f'{v} {d}' for d in ('greedy', 'sampled')
                                             for v in METRICS.values()) + ' |',
                  '|---|' + '---|' * (2 * len(METRICS))]
        for arm, sets in agg.items():
            cells = [_cell(sets[set_name][d][k], 100 if k == 'score' else 1,
                           1 if k == 'score' else 2)
                     for d in ('greedy', 'sampled') for k in METRICS]
            lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    lines += ['## Training (DPO loss at the first and last logged step)', '',
              '| Model | Pairs | Steps | First loss | Last loss | Reward acc. (last) |',
              '|---|---|---|---|---|---|']
    per_seed = doc['per_seed']
    for arm in agg:
        rows = [per_seed[s]['training'][arm] for s in per_seed if arm in per_seed[s]['training']]
        if not rows:
            continue
        mean = (lambda k: np.mean([r[k] for r in rows if r[k] is not None])
                if any(r[k] is not None for r in rows) else float('nan'))
        lines.append(f'| {arm} | {mean("pairs"):.0f} | {mean("steps"):.0f} | '
                     f'{mean("first_loss"):.4f} | {mean("last_loss"):.4f} | '
                     f'{mean("last_reward_acc"):.2f} |')
    lines += ['', '## Pairs (per seed)', '',
              '| Seed | Questions | Pairs | ' + ' | '.join(
                  next(iter(per_seed.values()))['pairs']['dropped']) + ' | Chosen score | '
              'Rejected score |', '|---|---|---|' + '---|' * (
                  len(next(iter(per_seed.values()))['pairs']['dropped']) + 2)]
    for s, d in per_seed.items():
        p = d['pairs']
        fmt = (lambda x: 'n/a' if x is None else f'{x:.3f}')
        lines.append(f'| {s} | {p["questions"]} | {p["pairs"]} | '
                     + ' | '.join(str(v) for v in p['dropped'].values())
                     + f' | {fmt(p["mean_chosen_score"])} | {fmt(p["mean_rejected_score"])} |')
    if 'selected_lr' in doc:
        lines += ['', '## Selected learning rates (best sampled in-domain validation score)', '']
        lines += [f'- {m}: lr {v["lr"]:g} (score {v["score"] * 100:.2f})'
                  for m, v in doc['selected_lr'].items()]
    return '\n'.join(lines) + '\n'


def plot_results(doc: dict, path: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    agg = doc['aggregate']
    bars = 'error bars ± std over seeds' if len(doc['seeds']) > 1 else 'one seed: no error bars'
    names, sets = list(agg), list(next(iter(agg.values())))
    x = np.arange(len(names))
    fig, axes = plt.subplots(2, len(sets), figsize=(3 + 1.3 * len(names) * len(sets), 7),
                             squeeze=False)
    w = 0.38
    for col, set_name in enumerate(sets):
        for row, (key, label, scale) in enumerate((('score', 'score (%)', 100),
                                                   ('facts', 'correct facts / answer', 1))):
            ax = axes[row][col]
            for off, dec, color in ((-w / 2, 'greedy', 'tab:blue'),
                                    (w / 2, 'sampled', 'tab:orange')):
                ms = [agg[n][set_name][dec][key] for n in names]
                vals = [(m['mean'] or 0) * scale for m in ms]
                errs = [(m['std'] or 0) * scale for m in ms]
                drawn = ax.bar(x + off, vals, w, yerr=errs, capsize=3, color=color, label=dec)
                ax.bar_label(drawn, fmt='%.1f' if key == 'score' else '%.2f', fontsize=7,
                             label_type='center', color='white')
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=20, ha='right', fontsize=8)
            ax.set_ylabel(label)
            ax.set_title(f'{doc["eval_split"]} {set_name}: {label}', fontsize=9)
            if key == 'score':
                ax.set_ylim(0, 100)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc='upper right', fontsize=8)
    fig.suptitle(f'World study: {doc["study"]} (preset {doc["preset"]}, seeds {doc["seeds"]}; '
                 f'{bars})', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(doc: dict, out_dir: str):
    os.makedirs(out_dir, exist_ok=True)
    _write_json(os.path.join(out_dir, 'results.json'), doc)
    text = results_markdown(doc)
    with open(os.path.join(out_dir, 'results.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    plot_results(doc, os.path.join(out_dir, 'results.png'))
    print(text)


def run_study(preset_name: str = 'default', seeds=(0,), out: str = 'work_dirs/world_study',
              study: str = 'main', eval_split: str = 'test', **overrides) -> dict:
    """Run one study; ``overrides``: ``lr``, ``k``, ``pretrain_steps``, ``lrs``, ``threads``,
    ``jobs``, ``max_new_tokens``, ``eval_samples`` (None = the preset's value)."""
    settings = copy.deepcopy(preset(preset_name))
    for k, v in overrides.items():
        if v is None:
            continue
        if k == 'pretrain_steps':
            settings.pretrain = dataclasses.replace(settings.pretrain, steps=v)
        elif hasattr(settings, k):
            setattr(settings, k, v)
        else:
            raise ValueError(f'unknown setting {k!r}')
    return Study(settings, out, list(seeds), study, eval_split).run()
