"""Worlds built to sit in the paper's regime: the documents' attribute frequencies changed.

In the default world (world.py) every kind has six attributes whose documents state them with
frequencies 0.95, 0.9, 0.6, 0.35, 0.25, 0.15 (``KINDS``, in that order). The base model then
barely knows the three hard ones, its chosen answers carry 32-47% hallucinated sentences
(docs/world.md, the masks study) and Mask-DPO leads DPO in domain by ~1.6 points, not the
paper's +9. The paper's regime, as its mechanism reads, is chosen answers that are mostly right
with a few wrong sentences on facts the model *can* learn (they are in its pretraining data,
only not reliably recalled). A *profile* sets the six frequencies (by rank within each kind;
every kind alike) so the hard attributes are seen often enough to be learnable:

* ``middle``: 0.95, 0.9, 0.7, 0.5, 0.4, 0.3 (about halfway);
* ``learnable``: 0.95, 0.9, 0.8, 0.7, 0.6, 0.5.

Only the pretraining documents change: the topics, facts, splits and questions are the default
world's of the same seed (``World.generate`` does not read the frequencies), so a regime world
is compared with its default world question for question. A regime world lives in its own
folder (``--out/world/W-<profile>/``) with its own base model; its world stage's key adds the
profile's frequencies and the source of :class:`RegimeWorld` (:func:`regime_key`), so the default
world's stages (keyed by world.py alone) are untouched and adding a profile re-keys no other.
"""
import hashlib
import inspect
import random
from typing import Dict, Optional

from maskdpo_xtuner.studies.world.world import KINDS, World

DEFAULT = tuple(freq for _, freq, _, _ in KINDS['person'].values())
PROFILES = {'middle': (0.95, 0.9, 0.7, 0.5, 0.4, 0.3),
            'learnable': (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)}


def frequencies(profile: Optional[str]) -> Dict[str, Dict[str, float]]:
    """{kind: {attribute: document frequency}} of a profile (None: the default world's)."""
    if profile is not None and profile not in PROFILES:
        raise ValueError(f'unknown regime {profile!r}: one of {sorted(PROFILES)}')
    out = {}
    for kind, spec in KINDS.items():
        freqs = PROFILES[profile] if profile else tuple(f for _, f, _, _ in spec.values())
        if len(freqs) != len(spec):
            raise ValueError(f'regime {profile!r}: {len(freqs)} frequencies for the '
                             f'{len(spec)} attributes of {kind}')
        out[kind] = dict(zip(spec, freqs))
    return out


class RegimeWorld(World):
    """A world whose documents state each attribute with the profile's frequency."""

    def __init__(self, world: World, profile: Optional[str]):
        super().__init__(world.config, world.topics, world.cities)
        self.profile, self.freqs = profile, frequencies(profile)

    def document(self, topic, rng: random.Random, full: bool = False) -> str:
        """World.document with the profile's frequencies (the same draws in the same order, so
        with the default profile it renders exactly what World.document renders)."""
        sents = []
        for attr, (_, _, answer, paraphrases) in KINDS[topic.kind].items():
            if full or rng.random() < self.freqs[topic.kind][attr]:
                sents.append(rng.choice([answer] + paraphrases).format(
                    s=topic.name, v=topic.facts[attr]))
        rng.shuffle(sents)
        return ' '.join(sents)


def regime_key(profile: str) -> dict:
    """What a regime world's stage adds to the default world's key: the profile, its frequencies
    and the code that renders documents with them."""
    code = hashlib.sha256(inspect.getsource(RegimeWorld).encode()).hexdigest()[:16]
    return {'regime': profile, 'frequencies': frequencies(profile), 'regime_code': code}
