from .builder import FILTERS, MaskDPODataset, build_maskdpo_dataset, maskdpo_map_fn
from .collate import maskdpo_collate_fn
from .packing import PackedPairs
from .records import Pair, RecordError, read_pairs, validate_record
from .tokenize import (CORRECT, END, HALLUCINATED, MIXED, PROMPT, SEPARATOR, tokenize_pair,
                       tokenize_side)

__all__ = ['FILTERS', 'MaskDPODataset', 'build_maskdpo_dataset', 'maskdpo_map_fn',
           'maskdpo_collate_fn', 'PackedPairs', 'Pair', 'RecordError', 'read_pairs',
           'validate_record', 'CORRECT', 'END', 'HALLUCINATED', 'MIXED', 'PROMPT', 'SEPARATOR',
           'tokenize_pair', 'tokenize_side']
