"""The real run, one command: SmolLM2-135M-Instruct served by vLLM, real countries, Mask-DPO.

    python tools/real_run.py                          # ~1 h on 2 CPU cores (docs/smollm2.md)
    python tools/real_run.py --train-questions 8 --test-questions 8 --k 4   # a quick look

Builds (or reuses) the model folder and the vLLM environment, then runs every stage of
maskdpo_xtuner/studies/real/run.py into --out; a rerun skips what is done and resumes what was cut.
"""
import argparse
import os
import signal
import sys

from maskdpo_xtuner.generation import serve
from maskdpo_xtuner.offline import smollm2
from maskdpo_xtuner.studies.real.run import RealRun, RealRunSettings, settings_from
from maskdpo_xtuner.io.cli import tool_main

SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'setup_vllm.sh')


@tool_main
def main(argv=None) -> dict:
    d = RealRunSettings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='work_dirs/real_run')
    p.add_argument('--model', help='base model folder (default: tools/build_smollm2.py\'s)')
    p.add_argument('--train-questions', type=int, help=f'train countries (default '
                   f'{d.train_questions})')
    p.add_argument('--test-questions', type=int, help=f'held-out countries ({d.test_questions})')
    p.add_argument('--k', type=int, help=f'answers per train country ({d.k})')
    p.add_argument('--max-new-tokens', type=int, help=f'({d.max_new_tokens})')
    p.add_argument('--anah-questions', type=int,
                   help=f'countries also labelled by the ANAH-v2 judge ({d.anah_questions})')
    p.add_argument('--seed', type=int, help=f'({d.seed})')
    p.add_argument('--cpus', help="cores vLLM binds to, e.g. '0-1' (default: vLLM's)")
    p.add_argument('--threads', type=int, help=f'torch threads for training ({d.threads})')
    p.add_argument('--base-port', type=int, help=f'({d.base_port}; the trained model: +1)')
    args = p.parse_args(argv)
    s = settings_from(**{k: v for k, v in vars(args).items() if k not in ('out', 'model')})
    os.environ['MASKDPO_VLLM_PYTHON'] = serve.vllm_python(SETUP, build=True)  # built once
    model = args.model or str(smollm2.build())
    # SIGTERM (kill, a scheduler's stop) unwinds like Ctrl-C, so the vLLM servers are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return RealRun(s, args.out, model).run()


if __name__ == '__main__':
    main()
