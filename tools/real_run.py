"""The real study, one command: SmolLM2-135M-Instruct served by vLLM, real facts, DPO against
Mask-DPO over training seeds.

    python tools/real_run.py --preset quick     # base, DPO, Mask-DPO, one seed (docs/real_model.md)
    python tools/real_run.py                    # the same over 3 training seeds
    python tools/real_run.py --ablations        # and the one-sided masks (chosen, rejected)
    python tools/real_run.py --train-questions 8 --held-out-countries 8 --n 4 --preset quick

Builds (or reuses) the model folder and the vLLM environment, then runs every stage of
maskdpo_xtuner/studies/real/run.py into --out; a rerun skips what is done and resumes what was
cut. The estimated time is printed before anything runs.
"""
import os
import signal
import sys

from maskdpo_xtuner.generation import serve
from maskdpo_xtuner.offline import smollm2
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.studies.real.run import RealRun
from maskdpo_xtuner.studies.real.settings import (ABLATIONS, ARMS, MAIN_ARMS, PRESETS,
                                                  RealRunSettings, settings_from)
from maskdpo_xtuner.io.errors import tool_main

SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'setup_vllm.sh')


def parse_args(argv=None):
    d = RealRunSettings()
    p = tool_parser(__doc__)
    p.add_argument('--preset', choices=list(PRESETS), default='default',
                   help='quick: one training seed, 40 train countries, one question form, '
                        'greedy only, 150 cities')
    p.add_argument('--out', default='work_dirs/real_run')
    p.add_argument('--model', help="base model folder (default: tools/build_smollm2.py's)")
    p.add_argument('--arms', nargs='+', choices=list(ARMS), help=f'({" ".join(MAIN_ARMS)})')
    p.add_argument('--ablations', action='store_true',
                   help=f'add the one-sided ablations ({" ".join(ABLATIONS)})')
    p.add_argument('--train-seeds', type=int, nargs='+', help=f'({d.train_seeds})')
    p.add_argument('--sample-seed', type=int, help=f'answers sampled for pairs ({d.sample_seed})')
    p.add_argument('--train-questions', type=int, help=f'train countries ({d.train_questions})')
    p.add_argument('--held-out-countries', type=int,
                   help='held-out countries asked (default: all not trained on)')
    p.add_argument('--question-forms', type=int, help=f'questions per held-out country '
                   f'({d.question_forms})')
    p.add_argument('--n', '--k', dest='k', type=int, metavar='N',
                   help=f'answers sampled per train country ({d.k})')
    p.add_argument('--max-new-tokens', type=int, help=f'({d.max_new_tokens})')
    p.add_argument('--eval-seeds', type=int, nargs='*', help=f'sampled evaluation runs '
                   f'({d.eval_seeds}; none: greedy only)')
    p.add_argument('--anah-questions', type=int,
                   help=f'countries also labelled by the ANAH-v2 judge ({d.anah_questions})')
    p.add_argument('--batch-size', type=int, help=f'pairs per training iteration, x '
                   f'accumulation = 8 per step ({d.batch_size})')
    p.add_argument('--cpus', help="cores vLLM binds to, e.g. '0-1' (default: vLLM's)")
    p.add_argument('--threads', type=int, help=f'torch threads for training ({d.threads})')
    p.add_argument('--base-port', type=int, help=f'({d.base_port}; trained models: +1)')
    return p.parse_args(argv)


@tool_main
def main(argv=None) -> dict:
    a = parse_args(argv)
    arms = list(a.arms or MAIN_ARMS) + (list(ABLATIONS) if a.ablations else [])
    opts = {k: v for k, v in vars(a).items() if k not in ('out', 'model', 'preset', 'arms',
                                                          'ablations')}
    s = settings_from(a.preset, arms=tuple(dict.fromkeys(arms)), **opts)
    os.environ['MASKDPO_VLLM_PYTHON'] = serve.vllm_python(SETUP, build=True)  # built once
    model = a.model or str(smollm2.build())
    # SIGTERM (kill, a scheduler's stop) unwinds like Ctrl-C, so the vLLM servers are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return RealRun(s, a.out, model).run()


if __name__ == '__main__':
    main()
