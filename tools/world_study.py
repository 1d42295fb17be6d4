"""The Mask-DPO study in the synthetic world, one command (see maskdpo_xtuner/studies/world/study.py).

    python tools/world_study.py                                   # main study, default preset
    python tools/world_study.py --preset quick --out work_dirs/world_quick
    python tools/world_study.py --seeds 0 1 2                     # mean ± std over seeds
    python tools/world_study.py --study tune --seeds 0 1          # pick lr on validation topics
    python tools/world_study.py --study ablation --lr 1e-4        # masks, end-of-turn token
    python tools/world_study.py --study scaling                   # topics vs questions per topic
    python tools/world_study.py --worlds 0 1 2 3 --seeds 0 1 2    # pooled over worlds, paired CIs
    python tools/world_study.py --study masks --worlds 0 1 2 3 --seeds 0 1 2  # gap vs property
    python tools/world_study.py --study source    # paper Table 3: pairs from another model
    python tools/world_study.py --study nearfar   # paper Table 5: near vs far train topics
    python tools/world_study.py --study bestofn   # paper Table 6: best-of-N, the oracle selects
    python tools/world_study.py --study regime    # worlds in the paper's regime (regime.py)

Writes results.md, results.json and results.png per world (in --out/world/W/baseB/) and pooled
over worlds (main: in --out; other studies: in --out/<study>/, with the paper's Tables 3, 5, 6
beside the world's in table3|table5|table6.{md,json,png}, the regime study in regime.*). Stages whose inputs did not change are reused, so adding a seed or a study to
the same --out only does the new work.
"""

from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main
from maskdpo_xtuner.studies.world.neighbours import EMBEDDINGS
from maskdpo_xtuner.studies.world.regime import PROFILES


def parse_args(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--preset', choices=['quick', 'default'], default='default')
    p.add_argument('--study', default='main', choices=[
        'main', 'ablation', 'scaling', 'tune', 'masks', 'source', 'nearfar', 'bestofn', 'regime'])
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='training seeds')
    p.add_argument('--worlds', type=int, nargs='+', default=[0], help='world seeds')
    p.add_argument('--base-seeds', type=int, nargs='+',
                   help="the base model's seed, one per world (default: the world's seed)")
    p.add_argument('--out', default='work_dirs/world_study')
    p.add_argument('--eval-split', choices=['test', 'val'], default='test',
                   help='topics evaluated on (the tune study always uses val)')
    p.add_argument('--lr', type=float, help="DPO / Mask-DPO learning rate (default: the "
                                            "preset's, else the config's)")
    p.add_argument('--lrs', type=float, nargs='+', help='the tune study\'s learning rates')
    p.add_argument('--n', '--k', dest='k', type=int, metavar='N',
                   help="answers sampled per train question (the preset's)")
    p.add_argument('--pretrain-steps', type=int, help='base model training steps')
    p.add_argument('--max-new-tokens', type=int)
    p.add_argument('--eval-samples', type=int, help='sampled answers per eval question')
    p.add_argument('--threads', type=int, help='torch threads per process (default 1)')
    p.add_argument('--jobs', type=int, help='trainings run at the same time (default 2)')
    p.add_argument('--best-of', type=int, help='bestofn study: answers sampled per question, a '
                                               'power of two (default 32)')
    p.add_argument('--embeddings', nargs='+', choices=EMBEDDINGS,
                   help='nearfar study: the embeddings that define near and far (default: all)')
    p.add_argument('--regimes', nargs='+', choices=sorted(PROFILES),
                   help='regime study: the profiles compared with the default world (default: '
                        'all)')
    return p.parse_args(argv)


@tool_main
def main(argv=None) -> dict:
    a = parse_args(argv)
    from maskdpo_xtuner.studies.world.study import run_study
    return run_study(a.preset, a.seeds, a.out, a.study, a.eval_split, a.worlds, a.base_seeds,
                     regimes=a.regimes, best_of=a.best_of, embeddings=a.embeddings, lr=a.lr,
                     lrs=a.lrs, k=a.k,
                     pretrain_steps=a.pretrain_steps, max_new_tokens=a.max_new_tokens,
                     eval_samples=a.eval_samples, threads=a.threads, jobs=a.jobs)


if __name__ == '__main__':
    main()
