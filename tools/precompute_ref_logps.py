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
(``PATH.parts/``, maskdpo_xtuner/dataset/ref_logps.py); killed and run again, it computes only the rest.
"""
import argparse
import copy
import os
import socket
import sys
import time

import torch
import torch.distributed as dist

from maskdpo_xtuner.train import cfg_options_action
from maskdpo_xtuner.dataset.ref_logps import (PartialRefLogps, data_key,
                                              reference_fingerprint, save_ref_logps)
from maskdpo_xtuner.io.cli import tool_main


def dataset_cfg(cfg):
    """The dict that builds the pairs (inside a PackedPairs wrapper, if any)."""
    ds = cfg.train_dataloader.dataset
    while 'ref_logps_cache' not in ds and 'dataset' in ds:
        ds = ds.dataset
    return ds


def cache_path(cfg):
    on_model = cfg.model.get('ref_logps_cache')
    on_data = dataset_cfg(cfg).get('ref_logps_cache')
    if not on_model or on_model != on_data:
        sys.exit('set ref_logps_cache to the same file in the model and in the dataset '
                 f'(model: {on_model!r}, train_dataloader.dataset: {on_data!r})')
    return on_model


def init_distributed():
    """(rank, world size). Under torchrun: the launcher's group. On one GPU: a group of one
    (XTuner's flash-attention forward asks for the rank). On CPU: no group."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    if not dist.is_initialized() and (world > 1 or torch.cuda.is_available()):
        if world == 1:
            with socket.socket() as s:
                s.bind(('127.0.0.1', 0))
                os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(s.getsockname()[1]),
                                  RANK='0', WORLD_SIZE='1')
        dist.init_process_group('nccl' if torch.cuda.is_available() else 'gloo')
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@tool_main
def main(argv=None):
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    from maskdpo_xtuner.model.maskdpo import build_reference
    from maskdpo_xtuner.model.reference import compute_ref_logps

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--cfg-options', nargs='+', action=cfg_options_action(), default={},
                   help='override config keys, as for xtuner train')
    p.add_argument('--batch-size', type=int, default=8, help='pairs per forward pass')
    p.add_argument('--save-every', type=int, default=256,
                   help='pairs computed between two saved shards (what a kill can lose)')
    args = p.parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    path = cache_path(cfg)
    rank, world = init_distributed()
    t0 = time.perf_counter()

    ds_cfg = copy.deepcopy(dataset_cfg(cfg))
    ds_cfg.ref_logps_cache = None  # the data exactly as training builds it, minus the cache
    dataset = BUILDER.build(ds_cfg)
    key = data_key(dataset, dataset.tokenizer, dataset.max_length)
    ref_cfg = cfg.model.ref_llm if cfg.model.get('ref_llm') is not None else cfg.model.llm
    device = f'cuda:{torch.cuda.current_device()}' if torch.cuda.is_available() else 'cpu'
    reference = build_reference(copy.deepcopy(ref_cfg)).to(device)
    ref_id = reference_fingerprint(ref_cfg, next(reference.parameters()).dtype)  # the real one
    print(f'[rank {rank}/{world}] reference {ref_id["path"]} on {device}, '
          f'{len(dataset)} pairs (max_length {dataset.max_length})', flush=True)

    parts = PartialRefLogps(path, key, ref_id, rank)
    if dist.is_initialized():
        dist.barrier()  # rank 0 has checked (or cleared) the shards' key
    logps = {i: v for i, v in parts.done().items() if i % world == rank}
    todo = [i for i in range(rank, len(dataset), world) if i not in logps]
    if logps:
        print(f'[rank {rank}/{world}] resuming: {len(logps)} pairs already computed, '
              f'{len(todo)} to go', flush=True)
    for s in range(0, len(todo), args.save_every):
        new = compute_ref_logps(reference, dataset, todo[s:s + args.save_every],
                                args.batch_size, progress=rank == 0,
                                chunked_lm_head=cfg.model.get('chunked_lm_head', True))
        parts.add(new)
        logps.update(new)
    if world > 1:
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(logps, gathered, dst=0)
        logps = {i: v for part in (gathered or []) for i, v in part.items()}
    if rank == 0:
        save_ref_logps(path, logps, key, ref_id)
        parts.remove()
        tokens = sum(len(a) + len(b) + 2 for a, b in logps.values())
        dt = time.perf_counter() - t0
        print(f'wrote {path}: {len(logps)} pairs, {tokens} tokens, '
              f'{os.path.getsize(path) / 2**20:.1f} MiB in {dt:.1f} s', flush=True)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return path


if __name__ == '__main__':
    main()
