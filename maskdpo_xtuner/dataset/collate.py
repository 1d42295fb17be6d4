"""Batch tokenized pairs: rows alternate chosen, rejected, chosen, rejected, ..."""
from typing import Dict, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from .tokenize import IGNORE_INDEX, PROMPT


def maskdpo_collate_fn(instances: Sequence[Dict], pad_index: int = 0,
                       use_varlen_attn: bool = False, return_hf_format: bool = False):
    """XTuner-style collate: ``{'data': {...}, 'data_samples': None}``.

    ``data`` holds ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` (-100 outside
    the response) and ``token_class`` (see tokenize.py; -1 on prompt and padding), each of shape
    ``[2 * batch, max_len]`` with chosen in even rows and rejected in odd rows.

    >>> item = {'chosen_ids': [5, 6, 7], 'chosen_labels': [-100, 6, 7],
    ...         'chosen_token_class': [-1, 0, 3], 'rejected_ids': [5, 8],
    ...         'rejected_labels': [-100, 8], 'rejected_token_class': [-1, 1]}
    >>> batch = maskdpo_collate_fn([item])['data']
    >>> batch['labels'].tolist()
    [[-100, 6, 7], [-100, 8, -100]]
    >>> batch['token_class'].tolist()
    [[-1, 0, 3], [-1, 1, -1]]
    """
    if use_varlen_attn:
        raise ValueError('maskdpo_collate_fn does not pack sequences; set use_varlen_attn=False')
    rows = []
    for d in instances:
        for side in ('chosen', 'rejected'):
            rows.append((d[f'{side}_ids'], d[f'{side}_labels'], d[f'{side}_token_class']))
    input_ids = pad_sequence([torch.tensor(r[0], dtype=torch.long) for r in rows],
                             batch_first=True, padding_value=pad_index)
    labels = pad_sequence([torch.tensor(r[1], dtype=torch.long) for r in rows],
                          batch_first=True, padding_value=IGNORE_INDEX)
    token_class = pad_sequence([torch.tensor(r[2], dtype=torch.long) for r in rows],
                               batch_first=True, padding_value=PROMPT)
    lengths = torch.tensor([len(r[0]) for r in rows])
    attention_mask = torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]
    position_ids = torch.arange(input_ids.shape[1]).expand_as(input_ids).clone()
    data = {'input_ids': input_ids, 'attention_mask': attention_mask,
            'position_ids': position_ids, 'labels': labels, 'token_class': token_class}
    return data if return_hf_format else {'data': data, 'data_samples': None}
