"""The dataset a config builds: JSONL -> validated pairs -> exact token masks -> filtered.

Follow one record: ``read_pairs`` (records.py) checks it and finds its sentences' character
spans; ``tokenize_pair`` (tokenize.py) renders, tokenizes once and classifies every token;
the filters below drop the pairs the paper drops, with counts; ``maskdpo_collate_fn``
(collate.py) pads a batch; ``MaskDPO.compute_loss`` (model/maskdpo.py) turns classes into
per-token weights and computes the loss. With ``ref_logps_cache``, precomputed reference
log-probs (``maskdpo_xtuner/dataset/ref_logps.py``) are checked and attached to each pair here.
"""
from collections import Counter
from typing import Callable, Optional, Sequence

from torch.utils.data import Dataset
from tqdm import tqdm

from maskdpo_xtuner.dataset.ref_logps import attach_ref_logps
from maskdpo_xtuner.labels import SEPARATOR, UNLABELLED, UNLABELLED_TOKENS
from maskdpo_xtuner.dataset.records import (Pair, RecordError, read_pairs,
                                            validate_record)
from maskdpo_xtuner.dataset.tokenize import tokenize_pair
from maskdpo_xtuner.dataset.filters import (FILTERS, check_filters, filter_reason, log_report,
                                            make_report)

def maskdpo_map_fn(example: dict) -> dict:
    """XTuner-style ``dataset_map_fn``: one raw record in the official format -> the same record
    validated and normalised (messages as lists, labels kept, exact ``spans`` added, each
    sentence replaced by the exact substring of the response it was matched to).

    Raises :class:`RecordError` on bad input. Use it with ``datasets.Dataset.map`` or as the
    last step of your own map function.
    """
    pair = validate_record(example)
    out = {'prompt': pair.prompt,
           'chosen': [{'role': 'assistant', 'content': pair.chosen}],
           'rejected': [{'role': 'assistant', 'content': pair.rejected}]}
    for side in ('chosen', 'rejected'):
        text, spans = getattr(pair, side), getattr(pair, f'{side}_sentences')
        out[f'{side}_item'] = {'sents': [text[s:e] for s, e, _ in spans],  # exact substrings
                               'type': list(example[f'{side}_item']['type']),
                               'spans': [[s, e] for s, e, _ in spans]}
    return out


class MaskDPODataset(Dataset):
    """Tokenized pairs (a list of dicts) plus ``report``: what was read, kept and dropped; and
    the ``tokenizer`` and ``max_length`` that made them."""

    def __init__(self, items, report: dict, tokenizer=None, max_length: Optional[int] = None):
        self.items, self.report = items, report
        self.tokenizer, self.max_length = tokenizer, max_length

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def unlabelled(item: dict, pair: Pair, how: str) -> int:
    """Count the pair's UNLABELLED tokens; 'keep' turns them into separators (the behaviour
    before the class existed), 'error' refuses a pair that has any (RecordError)."""
    n = 0
    for side in ('chosen', 'rejected'):
        cls = item[f'{side}_token_class']
        k = cls.count(UNLABELLED)
        if k and how == 'error':
            raise RecordError('unlabelled_text', f'{side}_item.sents',
                              f'{k} token(s) of the {side} response are covered by no sentence '
                              '(text the annotator skipped); re-annotate, or '
                              "unlabelled_tokens='mask'", pair.meta.get('source', '<record>'))
        if k and how == 'keep':
            item[f'{side}_token_class'] = [SEPARATOR if c == UNLABELLED else c for c in cls]
        n += k
    return n


def tokenize_and_filter(pairs: Sequence[Pair], tokenizer, max_length: int,
                        filters: Sequence[str] = tuple(FILTERS), progress: bool = True,
                        unlabelled_tokens: str = 'mask', on_error: str = 'raise'):
    """Tokenize pairs and apply ``filters``; returns (items, Counter of dropped reasons,
    number of UNLABELLED tokens). ``unlabelled_tokens``: see :func:`build_maskdpo_dataset`."""
    check_filters(filters)
    if unlabelled_tokens not in UNLABELLED_TOKENS:
        raise ValueError(f'unlabelled_tokens must be one of {UNLABELLED_TOKENS}, got '
                         f'{unlabelled_tokens!r}')
    items, dropped, n_unlabelled = [], Counter(), 0
    for pair in tqdm(pairs, desc='tokenizing pairs', disable=not progress, mininterval=2):
        item = tokenize_pair(tokenizer, pair, max_length)
        try:
            n_unlabelled += unlabelled(item, pair, unlabelled_tokens)
        except RecordError:
            if on_error == 'raise':
                raise
            dropped['unlabelled_text'] += 1
            continue
        reason = filter_reason(pair, item, max_length, filters)
        if reason:
            dropped[reason] += 1
            continue
        item['source'] = pair.meta.get('source', '')
        items.append(item)
    return items, dropped, n_unlabelled


def build_maskdpo_dataset(data_files, tokenizer, max_length: int = 1024,
                          dataset_map_fn: Optional[Callable] = None, on_error: str = 'raise',
                          filters: Sequence[str] = tuple(FILTERS), progress: bool = True,
                          ref_logps_cache: Optional[str] = None,
                          unlabelled_tokens: str = 'mask', backend: str = 'lists',
                          cache_dir: Optional[str] = None, num_proc: int = 1,
                          source: Optional[dict] = None):
    """Build the training set from JSONL files in the official Mask-DPO format.

    Args:
        data_files: a path or list of paths.
        tokenizer: a fast tokenizer with a chat template, or a config dict that builds one.
        max_length: tokens per sequence (prompt + response); longer sequences are truncated at
            the end, and their masks with them.
        dataset_map_fn: optional function applied to each raw JSON record first, to convert
            another format into the official one.
        on_error: 'raise' (stop at the first bad record, naming file, line and field) or
            'skip' (drop bad records and report counts by reason).
        filters: which of the paper's filters to apply (all by default): see ``FILTERS``.
        ref_logps_cache: None, or the file of precomputed reference log-probs
            (``tools/precompute_ref_logps.py``): checked against this data, tokenizer and
            max_length (refused if any differs), then attached to every pair. See
            ``maskdpo_xtuner/dataset/ref_logps.py``.
        unlabelled_tokens: response text covered by no sentence (class UNLABELLED, counted in
            the report): 'mask' (default: out of the loss on both sides), 'keep' (in the loss
            as a separator, the behaviour before), 'error' (refuse such a pair; with
            ``on_error='skip'`` drop it, counted as ``unlabelled_text``).
        backend: 'lists' (every pair as Python lists, in every process) or 'arrow' (a
            memory-mapped ``datasets.Dataset`` built once by rank 0 into ``cache_dir`` and
            opened by every rank and every later start; see ``arrow.py``, docs/datasets.md).
        cache_dir, num_proc, source: for backend='arrow' only: where the built set is kept,
            how many processes tokenize, and any ``datasets.load_dataset`` keyword arguments
            (e.g. ``dict(path='parquet', data_files=...)``) instead of ``data_files``.
    """
    tokenizer = _build(tokenizer)
    if backend == 'arrow':
        if unlabelled_tokens != 'mask':
            raise ValueError(f"unlabelled_tokens={unlabelled_tokens!r} needs backend='lists' "
                             "(the Arrow backend masks unlabelled text, and does not count it)")
        from maskdpo_xtuner.dataset.arrow import build_arrow_dataset
        return build_arrow_dataset(data_files, tokenizer, max_length, dataset_map_fn, on_error,
                                   filters, progress, ref_logps_cache, cache_dir, num_proc,
                                   source)
    if backend != 'lists' or source is not None:
        raise ValueError(f"backend must be 'lists' or 'arrow' (source= needs 'arrow'), got "
                         f'{backend!r}')
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    pairs, read_report = read_pairs(files, on_error=on_error, map_fn=dataset_map_fn)
    items, dropped, n_unlabelled = tokenize_and_filter(pairs, tokenizer, max_length, filters,
                                                       progress, unlabelled_tokens, on_error)
    invalid = dict(read_report.dropped)
    if dropped.get('unlabelled_text'):
        invalid['unlabelled_text'] = dropped.pop('unlabelled_text')
        read_report.examples.setdefault('unlabelled_text', 'response text covered by no '
                                        'sentence (unlabelled_tokens=error)')
    report = make_report(read_report, dropped, len(items), invalid, n_unlabelled,
                         unlabelled_tokens)
    log_report(report)
    if not items:
        raise ValueError(f'no training pairs left from {files}: {report}')
    if ref_logps_cache:
        attach_ref_logps(items, ref_logps_cache, tokenizer, max_length)
    return MaskDPODataset(items, report, tokenizer, max_length)


def _build(tokenizer):
    if isinstance(tokenizer, dict):  # mmengine ConfigDict / dict(type=..., ...)
        from xtuner.registry import BUILDER
        return BUILDER.build(tokenizer)
    return tokenizer
