"""Train a config with XTuner, returning the trainer's real exit code.

    python tools/train.py configs/maskdpo/tiny_cpu_maskdpo.py --work-dir work_dirs/tiny
    python tools/train.py configs/maskdpo/llama3_1_8b_instruct_maskdpo_full.py --nproc 8 \\
        --deepspeed deepspeed_zero3 --model /models/my-8b-chat     # substitute the model
    python tools/train.py CONFIG --work-dir W --resume W/iter_200.pth   # no extra env needed

``--model`` points every key of the config that holds its model path (tokenizer, policy,
reference, dataset tokenizer) at the new one; other ``--cfg-options`` pass through.
``xtuner train CONFIG`` works too, but exits 0 when training fails and needs
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for ``--resume PATH`` (maskdpo_xtuner/train.py).
"""
import os
import sys

from maskdpo_xtuner.io.errors import tool_main
from maskdpo_xtuner.io.procs import call
from maskdpo_xtuner.train import train_command, train_env, validate_training_data
from maskdpo_xtuner.cli import tool_parser


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('config')
    p.add_argument('--work-dir')
    p.add_argument('--model', help='substitute this model (folder or hub name) everywhere')
    p.add_argument('--resume', help='a checkpoint to resume from (or set resume=True)')
    p.add_argument('--deepspeed', help='e.g. deepspeed_zero3 (XTuner\'s presets) or a JSON')
    p.add_argument('--nproc', type=int, default=int(os.environ.get('NPROC_PER_NODE', 1)),
                   help='processes (GPUs) on this node (default: $NPROC_PER_NODE or 1)')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    return p.parse_args(argv)


@tool_main
def main(argv=None) -> int:
    args = parse_args(argv)
    bad = [kv for kv in args.cfg_options if '=' not in kv]
    if bad:
        raise SystemExit(f'error: --cfg-options expects KEY=VALUE, got {bad[0]!r}')
    options = dict(kv.split('=', 1) for kv in args.cfg_options)
    try:  # the data first: XTuner loads the models before it reads the dataset
        for line in validate_training_data(args.config, options, args.nproc):
            print(line, flush=True)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    cmd = train_command(args.config, args.work_dir, args.model, options, args.resume,
                        args.deepspeed, args.nproc)
    print('$ ' + ' '.join(cmd), flush=True)
    return call(cmd, env=train_env())  # the trainer ends with this process, however it ends


if __name__ == '__main__':
    sys.exit(main())
