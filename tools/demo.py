"""The README's main job on a CPU: the Mask-DPO study in the synthetic world (one seed).

    python tools/demo.py                 # (bash tools/run.sh demo sets up the environment first)
    python tools/demo.py --preset quick  # any tools/world_study.py option is passed on
    python tools/demo.py --tiny          # the smoke test: a tiny random model, sample data

The study (tools/world_study.py, default preset, seed 0) builds the world and its base model,
samples, annotates with the world's oracle, builds pairs, trains DPO and Mask-DPO with
`xtuner train`, converts and evaluates them; results in work_dirs/world_study/results.{md,json,png}.
``--tiny``: Mask-DPO training of a tiny offline model on the sample data with `xtuner train`,
conversion to a Hugging Face folder and a generation from it, in work_dirs/tiny_cpu/.
"""
import glob
import json
import math
import os
import sys

from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main
from maskdpo_xtuner.io.procs import call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/maskdpo/tiny_cpu_maskdpo.py'
WORK = 'work_dirs/tiny_cpu'


def step(title, args):
    print(f'\n=== {title}\n$ {" ".join(args)}', flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    code = call(args, cwd=ROOT, env=env)  # owned: it ends with the demo, however that ends
    if code != 0:
        sys.exit(f'demo failed at: {title} (exit code {code})')


def parse_args(argv):
    p = tool_parser(__doc__, usage='%(prog)s [--tiny] [WORLD_STUDY_OPTION ...]')
    p.add_argument('--tiny', action='store_true',
                   help='only the smoke test: train a tiny model on the sample data, convert it '
                   '(safetensors) and generate')
    p.add_argument_group('world study options', 'every other option goes to '
                         'tools/world_study.py (--preset quick, --seeds 0 1, --out DIR, ...; '
                         '`python tools/world_study.py --help` lists them)')
    return p.parse_known_args(argv)


@tool_main
def main(argv=None):
    args, rest = parse_args(sys.argv[1:] if argv is None else list(argv))
    if not args.tiny:  # a later --out in the options wins over this default
        step('the world study', [sys.executable, 'tools/world_study.py', '--out',
                                 os.path.join(ROOT, 'work_dirs', 'world_study'), *rest])
        return
    if rest:
        sys.exit(f'--tiny takes no other option (got {" ".join(rest)})')
    tiny()


def tiny():
    py = sys.executable
    if not os.path.exists(os.path.join(ROOT, WORK, 'model', 'config.json')):
        step('build the tiny base model (offline)',
             [py, 'tools/build_tiny_model.py', '--out', f'{WORK}/model'])
    step('Mask-DPO training with xtuner (CPU)',
         [py, '-m', 'xtuner.tools.train', CONFIG, '--work-dir', WORK])
    with open(os.path.join(ROOT, WORK, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    step('convert the checkpoint to a Hugging Face folder',
         [py, '-m', 'xtuner.tools.model_converters.pth_to_hf', CONFIG, ckpt, f'{WORK}/hf',
          '--fp32', '--safe-serialization'])

    scalars = sorted(glob.glob(os.path.join(ROOT, WORK, '*', 'vis_data', 'scalars.json')))[-1]
    rows = [json.loads(line) for line in open(scalars)]
    losses = [r['loss'] for r in rows if 'loss' in r]
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, WORK, 'hf'))
    tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, WORK, 'hf'))
    ids = tok.apply_chat_template([{'role': 'user', 'content': 'Who was Elna Varga?'}],
                                  add_generation_prompt=True, return_tensors='pt')
    out = model.generate(ids, max_new_tokens=24, do_sample=False)
    print('\n=== result')
    print(f'loss: first step {losses[0]:.4f} (log 2 = {math.log(2):.4f}), '
          f'last step {losses[-1]:.4f}, over {len(losses)} steps')
    print(f'Hugging Face model: {os.path.join(WORK, "hf")}')
    print('sample (tiny random model, so expect word salad):',
          repr(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)))
    if not losses[-1] < math.log(2):
        sys.exit('the loss did not fall below log 2')


if __name__ == '__main__':
    main()
