"""Compute the reference model's per-token log-probs once, before training (``ref_logps_cache``).

    python tools/precompute_ref_logps.py CONFIG [--cfg-options ...] [--batch-size 8]
    torchrun --nproc_per_node 8 tools/precompute_ref_logps.py CONFIG   # pairs sharded over ranks

Reads the config ``xtuner train`` reads: the data (``train_dataloader.dataset``, built here
without the cache), the reference (``model.ref_llm``; when that is None, ``model.llm``: the
initial policy, or with LoRA the base model) and the output file (``ref_logps_cache``, which
must be the same in ``model`` and in the dataset). One no-grad pass, batched, with a progress
bar; under torchrun every rank takes every WORLD_SIZE-th pair and rank 0 writes the file. Then
``xtuner train CONFIG`` trains without ever loading the reference model.

Resumable: every ``--save-every`` pairs the finished ones are kept in shards beside the file
(``PATH.parts/``, maskdpo_xtuner/dataset/ref_logps.py); killed and run again, it computes only
the rest. The job itself: maskdpo_xtuner/model/reference.py:precompute_from_config.
"""
from maskdpo_xtuner.cli import cfg_options, tool_parser
from maskdpo_xtuner.io.errors import tool_main


@tool_main
def main(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('config')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='override config keys, as for xtuner train')
    p.add_argument('--batch-size', type=int, default=8, help='pairs per forward pass')
    p.add_argument('--save-every', type=int, default=256,
                   help='pairs computed between two saved shards (what a kill can lose)')
    args = p.parse_args(argv)
    from mmengine.config import Config

    from maskdpo_xtuner.model.reference import precompute_from_config
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(cfg_options(args.cfg_options))
    return precompute_from_config(cfg, args.batch_size, args.save_every)


if __name__ == '__main__':
    main()
