"""The synthetic factual world: exact facts, so Mask-DPO's effect is measured against truth."""
from maskdpo_xtuner.studies.world.oracle import WorldOracle, parse
from maskdpo_xtuner.studies.world.world import (KINDS, OOD_QUESTION, QUESTIONS, VOCAB, Topic, World,
                                                WorldConfig)

__all__ = ['World', 'WorldConfig', 'Topic', 'WorldOracle', 'parse', 'KINDS', 'QUESTIONS',
           'OOD_QUESTION', 'VOCAB']
