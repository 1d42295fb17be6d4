"""The reference model's per-token log-probs over a dataset: the pass behind ``ref_logps_cache``.

One no-grad pass of the frozen reference, batched as training batches (``maskdpo_collate_fn``)
and scored as training scores (``lm_logps``, the LM head by chunks unless told otherwise), so
the stored values are those the online reference would give. What the file holds, its key and
when it is refused live in ``maskdpo_xtuner/dataset/ref_logps.py``.


:func:`precompute_from_config` is the whole job behind ``tools/precompute_ref_logps.py``: read
the config ``xtuner train`` reads (the data, the reference: ``model.ref_llm`` or, when that is
None, ``model.llm``), compute, and write the cache file.
"""
import copy
import os
import socket
import time
from typing import Dict, Sequence

import torch
import torch.distributed as dist
from tqdm import tqdm

from maskdpo_xtuner.dataset.collate import maskdpo_collate_fn
from maskdpo_xtuner.dataset.ref_logps import (PartialRefLogps, data_key,
                                              reference_fingerprint, save_ref_logps)
from maskdpo_xtuner.model.logps import lm_logps


@torch.no_grad()
def compute_ref_logps(reference, items: Sequence[dict], indices=None, batch_size: int = 8,
                      progress: bool = True, chunked_lm_head: bool = True) -> Dict[int, tuple]:
    """One no-grad pass: {index: (chosen logps, rejected logps)}, fp32 on CPU.

    Pairs are batched longest first (little padding, and out-of-memory shows at once).
    """
    device = next(reference.parameters()).device
    indices = range(len(items)) if indices is None else indices
    order = sorted(indices, key=lambda i: -len(items[i]['chosen_ids'])
                   - len(items[i]['rejected_ids']))
    out = {}
    bar = tqdm(total=len(order), desc='reference log-probs', unit='pair', disable=not progress,
               mininterval=2)
    for s in range(0, len(order), batch_size):
        batch = order[s:s + batch_size]
        data = maskdpo_collate_fn([items[i] for i in batch], return_hf_format=True)
        labels = data.pop('labels').to(device)
        data = {k: data[k].to(device) for k in ('input_ids', 'attention_mask', 'position_ids')}
        logps = lm_logps(reference, data, labels, chunked_lm_head).float().cpu()
        for j, i in enumerate(batch):
            out[i] = tuple(logps[2 * j + k, :len(items[i][f'{side}_ids']) - 1].clone()
                           for k, side in enumerate(('chosen', 'rejected')))
        bar.update(len(batch))
    bar.close()
    return out


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
        raise ValueError('set ref_logps_cache to the same file in the model and in the dataset '
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

def precompute_from_config(cfg, batch_size: int = 8, save_every: int = 256) -> str:
    """Compute the reference log-probs of the pairs a training config reads and write its
    ``ref_logps_cache`` file; resumable by shards; under torchrun, pairs sharded over ranks.
    Returns the file's path."""
    from xtuner.registry import BUILDER

    from maskdpo_xtuner.model.maskdpo import build_reference

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
    for s in range(0, len(todo), save_every):
        new = compute_ref_logps(reference, dataset, todo[s:s + save_every],
                                batch_size, progress=rank == 0,
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

