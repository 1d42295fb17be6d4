"""The real run, one command (``tools/real_run.py``): a real model, a real engine, real facts.

    SmolLM2-135M-Instruct (real_model.py) served by vLLM on the CPU (serve.py)
    -> sample K answers per train country (top-k 40, T 0.8) through the OpenAI backend
    -> label every sentence exactly from GeoNames data (countries.py: CountryJudge)
       and, on a subset, with the ANAH-v2 protocol, the same small model as judge
    -> build pairs -> train with the paper's 8B Mask-DPO config on a CPU
       (configs/maskdpo/smollm2_cpu_maskdpo.py, ``python -m xtuner.tools.train``) -> convert
    -> serve the trained model with vLLM; evaluate it and the base on held-out countries
       (greedy and sampled), labelled by the exact judge
    -> results.md / results.json: each stage's wall time and counts, the scores

Stages are cached like the world study's (world/stages.py): a stage whose inputs are unchanged
is skipped, an interrupted sampling or evaluation resumes. A server is started only when a
stage needs it, on a fixed port per model (the port is part of what the manifests record).
"""
import dataclasses
import os
import sys
from dataclasses import dataclass, asdict
from typing import Optional

from maskdpo_xtuner.studies.real import countries
from maskdpo_xtuner.io.jsonl import read_jsonl, write_jsonl
from maskdpo_xtuner.io.manifest import file_hash, folder_fingerprint
from maskdpo_xtuner.pipeline import (AnnotatorSpec, BackendSpec, EvalSettings, SamplingParams,
                                     annotate, evaluate_anah, make_pairs, sample)
from maskdpo_xtuner.train import (model_path_options, run_logged, train_command, train_env,
                                  validate_training_data)
from maskdpo_xtuner.studies.real.report import build_report, write_report
from maskdpo_xtuner.pipeline.stages import ROOT, Stages, code_hash

CONFIG = 'configs/maskdpo/smollm2_cpu_maskdpo.py'
# what training runs: the config, the configs it inherits, the model and dataset code
TRAIN_CODE = [CONFIG, 'configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py', 'configs/_base_',
              'maskdpo_xtuner/model', 'maskdpo_xtuner/dataset']
CODE = ['maskdpo_xtuner/studies/real/countries.py', 'maskdpo_xtuner/pipeline', 'maskdpo_xtuner/generation',
        'maskdpo_xtuner/annotate/split.py']


@dataclass(frozen=True)
class RealRunSettings:
    train_questions: int = 80      # train countries (80: all of the split)
    test_questions: int = 57       # held-out countries (57: all of the split)
    k: int = 6                     # answers sampled per train country
    temperature: float = 0.8
    top_k: int = 40
    max_new_tokens: int = 160
    anah_questions: int = 2        # train countries whose answers the ANAH-v2 judge also labels
    eval_seeds: tuple = (0,)       # sampled evaluation runs (besides greedy)
    seed: int = 0
    concurrency: int = 64          # requests in flight to vLLM
    cpus: Optional[str] = None     # cores vLLM binds to (None: its default)
    threads: int = 1               # torch threads of the training process (1: fastest on
    #                                2 shared cores; more threads than free cores spin-wait)
    base_port: int = 8761          # base model's server; the trained model's is base_port + 1


class _Engine:
    """A vLLM server for one model, started at the first :meth:`spec` and stopped by
    :meth:`stop`; its start time is kept for the report."""

    def __init__(self, model_dir: str, name: str, port: int, log: str, s: RealRunSettings):
        self.model_dir, self.name, self.port, self.log, self.s = model_dir, name, port, log, s
        self.server, self.start_seconds = None, None

    def spec(self) -> BackendSpec:
        from maskdpo_xtuner.generation.serve import Server, vllm_command, vllm_env
        if self.server is None:
            cmd = vllm_command(self.model_dir, self.port, served_name=self.name,
                               log_requests=False)
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
        self.servers = []

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def engine(self, model_dir, name, port) -> _Engine:
        e = _Engine(model_dir, name, port, self.path('logs', f'vllm-{name}.log'), self.s)
        self.servers.append(e)
        return e

    # ------------------------------------------------------------------ stages
    def run(self) -> dict:
        s = self.s
        qdir = self.path('questions')
        self.stages.run('questions', qdir, {'settings': [s.train_questions, s.test_questions],
                                            'code': code_hash(['maskdpo_xtuner/studies/real/countries.py'])},
                        lambda: [write_jsonl(os.path.join(qdir, f'{split}.jsonl'),
                                             countries.questions(split, limit=n))
                                 for split, n in (('train', s.train_questions),
                                                  ('test', s.test_questions))])
        train_q = read_jsonl(os.path.join(qdir, 'train.jsonl'))
        base = self.engine(self.base_dir, 'smollm2-base', s.base_port)
        try:
            samples = self.path('sample', 'responses.jsonl')
            params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                                    top_k=s.top_k, seed=s.seed)
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
                                                                'seed': s.seed},
                            lambda: make_pairs([exact], self.path('pairs', 'pairs.jsonl'),
                                               seed=s.seed))
            self.evaluate('base', base)
        finally:
            base.stop()
        hf = self.path('train', 'hf')
        self.stages.run('train Mask-DPO (xtuner) and convert', self.path('train'),
                        {'pairs': file_hash(self.path('pairs', 'pairs.jsonl')),
                         'base': folder_fingerprint(self.base_dir), 'seed': s.seed,
                         'code': code_hash(TRAIN_CODE)},
                        self._train)
        trained = self.engine(hf, 'smollm2-maskdpo', s.base_port + 1)
        try:
            self.evaluate('maskdpo', trained)
        finally:
            trained.stop()
        return self.report()

    def _anah(self, samples, engine):
        recs = read_jsonl(samples)[:self.s.anah_questions]
        sub = self.path('anah', 'responses.jsonl')
        write_jsonl(sub, recs)
        annotate(sub, self.path('anah', 'annotated.jsonl'), AnnotatorSpec('anah'),
                 judge=engine.spec(), save_trace=True)  # the judge's raw answers, to read

    def _train(self):
        work, log = self.path('train', 'xtuner'), self.path('train', 'train.log')
        config = self.config
        opts = {'train_dataloader.dataset.data_files': self.path('pairs', 'pairs.jsonl'),
                'randomness.seed': self.s.seed}
        try:  # before the trainer loads the model: enough pairs for the schedule?
            validate_training_data(config, opts)
        except ValueError as e:
            raise RuntimeError(f'{e}; ask about more countries (--train-questions) or sample '
                               'more (--k)') from None
        env = dict(train_env(), PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
                   TOKENIZERS_PARALLELISM='false', OMP_NUM_THREADS=str(self.s.threads))
        run_logged(train_command(config, work, self.base_dir, opts), log, env,
                   expect=os.path.join(work, 'last_checkpoint'), cwd=ROOT)
        with open(os.path.join(work, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        paths = model_path_options(config, self.base_dir)
        run_logged([sys.executable, '-m', 'xtuner.tools.model_converters.pth_to_hf', config,
                    ckpt, self.path('train', 'hf'), '--cfg-options',
                    *(f'{k}={v}' for k, v in paths.items())],
                   self.path('train', 'convert.log'), env,
                   expect=self.path('train', 'hf', 'config.json'), cwd=ROOT)
        for name in os.listdir(work):  # the converted folder is what is kept
            if name.endswith('.pth'):
                os.remove(os.path.join(work, name))

    def evaluate(self, name: str, engine: _Engine):
        s = self.s
        test = self.path('questions', 'test.jsonl')
        for tag, seeds in (('greedy', None), ('sampled', list(s.eval_seeds))):
            d = self.path('eval', name, tag)
            settings = EvalSettings(questions=test, out_dir=d, seeds=seeds,
                                    temperature=s.temperature, top_k=s.top_k,
                                    max_new_tokens=s.max_new_tokens, batch_size=s.concurrency,
                                    progress=True)
            model = self.base_dir if name == 'base' else self.path('train', 'hf')
            self.stages.run(f'evaluate {name}, {tag}', d,
                            {'model': folder_fingerprint(model), 'settings': [tag, seeds,
                             s.max_new_tokens], 'code': self.code},
                            lambda settings=settings: evaluate_anah(
                                settings, engine.spec(), name, AnnotatorSpec('countries')),
                            resumable=True)

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        doc = build_report(self)
        write_report(doc, self.out)
        return doc


def settings_from(**overrides) -> RealRunSettings:
    fields = {f.name for f in dataclasses.fields(RealRunSettings)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f'unknown settings {sorted(unknown)}')
    return RealRunSettings(**{k: v for k, v in overrides.items() if v is not None})

