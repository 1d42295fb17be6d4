from maskdpo_xtuner.dataset.builder import (FILTERS, MaskDPODataset, build_maskdpo_dataset,
                                            maskdpo_map_fn)
from maskdpo_xtuner.dataset.collate import maskdpo_collate_fn
from maskdpo_xtuner.dataset.packing import PackedPairs
from maskdpo_xtuner.dataset.records import Pair, RecordError, read_pairs, validate_record
from maskdpo_xtuner.dataset.tokenize import (CORRECT, END, HALLUCINATED, MIXED, PROMPT, SEPARATOR,
                                             tokenize_pair, tokenize_side)

__all__ = ['FILTERS', 'MaskDPODataset', 'build_maskdpo_dataset', 'maskdpo_map_fn',
           'maskdpo_collate_fn', 'PackedPairs', 'Pair', 'RecordError', 'read_pairs',
           'validate_record', 'CORRECT', 'END', 'HALLUCINATED', 'MIXED', 'PROMPT', 'SEPARATOR',
           'tokenize_pair', 'tokenize_side']
