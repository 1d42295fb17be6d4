"""Pairs packed into rows of at most ``max_packed_length`` tokens, for ``use_varlen_attn=True``.

Like XTuner's ``PackedDatasetWrapper`` (greedy, in a shuffled order, a pair's two sides kept
together), but each pack keeps its pairs whole, so ``token_class`` and precomputed reference
log-probs travel with them; ``maskdpo_collate_fn(use_varlen_attn=True)`` lays a pack out.
"""
import random

from mmengine.logging import print_log
from torch.utils.data import Dataset


class PackedPairs(Dataset):
    """Each item is ``{'pairs': [pair, ...]}`` with at most ``max_packed_length`` tokens in all.

    Args:
        dataset: a built dataset of tokenized pairs (e.g. ``build_maskdpo_dataset``'s) or the
            config dict that builds one.
        max_packed_length: tokens per pack (chosen + rejected of every pair in it). Pairs longer
            than this are dropped, and counted in the log.
        shuffle_before_pack: pack in a shuffled order (seeded: the same packs on every rank).
    """

    def __init__(self, dataset, max_packed_length: int = 16384,
                 shuffle_before_pack: bool = True, seed: int = 0):
        from maskdpo_xtuner.dataset.builder import _build
        self.dataset = _build(dataset)
        order = list(range(len(self.dataset)))
        if shuffle_before_pack:
            random.Random(seed).shuffle(order)
        self.packs, self.dropped, pack, size = [], 0, [], 0
        lengths = pair_lengths(self.dataset)
        for i in order:
            n = lengths[i]
            if n > max_packed_length:
                self.dropped += 1
                continue
            if pack and size + n > max_packed_length:
                self.packs.append(pack)
                pack, size = [], 0
            pack.append(i)
            size += n
        if pack:
            self.packs.append(pack)
        print_log(f'Packed {len(self.dataset) - self.dropped} pairs into {len(self.packs)} rows '
                  f'of at most {max_packed_length} tokens'
                  + (f'; dropped {self.dropped} longer pairs' if self.dropped else ''),
                  logger='current')

    def __len__(self):
        return len(self.packs)

    def __getitem__(self, idx):
        return {'pairs': [self.dataset[i] for i in self.packs[idx]]}


def pair_lengths(dataset):
    """Tokens per pair (chosen + rejected): the Arrow dataset reads them from its offsets."""
    if hasattr(dataset, 'pair_lengths'):
        return dataset.pair_lengths()
    return [len(it['chosen_ids']) + len(it['rejected_ids']) for it in dataset]
