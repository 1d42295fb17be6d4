"""What the loss sees in a pairs file: every response token, its class and whether it counts.

Nothing here decides a class or a weight. Each pair goes through the training code itself:
``read_pairs`` (validation, sentence spans), ``tokenize_and_filter`` (``tokenize_pair`` plus the
paper's filters, so a pair the training drops is shown with the reason it is dropped) and
``token_weights`` under every mask mode. The view only adds what a reader needs and training
does not keep: the text each token covers (the same chat-template rendering, tokenized again
with character offsets; the ids are checked to be the very ids training uses), the sentence
labels as written in the file, and any scores the record carries.

One pair becomes (all lists cover the response tokens and the end-of-turn suffix, in order)::

    {"source": "file:line", "question": "...", "scores": {...}, "dropped": null | reason,
     "chosen": {"ids": [...], "text": [...], "cls": [...], "w": "f3a..", "cut": "...",
                "sents": [[text, label, hallucinated], ...]},
     "rejected": {...}}

``w`` has one hex digit per token: bit ``i`` is set when the token counts in the loss under
``MASK_MODES[i]`` (with the file's ``separator_tokens`` / ``end_tokens``). ``cut`` is the response
text that truncation to ``max_length`` removed (never trained on).
"""
import json
from collections import Counter
from typing import Dict, List, Optional, Sequence

import torch

from maskdpo_xtuner.dataset.builder import FILTERS, tokenize_and_filter
from maskdpo_xtuner.dataset.records import read_pairs
from maskdpo_xtuner.dataset.tokenize import CLASS_NAMES, PROMPT, render, tokenize_pair
from maskdpo_xtuner.model.loss import MASK_MODES, token_weights

SIDES = ('chosen', 'rejected')
CHUNK = 512  # pairs per token_weights call


def token_texts(tokenizer, prompt, response: str, ids: Sequence[int]):
    """(first response token, display text of every token from there, cut text).

    The text of a token is the rendered characters its offsets cover that no earlier token
    showed: a character split over several byte-level tokens (CJK) is shown once, on the
    first of them, and the others get ''."""
    text, start, content = render(tokenizer, prompt, response)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc['input_ids'][:len(ids)]) != list(ids):
        raise RuntimeError('re-tokenizing the rendered text gave other ids than tokenize_pair: '
                           'the view would not show what training sees')
    offsets = enc['offset_mapping'][:len(ids)]
    first = next((i for i, (a, b) in enumerate(offsets) if max(b, a + 1) > start), len(ids))
    shown, out = start, []
    for a, b in offsets[first:]:
        out.append(text[max(a, shown):b])
        shown = max(shown, b)
    end = start + len(content)
    cut = text[shown:end] if shown < end else ''
    return first, out, cut


def _weights(items: List[dict], separator_tokens: str, end_tokens: str) -> List[Dict[str, str]]:
    """Per pair, per side, the hex string of mask-mode bits from ``token_weights``."""
    out = []
    for lo in range(0, len(items), CHUNK):
        chunk = items[lo:lo + CHUNK]
        rows = [it[f'{s}_token_class'] for it in chunk for s in SIDES]  # chosen, rejected, ...
        width = max(map(len, rows))
        cls = torch.full((len(rows), width), PROMPT, dtype=torch.long)
        for r, row in enumerate(rows):
            cls[r, :len(row)] = torch.tensor(row, dtype=torch.long)
        bits = torch.zeros_like(cls)
        for i, mode in enumerate(MASK_MODES):
            w = token_weights(cls, mode, separator_tokens, end_tokens)
            bits |= (w > 0).long() << i
        for p in range(len(chunk)):
            out.append({s: ''.join('%x' % v for v in bits[2 * p + k, :len(rows[2 * p + k])])
                        for k, s in enumerate(SIDES)})
    return out


def _raw_records(paths: Sequence[str], sources: set) -> Dict[str, dict]:
    """The JSON record behind each ``file:line`` source (for labels and scores)."""
    out = {}
    for path in paths:
        with open(path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                key = f'{path}:{lineno}'
                if key in sources:
                    out[key] = json.loads(line)
    return out


def _question(prompt: List[dict]) -> str:
    users = [m['content'] for m in prompt if m['role'] == 'user']
    return users[-1] if users else prompt[-1]['content']


def _side(tokenizer, pair, raw: dict, item: dict, side: str, bits: str) -> dict:
    ids, cls = item[f'{side}_ids'], item[f'{side}_token_class']
    first, text, cut = token_texts(tokenizer, pair.prompt, getattr(pair, side), ids)
    if any(c == PROMPT for c in cls[first:]) or any(c != PROMPT for c in cls[:first]):
        raise RuntimeError(f'{pair.meta.get("source")}: {side}: prompt tokens after the '
                           'response start')
    response = getattr(pair, side)
    labels = raw[f'{side}_item']['type']
    sents = [[response[s:e], lab, h] for (s, e, h), lab in
             zip(getattr(pair, f'{side}_sentences'), labels)]
    return {'ids': ids[first:], 'text': text, 'cls': cls[first:], 'w': bits[first:],
            'cut': cut, 'sents': sents}


def build_pairs_view(paths, tokenizer, max_length: int, separator_tokens: str = 'keep',
                     end_tokens: str = 'keep', filters: Sequence[str] = tuple(FILTERS),
                     map_fn=None, on_error: str = 'skip') -> dict:
    """The view of one or more pairs files: ``pairs`` (see the module docstring) and
    ``summary`` (read / invalid / dropped counts, tokens per class, masked share per mode).
    ``on_error='raise'``: stop at the first invalid record (file:line:field) instead."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    pairs, report = read_pairs(paths, on_error=on_error, map_fn=map_fn)
    raw = _raw_records(paths, {p.meta['source'] for p in pairs})
    items, dropped = [], []
    for pair in pairs:
        kept, why, _ = tokenize_and_filter([pair], tokenizer, max_length, filters,
                                           progress=False)
        items.append(kept[0] if kept else tokenize_pair(tokenizer, pair, max_length))
        dropped.append(None if kept else next(iter(why)))
    bits = _weights(items, separator_tokens, end_tokens)
    out = []
    for pair, item, why, b in zip(pairs, items, dropped, bits):
        rec = raw[pair.meta['source']]
        scores = {k: rec[k] for k in ('chosen_score', 'rejected_score') if k in rec}
        out.append({'source': pair.meta['source'], 'question': _question(pair.prompt),
                    'prompt': pair.prompt, 'scores': scores, 'dropped': why,
                    **{s: _side(tokenizer, pair, rec, item, s, b[s]) for s in SIDES}})
    return {'pairs': out, 'summary': summarize(out, report, paths, max_length,
                                               separator_tokens, end_tokens)}


def masked_share(pairs: List[dict], mode: str) -> Optional[float]:
    """Share of response tokens (every class but the prompt's) not counted under ``mode``:
    the ``masked_share`` the loss logs, over the whole file."""
    bit = 1 << MASK_MODES.index(mode)
    total = counted = 0
    for p in pairs:
        for s in SIDES:
            total += len(p[s]['w'])
            counted += sum(1 for d in p[s]['w'] if int(d, 16) & bit)
    return 1 - counted / total if total else None


def summarize(pairs: List[dict], report, paths, max_length, separator_tokens,
              end_tokens) -> dict:
    tokens = {s: Counter(CLASS_NAMES[c] for p in pairs for c in p[s]['cls']) for s in SIDES}
    labels = Counter(lab for p in pairs for s in SIDES for _, lab, _ in p[s]['sents'])
    return {'files': list(paths), 'read': report.kept + sum(report.dropped.values()),
            'valid': report.kept, 'invalid': dict(report.dropped),
            'invalid_examples': dict(report.examples),
            'dropped': dict(Counter(p['dropped'] for p in pairs if p['dropped'])),
            'trained': sum(1 for p in pairs if not p['dropped']),
            'tokens': {s: dict(c) for s, c in tokens.items()}, 'labels': dict(labels),
            'masked_share': {m: masked_share(pairs, m) for m in MASK_MODES},
            'max_length': max_length, 'separator_tokens': separator_tokens,
            'end_tokens': end_tokens}


def settings_from_config(path: str, cfg_options: Optional[dict] = None,
                         build_tokenizer: bool = True) -> dict:
    """What the view needs from a training config, read as training reads it: the tokenizer
    (built), ``max_length``, the data files, filters and map function of the dataset, and the
    model's ``mask_mode``, ``separator_tokens`` and ``end_tokens``. With ``build_tokenizer=False``
    the tokenizer is left as None (the caller brings its own)."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    ds = cfg.train_dataloader.dataset
    while 'data_files' not in ds and 'dataset' in ds:  # PackedPairs wraps the pairs
        ds = ds.dataset
    for key in ('data_files', 'tokenizer', 'max_length'):
        if key not in ds:
            raise ValueError(f'{path}: train_dataloader.dataset has no {key!r}: not a Mask-DPO '
                             'pairs config')
    files = ds.data_files
    tok = ds.tokenizer if build_tokenizer else None
    return {'tokenizer': BUILDER.build(tok) if isinstance(tok, dict) else tok,
            'max_length': ds.max_length, 'data_files': [files] if isinstance(files, str)
            else list(files), 'filters': tuple(ds.get('filters', FILTERS)),
            'map_fn': ds.get('dataset_map_fn'),
            'mask_mode': cfg.model.get('mask_mode', 'both'),
            'separator_tokens': cfg.model.get('separator_tokens', 'keep'),
            'end_tokens': cfg.model.get('end_tokens', 'keep')}
