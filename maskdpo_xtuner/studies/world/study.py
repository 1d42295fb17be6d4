"""The whole study in the synthetic world, one command (``tools/world_study.py``):

    world -> base model -> sample K answers per train question -> annotate (the world's oracle)
    -> build pairs -> train each arm with ``xtuner train`` -> convert to Hugging Face
    -> evaluate every model (greedy and sampled) on held-out topics and out-of-domain questions
    -> results.md, results.json, results.png (pooled over worlds: pooled.py, spread.py)

Studies (each one command, over one or several seeds, mean ± std):

* ``main``: base, vanilla DPO, Mask-DPO;
* ``ablation``: which masks (both / chosen / rejected / none) and the end-of-turn token
  (``both`` with ``model.end_tokens=mask``);
* ``scaling``: Mask-DPO on 1/3, 2/3, all train topics (3 questions each) versus all topics with
  1, 2, 3 questions each (paper Table 4);
* ``tune``: DPO and Mask-DPO over a grid of learning rates, evaluated on the *validation*
  topics (choose hyperparameters here, never on test);
* ``source``, ``nearfar``, ``bestofn``: the paper's Tables 3, 5, 6 (sources.py, neighbours.py,
  bestofn.py; their reports: tables.py); ``regime``: the main study in worlds whose documents
  state the hard attributes more often (regime.py).

Caching (``stages.py``): a stage whose inputs (settings, source files, upstream stages) are
unchanged is skipped, an interrupted one resumed where it can be. Training depends on the
*content* of the pairs file, not on how it was made (training_data.py), so a change to the
sampler or annotator code that yields the same pairs keeps the trained models.
The world and the base model are shared by all seeds and studies, and so are trained models:
the training directory is named by what defines it (masks, lr, data subset), so the
``maskdpo`` of the main study is the ``both`` of the ablation and the ``all`` of scaling.

Layout of ``--out`` (world ``W``, base-model seed ``B``; shared by every study, so a study
over several worlds reuses each world's stages)::

    world/W/world/                  world.json, questions/{train,val,test}{,_ood}.jsonl
    world/W/baseB/model/            the base model (Hugging Face folder)
    world/W/baseB/eval/<set>-<dec>/ its evaluations (greedy shared by seeds; sampled per seed)
    world/W/baseB/seed<S>/sample|annotate|pairs/
    world/W/baseB/seed<S>/train/<spec>/   xtuner work dir, hf/ (the converted policy), losses.json
    world/W/baseB/seed<S>/eval/<spec>/<set>-<dec>/   (and <split>-<set>-bestofN-seed<S>/)
    world/W/baseB/seed<S>/pairs-doc/  the source study's document-written chosen answers
    world/W/baseB/topic_groups/     the near / far study's groups of train topics
    world/W-<profile>/...           a regime world (regime.py), laid out as world/W/
    world/W/baseB/[<study>[-val]/]results.{md,json,png}   one world's results
    [<study>[-val]/]results.{md,json,png}   pooled over worlds (pooled.py)
    <study>/table3|table5|table6.{md,json,png}, regime/regime.{md,json,png}   (tables.py)
Settings and arms: ``settings.py``; tables and plots: ``results.py``.

Threads: every process uses ``threads`` torch threads (1 by default: on 2 shared cores one
thread per process was ~4x faster than two), and ``jobs`` trainings run side by side.
"""

import copy
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import List

from maskdpo_xtuner.io.jsonl import write_jsonl
from maskdpo_xtuner.pipeline import (AnnotatorSpec, BackendSpec, EvalSettings, SamplingParams,
                                     annotate, evaluate_anah, load_questions, make_pairs, sample)
from maskdpo_xtuner.train import model_path_options, run_logged, train_command, train_env
from maskdpo_xtuner.studies.world import tables
from maskdpo_xtuner.studies.world.bestofn import best_of_n
from maskdpo_xtuner.studies.world.pretrain import pretrain
from maskdpo_xtuner.studies.world.properties import answer_stats, eval_answer_files, pair_properties
from maskdpo_xtuner.studies.world.masks import write_masks
from maskdpo_xtuner.studies.world.pooled import write_pooled
from maskdpo_xtuner.studies.world.spread import write_spread
from maskdpo_xtuner.studies.world.regime import RegimeWorld, regime_key
from maskdpo_xtuner.studies.world.results import (aggregate_results, select_lr, summarize_runs,
                                                  write_results)
from maskdpo_xtuner.studies.world.settings import StudySettings, arms, preset, spec_name
from maskdpo_xtuner.studies.world.training_data import TrainingData
from maskdpo_xtuner.pipeline.stages import ROOT, Stages, code_hash, write_json
from maskdpo_xtuner.studies.world.world import World

CONFIGS = {'maskdpo': 'configs/world/world_maskdpo_cpu.py',
           'dpo': 'configs/world/world_dpo_cpu.py'}


class Study(TrainingData):
    def __init__(self, settings: StudySettings, out: str, seeds: List[int], study: str = 'main',
                 eval_split: str = 'test'):
        """One world (``settings.world.seed``) and base model (``settings.pretrain.seed``)."""
        self.s, self.seeds, self.study = settings, seeds, study
        self.top = os.path.abspath(out)
        regime = f'-{settings.regime}' if settings.regime else ''  # its own world (regime.py)
        self.world_root = os.path.join(self.top, 'world', f'{settings.world.seed}{regime}')
        self.out = os.path.join(self.world_root, f'base{settings.pretrain.seed}')
        self.eval_split = 'val' if study == 'tune' else eval_split
        self.stages = Stages()
        self.arms = arms(study, settings)
        self.data_files = {}  # (seed, source) -> (pairs file, annotated file), sources.py

    # --------------------------------------------------------------- shared: world, base
    def build_world(self) -> str:
        d = os.path.join(self.world_root, 'world')

        def make():
            world = World.generate(self.s.world)
            world.save(os.path.join(d, 'world.json'))
            for split in ('train', 'val', 'test'):
                for ood in (False, True):
                    qs = [q for t in world.split(split) for q in world.questions(t, ood)]
                    write_jsonl(self._questions(split, ood), qs)
            print(f'  topics per split: '
                  f'{ {s: len(world.split(s)) for s in ("sft", "train", "val", "test")} }')
        inputs = {'config': asdict(self.s.world), 'code': code_hash('world')}
        if self.s.regime:  # only then: the default world's key stays what it was
            inputs.update(regime_key(self.s.regime))
        self.world_key = self.stages.run('world', d, inputs, make)
        self.world = World.load(os.path.join(d, 'world.json'))
        if self.s.regime:
            self.world = RegimeWorld(self.world, self.s.regime)
        return self.world_key

    def _questions(self, split, ood=False):
        return os.path.join(self.world_root, 'world', 'questions',
                            f'{split}{"_ood" if ood else ""}.jsonl')

    def build_base(self) -> str:
        d = os.path.join(self.out, 'model')
        self.base_dir = d
        self.base_key = self.stages.run(
            'base model', d, {'world': self.world_key, 'config': asdict(self.s.pretrain),
                              'code': code_hash('base')},
            lambda: pretrain(self.world, d, self.s.pretrain))
        return self.base_key

    # --------------------------------------------------------------- per seed: data
    def seed_dir(self, seed, *parts):
        return os.path.join(self.out, f'seed{seed}', *parts)

    def annotated(self, seed):
        """The base model's labelled samples of the train questions (seed ``seed``)."""
        return self.seed_dir(seed, 'annotate', 'annotated.jsonl')

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
            lambda: sample(load_questions(self._questions('train')), samples,
                           BackendSpec('transformers', self.base_dir, batch_size=s.batch_size),
                           SamplingParams(max_new_tokens=s.max_new_tokens,
                                          temperature=s.temperature, top_k=s.top_k, seed=seed),
                           n=s.k, model_name=self.base_dir, batch_size=s.batch_size),
            resumable=True)
        key = self.stages.run(
            f'seed {seed}: annotate with the world oracle', ann_dir,
            {'sample': key, 'code': code_hash('annotate')},
            lambda: annotate(samples, annotated, AnnotatorSpec('world')),
            resumable=True)
        self.stages.run(
            f'seed {seed}: build pairs', pairs_dir,
            {'annotate': key, 'seed': seed, 'code': code_hash('pairs')},
            lambda: make_pairs([annotated], pairs, seed=seed))
        return self.pairs_key(pairs)

    def train_key(self, sp: dict, seed: int, data_key: str) -> tuple:
        d = self.seed_dir(seed, 'train', spec_name(sp))
        return d, {'pairs': data_key, 'base': self.base_key, 'spec': sp, 'seed': seed,
                   'batch_size': self.s.train_batch_size, 'code': code_hash('train')}

    def train(self, sp: dict, seed: int, data_key: str) -> str:
        """Train spec ``sp`` (``data_key``: :meth:`training_data`, which prepares its data)."""
        d, inputs = self.train_key(sp, seed, data_key)
        return self.stages.run(f'seed {seed}: train {spec_name(sp)}', d, inputs,
                               lambda: self._train(sp, seed, d))

    def _train(self, sp, seed, d):
        pairs = self.subset_pairs(sp, seed)
        if not pairs:
            raise RuntimeError(f'{spec_name(sp)}: no training pairs (seed {seed})')
        data = os.path.join(d, 'pairs.jsonl')
        write_jsonl(data, pairs)
        config = os.path.join(ROOT, CONFIGS['dpo' if sp['mask'] == 'none' else 'maskdpo'])
        paths = model_path_options(config, self.base_dir)
        opts = {'train_dataloader.dataset.data_files': data, 'randomness.seed': seed,
                'model.mask_mode': sp['mask'], 'model.end_tokens': sp['end']}
        if sp['lr'] is not None:
            opts['optim_wrapper.optimizer.lr'] = sp['lr']
        if self.s.train_batch_size:
            opts['train_dataloader.batch_size'] = self.s.train_batch_size
        if -(-len(pairs) // (self.s.train_batch_size or 16)) < 4:  # warm-up: 0.3 epoch >= 1 step
            raise RuntimeError(f'{spec_name(sp)}: only {len(pairs)} training pairs (seed '
                               f'{seed}): too few for the schedule; sample more (--k) or train '
                               'the base model longer (--pretrain-steps)')
        tag = f'seed{seed}/{spec_name(sp)}'
        work = os.path.join(d, 'xtuner')
        self._run(train_command(config, work, self.base_dir, opts),
                  os.path.join(d, 'train.log'), tag,
                  expect=os.path.join(work, 'last_checkpoint'))
        with open(os.path.join(work, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        self._run([sys.executable, '-m', 'xtuner.tools.model_converters.pth_to_hf', config, ckpt,
                   os.path.join(d, 'hf'), '--fp32', '--cfg-options',
                   *(f'{k}={v}' for k, v in paths.items())],
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
        write_json(os.path.join(d, 'losses.json'), {'pairs': len(pairs), 'log': log})

    def _run(self, cmd, log_path, tag, expect):
        """A subprocess whose output goes to ``log_path`` (its progress lines are echoed) and
        which must exit 0 and leave the file ``expect``."""
        env = dict(train_env(), PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
                   OMP_NUM_THREADS=str(self.s.threads), TOKENIZERS_PARALLELISM='false')
        run_logged(cmd, log_path, env, f'[{tag}] ', expect, cwd=ROOT)

    # --------------------------------------------------------------- evaluation
    def eval_sets(self):
        return {'in-domain': self._questions(self.eval_split),
                'ood': self._questions(self.eval_split, ood=True)}

    def eval_dir(self, out_base, set_name, dec, seed):
        set_tag = f'{self.eval_split}-{set_name}'
        return os.path.join(out_base, f'{set_tag}-greedy' if dec == 'greedy'
                            else f'{set_tag}-sample{seed}')

    def answers(self, out_base, seed) -> dict:
        """{set: {decoding: answer_stats}} of one evaluated model (properties.py)."""
        return {set_name: {dec: answer_stats(eval_answer_files(
                    self.eval_dir(out_base, set_name, dec, seed))) for dec in ('greedy', 'sampled')}
                for set_name in self.eval_sets()}

    def evaluate(self, model_dir: str, model_key: str, out_base: str, seed: int,
                 tag: str) -> dict:
        """{set: {'greedy': metrics, 'sampled': metrics}} of one model."""
        s, out = self.s, {}
        for set_name, questions in self.eval_sets().items():
            set_tag = f'{self.eval_split}-{set_name}'
            out[set_name] = {}
            for dec in ('greedy', 'sampled'):
                d = self.eval_dir(out_base, set_name, dec, seed)
                sub = os.path.basename(d)
                es = EvalSettings(questions=questions, out_dir=d, max_new_tokens=s.max_new_tokens,
                                  batch_size=s.batch_size, n_boot=200, temperature=s.temperature,
                                  top_k=s.top_k, seeds=None if dec == 'greedy' else
                                  [seed * 1000 + j for j in range(s.eval_samples)])
                policy = BackendSpec('transformers', model_dir, batch_size=s.batch_size)
                self.stages.run(f'{tag}: evaluate {sub}', d,
                                {'model': model_key, 'world': self.world_key, 'set': set_tag,
                                 'settings': {k: v for k, v in asdict(es).items()
                                              if k not in ('questions', 'out_dir')},
                                 'code': code_hash('eval')},
                                lambda es=es, policy=policy: evaluate_anah(
                                    es, policy, model_dir, AnnotatorSpec('world')),
                                resumable=True)
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
            data = {n: self.training_data(sp, seed, pairs_key) for n, sp in unique.items()}
            with ThreadPoolExecutor(max(1, self.s.jobs)) as pool:
                keys = dict(zip(unique, pool.map(lambda n: self.train(unique[n], seed, data[n]),
                                                 unique)))
            results, training, answers, best = {}, {}, {}, {}
            for name, sp in self.arms.items():
                sname = 'base' if sp is None else spec_name(sp)
                d = self.seed_dir(seed, 'train', sname)
                model, key, ev = ((self.base_dir, self.base_key, os.path.join(self.out, 'eval'))
                                  if sp is None else (os.path.join(d, 'hf'), keys[sname],
                                                      self.seed_dir(seed, 'eval', sname)))
                results[name] = self.evaluate(model, key, ev, seed, f'seed {seed}: {sname}')
                answers[name] = self.answers(ev, seed)
                if self.study == 'bestofn':
                    best[name] = best_of_n(self, model, key, ev, seed, f'seed {seed}: {sname}')
                if sp is None:
                    continue
                with open(os.path.join(d, 'losses.json')) as f:
                    losses = json.load(f)
                log = losses['log']
                training[name] = {'spec': sp, 'dir': d, 'pairs': losses['pairs'],
                                  'steps': log[-1]['iter'] if log else 0,
                                  'first_loss': log[0]['loss'] if log else None,
                                  'last_loss': log[-1]['loss'] if log else None,
                                  'last_reward_acc': log[-1].get('reward_acc') if log else None}
                if sp.get('source') or sp.get('group'):  # what this arm's own pairs are like
                    training[name]['properties'] = pair_properties(
                        os.path.join(d, 'pairs.jsonl'), self.data_files.get(
                            (seed, sp.get('source')), [None, self.annotated(seed)])[1])
            per_seed[seed] = {'results': results, 'pairs': pairs_summary, 'training': training,
                              'answers': answers, 'properties': pair_properties(
                                  self.pairs_file, self.annotated(seed))}
            if best:
                per_seed[seed]['best_of_n'] = best
        with open(os.path.join(self.base_dir, 'pretrain.json')) as f:
            base = json.load(f)
        setup = {'topics': {s: len(self.world.split(s)) for s in ('sft', 'train', 'val', 'test')},
                 'base_final_loss': base.get('final_loss')}
        doc = {'study': self.study, 'preset': self.s.preset, 'seeds': self.seeds,
               'world': self.s.world.seed, 'base_seed': self.s.pretrain.seed, 'dir': self.out,
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
        """This world's results: its folder, or <study>[-val]/ in it (as the pooled ones)."""
        return pooled_dir(self.out, self.study, self.eval_split)


def run_study(preset_name: str = 'default', seeds=(0,), out: str = 'work_dirs/world_study',
              study: str = 'main', eval_split: str = 'test', worlds=(0,), base_seeds=None,
              regimes=None, **overrides) -> dict:
    """Run one study over worlds x training seeds and pool it (pooled.py). ``worlds``: world
    seeds; ``base_seeds``: the base model's seed per world (default: the world's own seed);
    ``overrides``: ``lr``, ``k``, ``pretrain_steps``, ``lrs``, ``threads``, ``jobs``,
    ``max_new_tokens``, ``eval_samples`` (None = the preset's value). The ``masks`` study runs
    the main study on validation and test topics, picks the world property that best explains the
    Mask-DPO minus DPO gap on validation, and reports the test gap against it. The ``regime``
    study runs the main study in the default world and in the worlds of ``regimes`` (profiles of
    regime.py; default: all); ``source``, ``nearfar`` and ``bestofn`` also write the paper's
    table beside the world's (tables.py)."""
    settings = copy.deepcopy(preset(preset_name))
    for k, v in ((k, v) for k, v in overrides.items() if v is not None):  # None: the preset's
        if k == 'pretrain_steps':
            settings.pretrain = dataclasses.replace(settings.pretrain, steps=v)
        elif hasattr(settings, k):
            setattr(settings, k, v)
        else:
            raise ValueError(f'unknown setting {k!r}')
    worlds = list(worlds)
    base_seeds = list(worlds if base_seeds is None else base_seeds)
    if len(base_seeds) != len(worlds) or len(set(zip(worlds, base_seeds))) != len(worlds):
        raise ValueError(f'--base-seeds {base_seeds}: give one base seed per world {worlds}, '
                         'and no (world, base seed) twice')

    def over_worlds(study_name, split, regime=settings.regime):
        docs = []
        for w, b in zip(worlds, base_seeds):
            s = copy.deepcopy(settings)
            s.regime = regime
            s.world = dataclasses.replace(s.world, seed=w)
            s.pretrain = dataclasses.replace(s.pretrain, seed=b)
            docs.append(Study(s, out, list(seeds), study_name, split).run())
        return docs
    if study == 'masks':
        return write_masks(over_worlds('main', 'val'), over_worlds('main', 'test'),
                           os.path.join(os.path.abspath(out), 'masks'))
    if study == 'regime':
        profiles = [None] + list(regimes or tables.PROFILES)
        return tables.write_regime({p or 'default': over_worlds('main', eval_split, p)
                                    for p in profiles},
                                   pooled_dir(os.path.abspath(out), study, eval_split))
    docs = over_worlds(study, eval_split)
    where = pooled_dir(os.path.abspath(out), docs[0]['study'], docs[0]['eval_split'])
    pooled = write_pooled(docs, where)
    if study in tables.WRITERS:
        pooled['table'] = tables.WRITERS[study](docs, where)
    if len(docs) >= 3 and 'maskdpo' in pooled['paired']:
        pooled['spread'] = write_spread(pooled, where)  # why the gap differs between worlds
    return pooled


def pooled_dir(out: str, study: str, eval_split: str) -> str:
    """--out for the main study on test topics, else --out/<study>[-val] (as per world)."""
    if study == 'main' and eval_split == 'test':
        return out
    return os.path.join(out, study + ('-val' if eval_split == 'val' and study != 'tune' else ''))
