"""Batch tokenized pairs: rows alternate chosen, rejected, chosen, rejected, ...

Padded (default): ``[2 * batch, max_len]`` tensors. Packed (``use_varlen_attn=True``, one
:class:`~maskdpo_xtuner.dataset.packing.PackedPairs` item per micro-batch): the same sequences laid
end to end in one row ``[1, total_len]``, position ids restarting at 0 for each sequence and
``cumulative_len`` (XTuner's cu_seqlens) marking the boundaries; ``MaskDPO`` makes sure no
sequence attends across one.
"""
from typing import Dict, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from maskdpo_xtuner.dataset.tokenize import IGNORE_INDEX, PROMPT

SIDES = ('chosen', 'rejected')


def maskdpo_collate_fn(instances: Sequence[Dict], pad_index: int = 0,
                       use_varlen_attn: bool = False, return_hf_format: bool = False):
    """XTuner-style collate: ``{'data': {...}, 'data_samples': None}``.

    ``data`` holds ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` (-100 outside
    the response) and ``token_class`` (see tokenize.py; -1 on prompt and padding), each of shape
    ``[2 * batch, max_len]`` with chosen in even rows and rejected in odd rows; and, when the
    dataset carries precomputed reference log-probs, ``ref_logps`` ``[2 * batch, max_len - 1]``
    (the layout of ``token_logps``).

    >>> item = {'chosen_ids': [5, 6, 7], 'chosen_labels': [-100, 6, 7],
    ...         'chosen_token_class': [-1, 0, 3], 'rejected_ids': [5, 8],
    ...         'rejected_labels': [-100, 8], 'rejected_token_class': [-1, 1]}
    >>> batch = maskdpo_collate_fn([item])['data']
    >>> batch['labels'].tolist()
    [[-100, 6, 7], [-100, 8, -100]]
    >>> batch['token_class'].tolist()
    [[-1, 0, 3], [-1, 1, -1]]
    >>> packed = maskdpo_collate_fn([{'pairs': [item]}], use_varlen_attn=True)['data']
    >>> packed['input_ids'].tolist(), packed['position_ids'].tolist()
    ([[5, 6, 7, 5, 8]], [[0, 1, 2, 0, 1]])
    >>> packed['cumulative_len'][0].tolist(), packed['max_seqlen']
    ([0, 3, 5], 3)
    """
    data = _pack(instances) if use_varlen_attn else _pad(instances, pad_index)
    return data if return_hf_format else {'data': data, 'data_samples': None}


def _rows(pairs, key):
    return [torch.as_tensor(p[f'{side}_{key}']) for p in pairs for side in SIDES]


def _pad(instances, pad_index):
    input_ids = pad_sequence(_rows(instances, 'ids'), batch_first=True, padding_value=pad_index)
    lengths = torch.tensor([len(r) for r in _rows(instances, 'ids')])
    data = {'input_ids': input_ids,
            'attention_mask': torch.arange(input_ids.shape[1])[None, :] < lengths[:, None],
            'position_ids': torch.arange(input_ids.shape[1]).expand_as(input_ids).clone(),
            'labels': pad_sequence(_rows(instances, 'labels'), batch_first=True,
                                   padding_value=IGNORE_INDEX),
            'token_class': pad_sequence(_rows(instances, 'token_class'), batch_first=True,
                                        padding_value=PROMPT)}
    if 'chosen_ref_logps' in instances[0]:
        data['ref_logps'] = pad_sequence(_rows(instances, 'ref_logps'), batch_first=True)
    return data


def _pack(instances):
    if len(instances) != 1 or 'pairs' not in instances[0]:
        raise ValueError('packed batches (use_varlen_attn=True) take one PackedPairs item per '
                         f'micro-batch: set batch_size=1 (got {len(instances)} items)')
    pairs = instances[0]['pairs']
    ids = _rows(pairs, 'ids')
    lengths = torch.tensor([len(r) for r in ids])
    labels = [row.clone() for row in _rows(pairs, 'labels')]
    for row in labels:  # a sequence's first token is never scored (nothing precedes it)
        row[0] = IGNORE_INDEX
    data = {'input_ids': torch.cat(ids)[None],
            'attention_mask': None,  # MaskDPO sets it: None for flash-attn varlen, else 4-D
            'position_ids': torch.cat([torch.arange(n) for n in lengths.tolist()])[None],
            'labels': torch.cat(labels)[None],
            'token_class': torch.cat(_rows(pairs, 'token_class'))[None],
            'cumulative_len': [torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]).int()],
            'max_seqlen': int(lengths.max())}
    if 'chosen_ref_logps' in pairs[0]:  # token_logps layout: one score less than tokens
        scores = [torch.cat([r, r.new_zeros(1)]) for r in _rows(pairs, 'ref_logps')]
        data['ref_logps'] = torch.cat(scores)[None, :-1]
    return data
