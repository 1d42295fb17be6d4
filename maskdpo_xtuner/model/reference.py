"""The reference model's per-token log-probs over a dataset: the pass behind ``ref_logps_cache``.

One no-grad pass of the frozen reference, batched as training batches (``maskdpo_collate_fn``)
and scored as training scores (``lm_logps``, the LM head by chunks unless told otherwise), so
the stored values are those the online reference would give. What the file holds, its key and
when it is refused live in ``maskdpo_xtuner/dataset/ref_logps.py``; ``tools/precompute_ref_logps.py``
runs this and writes the file.
"""
from typing import Dict, Sequence

import torch
from tqdm import tqdm

from maskdpo_xtuner.dataset.collate import maskdpo_collate_fn
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
