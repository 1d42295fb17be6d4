"""The real study, one command (``tools/real_run.py``): a real model, a real engine, real facts.

    SmolLM2-135M-Instruct (offline/smollm2.py) served by vLLM on the CPU (generation/serve.py)
    -> sample K answers per train country (top-k 40, T 0.8) through the OpenAI backend
    -> label every sentence exactly from GeoNames data (countries.py) and, on a subset, with
       the ANAH-v2 protocol, the same small model as judge
    -> build pairs -> the reference model's log-probs, once for every arm and seed
    -> train every arm (DPO, Mask-DPO; the one-sided ablations on request) x every training
       seed with the paper's 8B config on a CPU (configs/maskdpo/smollm2_cpu_maskdpo.py,
       ``python -m xtuner.tools.train``), same pairs, only the mask differs -> convert
    -> serve each model with vLLM; evaluate it and the base on every evaluation set (held-out
       countries in several question forms; out of domain where a judge is registered),
       greedy and sampled, labelled by the exact judges
    -> results.md / results.json (report.py): scores, paired differences with intervals,
       behaviour (claims, length, repetition), each stage's wall time against the estimate

Stages are cached (pipeline/stages.py): a stage whose inputs are unchanged is skipped, an
interrupted sampling or evaluation resumes; one vLLM server at a time, started when a stage
needs it and stopped after.
"""
import os
import sys
import time
from dataclasses import asdict
from typing import List

from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.io.manifest import file_hash, folder_fingerprint
from maskdpo_xtuner.pipeline import (AnnotatorSpec, BackendSpec, EvalSettings, SamplingParams,
                                     annotate, evaluate_anah, make_pairs, sample)
from maskdpo_xtuner.pipeline.stages import ROOT, Stages, code_hash, hash_inputs
from maskdpo_xtuner.studies.real import countries
from maskdpo_xtuner.studies.real.report import build_report, estimate, write_report
from maskdpo_xtuner.studies.real.settings import ARMS, RealRunSettings, eval_sets, model_names
from maskdpo_xtuner.train import (model_path_options, run_logged, train_command, train_env,
                                  validate_training_data)

CONFIG = 'configs/maskdpo/smollm2_cpu_maskdpo.py'
# what training runs: the config, the configs it inherits, the model and dataset code
TRAIN_CODE = [CONFIG, 'configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py', 'configs/_base_',
              'maskdpo_xtuner/model', 'maskdpo_xtuner/dataset']
PAIRS_PER_STEP = 8  # the config's pairs per optimizer step (batch x accumulation)
# what samples, labels and evaluates (the judges included); not report.py or audit.py, which
# only read the stages' outputs, nor settings.py, whose values reach every stage's key as values
# (a new preset re-runs nothing)
CODE = ['maskdpo_xtuner/studies/real/' + f for f in
        ('run.py', 'geodata.py', 'reading.py', 'claims.py', 'country_claims.py', 'countries.py',
         'cities.py')] + \
    ['maskdpo_xtuner/pipeline', 'maskdpo_xtuner/generation', 'maskdpo_xtuner/annotate']


class _Engine:
    """A vLLM server for one model, started at the first :meth:`spec` and stopped by
    :meth:`stop`; its start time is kept for the report."""

    def __init__(self, model_dir: str, name: str, port: int, log: str, s: RealRunSettings):
        self.model_dir, self.name, self.port, self.log, self.s = model_dir, name, port, log, s
        self.server, self.start_seconds = None, None

    def spec(self) -> BackendSpec:
        from maskdpo_xtuner.generation.serve import Server, vllm_command, vllm_env
        if self.server is None:
            # 4096: the base model is also the ANAH-v2 judge, whose three-turn conversation
            # (up to 512 new tokens a turn) outgrew 1024 tokens on the second country
            cmd = vllm_command(self.model_dir, self.port, served_name=self.name,
                               log_requests=False, max_model_len=4096)
            self.server = Server(cmd, self.port, self.log, env=vllm_env(cpus=self.s.cpus))
            print(f'[serve {self.name}] starting vLLM on port {self.port} (log {self.log})',
                  flush=True)
            self.start_seconds = self.server.start().wait_ready()
            print(f'[serve {self.name}] ready in {self.start_seconds:.0f} s', flush=True)
        return BackendSpec('openai', model=self.name, endpoints=[self.server.url],
                           concurrency=self.s.concurrency)

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None


class RealRun:
    def __init__(self, s: RealRunSettings, out: str, model_dir: str):
        if not os.path.isfile(os.path.join(model_dir, 'config.json')):
            raise ValueError(f'{model_dir}: not a model folder (no config.json); build one with '
                             'tools/build_smollm2.py or give --model')
        self.s, self.out, self.base_dir = s, os.path.abspath(out), os.path.abspath(model_dir)
        self.config = os.path.join(ROOT, CONFIG)
        self.stages = Stages()
        self.code = code_hash(CODE)
        self.servers: List[_Engine] = []
        self.started = time.time()

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def model_dir(self, name: str) -> str:
        return self.base_dir if name == 'base' else self.path('train', name, 'hf')

    def engine(self, name: str) -> _Engine:
        port = self.s.base_port + (0 if name == 'base' else 1)
        e = _Engine(self.model_dir(name), f'smollm2-{name}', port,
                    self.path('logs', f'vllm-{name}.log'), self.s)
        self.servers.append(e)
        return e

    # ------------------------------------------------------------------ stages
    def run(self) -> dict:
        s = self.s
        est = estimate(s)
        print(f'[real study] {len(model_names(s)) - 1} trainings, {len(model_names(s))} models '
              f'evaluated on {", ".join(est["sets"])}; estimated {est["total"] / 60:.0f} min on '
              f'this machine ({est["basis"]})', flush=True)
        self._questions()
        base = self.engine('base')
        try:
            self._data(base)
            self.evaluate('base', base)
        finally:
            base.stop()
        self._reference()
        for name in model_names(s)[1:]:
            arm, seed = name.rsplit('-s', 1)
            self.stages.run(f'train {name} (xtuner) and convert', self.path('train', name),
                            {'pairs': file_hash(self.path('pairs', 'pairs.jsonl')),
                             'base': folder_fingerprint(self.base_dir), 'seed': int(seed),
                             'mask_mode': ARMS[arm], 'batch_size': s.batch_size,
                             'threads': s.threads, 'code': code_hash(TRAIN_CODE)},
                            lambda arm=arm, seed=int(seed), name=name: self._train(arm, seed,
                                                                                   name))
            trained = self.engine(name)
            try:
                self.evaluate(name, trained)
            finally:
                trained.stop()
        return self.report()

    def _questions(self):
        s, qdir = self.s, self.path('questions')
        sets = eval_sets(s)

        def write():
            write_jsonl(os.path.join(qdir, 'train.jsonl'),
                        countries.questions('train', limit=s.train_questions))
            for name, (_, recs) in sets.items():
                write_jsonl(os.path.join(qdir, f'{name}.jsonl'), recs)
        # keyed by the records themselves: their texts come from settings.QUESTION_FORMS,
        # which is not in the code key
        self.stages.run('questions', qdir,
                        {'train': hash_inputs(countries.questions('train',
                                                                  limit=s.train_questions)),
                         'sets': {k: hash_inputs(v[1]) for k, v in sets.items()},
                         'code': self.code}, write)

    def _data(self, base: _Engine):
        s = self.s
        train_q = read_jsonl(self.path('questions', 'train.jsonl'))
        samples = self.path('sample', 'responses.jsonl')
        params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                top_k=s.top_k, seed=s.sample_seed)
        key = self.stages.run(
            f'sample {s.k} answers per train country', self.path('sample'),
            {'questions': train_q, 'params': asdict(params), 'k': s.k, 'code': self.code},
            lambda: sample(train_q, samples, base.spec(), params, n=s.k,
                           model_name='smollm2-base', batch_size=s.concurrency),
            resumable=True)
        exact = self.path('annotate', 'annotated.jsonl')
        key = self.stages.run('label sentences: exact judge', self.path('annotate'),
                              {'sample': key, 'code': self.code},
                              lambda: annotate(samples, exact, AnnotatorSpec('countries')),
                              resumable=True)
        self.stages.run(f'label sentences: ANAH-v2, SmolLM2 judge ({s.anah_questions} '
                        'countries)', self.path('anah'), {'sample': key, 'code': self.code,
                                                          'n': s.anah_questions},
                        lambda: self._anah(samples, base), resumable=True)
        self.stages.run('build pairs', self.path('pairs'), {'annotate': key,
                                                            'seed': s.sample_seed},
                        lambda: make_pairs([exact], self.path('pairs', 'pairs.jsonl'),
                                           seed=s.sample_seed))

    def _anah(self, samples, engine):
        recs = read_jsonl(samples)[:self.s.anah_questions]
        sub = self.path('anah', 'responses.jsonl')
        write_jsonl(sub, recs)
        annotate(sub, self.path('anah', 'annotated.jsonl'), AnnotatorSpec('anah', constrain=True),
                 judge=engine.spec(), save_trace=True)  # verdicts constrained: all parse

    def _options(self) -> dict:
        """--cfg-options every training and the reference pass share: the pairs, the reference
        cache, the batch split, the base model in every path key."""
        cache = self.path('reference', 'ref_logps.pt')
        s = self.s
        return {**model_path_options(self.config, self.base_dir),
                'train_dataloader.dataset.data_files': self.path('pairs', 'pairs.jsonl'),
                'model.ref_logps_cache': cache,
                'train_dataloader.dataset.ref_logps_cache': cache,
                'train_dataloader.batch_size': s.batch_size,
                'optim_wrapper.accumulative_counts': PAIRS_PER_STEP // s.batch_size}

    def _reference(self):
        """The reference model's log-probs of the pairs, once for every arm and seed."""
        pairs = self.path('pairs', 'pairs.jsonl')
        try:  # before any model loads: enough valid pairs for the config's schedule?
            validate_training_data(self.config, self._options())
        except ValueError as e:
            raise RuntimeError(f'{e}; ask about more countries (--train-questions) or sample '
                               'more (--n)') from None

        def compute():
            import torch
            from mmengine.config import Config

            from maskdpo_xtuner.model.reference import precompute_from_config
            cfg = Config.fromfile(self.config)
            cfg.merge_from_dict(self._options())
            threads = torch.get_num_threads()
            torch.set_num_threads(max(1, self.s.threads))
            try:
                precompute_from_config(cfg, batch_size=8)
            finally:
                torch.set_num_threads(threads)
        self.stages.run('reference log-probs (once for every arm and seed)',
                        self.path('reference'),
                        {'pairs': file_hash(pairs), 'base': folder_fingerprint(self.base_dir),
                         'code': code_hash(TRAIN_CODE)}, compute)

    def _train(self, arm: str, seed: int, name: str):
        d = self.path('train', name)
        work, log = os.path.join(d, 'xtuner'), os.path.join(d, 'train.log')
        opts = {**self._options(), 'randomness.seed': seed, 'model.mask_mode': ARMS[arm]}
        env = dict(train_env(), PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
                   TOKENIZERS_PARALLELISM='false', OMP_NUM_THREADS=str(self.s.threads))
        run_logged(train_command(self.config, work, None, opts), log, env, tag=f'[{name}] ',
                   expect=os.path.join(work, 'last_checkpoint'), cwd=ROOT)
        with open(os.path.join(work, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        paths = model_path_options(self.config, self.base_dir)
        run_logged([sys.executable, '-m', 'xtuner.tools.model_converters.pth_to_hf',
                    self.config, ckpt, os.path.join(d, 'hf'), '--safe-serialization',
                    '--cfg-options', *(f'{k}={v}' for k, v in paths.items())],
                   os.path.join(d, 'convert.log'), env,
                   expect=os.path.join(d, 'hf', 'config.json'), cwd=ROOT)
        for f in os.listdir(work):  # the converted folder is what is kept
            if f.endswith('.pth'):
                os.remove(os.path.join(work, f))

    def evaluate(self, name: str, engine: _Engine):
        s = self.s
        for set_name, (annotator, _) in eval_sets(s).items():
            questions = self.path('questions', f'{set_name}.jsonl')
            for tag, seeds in (('greedy', None), ('sampled', list(s.eval_seeds))):
                if tag == 'sampled' and not seeds:
                    continue  # --eval-seeds with no seed: greedy only
                d = self.path('eval', name, set_name, tag)
                settings = EvalSettings(questions=questions, out_dir=d, seeds=seeds,
                                        temperature=s.temperature, top_k=s.top_k,
                                        max_new_tokens=s.max_new_tokens,
                                        batch_size=s.concurrency, progress=True)
                self.stages.run(f'evaluate {name}, {set_name}, {tag}', d,
                                {'model': folder_fingerprint(self.model_dir(name)),
                                 'questions': file_hash(questions), 'annotator': annotator,
                                 'settings': [tag, seeds, s.max_new_tokens, s.temperature,
                                              s.top_k], 'code': self.code},
                                lambda settings=settings: evaluate_anah(
                                    settings, engine.spec(), name, AnnotatorSpec(annotator)),
                                resumable=True)

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        doc = build_report(self)
        write_report(doc, self.out)
        return doc
