"""What a world study varies: its settings (presets), and the arms it trains and compares.

A training *spec* is what defines a trained model besides the seed (masks, end-of-turn tokens,
learning rate, data subset, where the pairs come from); an *arm* is a display name mapped to a
spec (None: the base model). Add a study arm here: a name in :func:`arms` and, if it needs a new
kind of training, a field in :func:`spec` that ``Study._train`` turns into a config option or
``Study.subset_pairs`` into a data subset.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from maskdpo_xtuner.studies.world.neighbours import EMBEDDINGS
from maskdpo_xtuner.studies.world.pretrain import PretrainConfig
from maskdpo_xtuner.studies.world.world import WorldConfig


@dataclass
class StudySettings:
    preset: str = 'default'
    world: WorldConfig = field(default_factory=WorldConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    k: int = 8                      # samples per train question (top-k 40, temperature 0.8)
    temperature: float = 0.8
    top_k: int = 40
    max_new_tokens: int = 96
    batch_size: int = 64            # sequences generated together
    eval_samples: int = 4           # sampled answers per eval question (one run each)
    lr: Optional[float] = None      # None: the config's learning rate
    train_batch_size: Optional[int] = None  # pairs per step; None: the config's
    lrs: List[float] = field(default_factory=lambda: [2e-5, 5e-5, 1e-4, 2e-4])  # tune grid
    threads: int = 1                # torch threads per process (1 is fastest on shared cores)
    jobs: int = 2                   # trainings run at the same time
    regime: Optional[str] = None    # documents' attribute frequencies (regime.py); None: KINDS'
    best_of: int = 32               # bestofn study: answers sampled per question (N up to this)
    embeddings: List[str] = field(default_factory=lambda: list(EMBEDDINGS))  # nearfar study


def preset(name: str) -> StudySettings:
    if name == 'default':
        return StudySettings(preset='default')
    if name == 'quick':  # a quarter of the world, a small base model: the pipeline in minutes
        return StudySettings(
            preset='quick',
            world=WorldConfig(n_person=60, n_organisation=30, n_place=30, n_event=30),
            pretrain=PretrainConfig(steps=300, batch_size=32, hidden_size=96, num_layers=2,
                                    intermediate_size=288, lr=3e-3, warmup=20),
            k=4, max_new_tokens=64, eval_samples=1, lr=1e-4, train_batch_size=8, best_of=8)
    raise ValueError(f'unknown preset {name!r}: quick or default')


def spec(mask='both', end='keep', lr=None, topics=None, questions=None, source=None,
         group=None) -> dict:
    """What defines a trained model (besides the seed): masks, end-of-turn tokens, learning
    rate, the data subset (share of train topics as 'a/b', questions per topic, or a topic
    group of neighbours.py such as 'near:model-name') and the pairs' source (sources.py: None =
    the base model's own samples, 'base<B>' = another base model's, 'doc' = chosen answers
    written from the document). ``source`` and ``group`` appear in the spec only when set, so
    the stage keys of models trained before they existed are unchanged."""
    out = {'mask': mask, 'end': end, 'lr': lr, 'topics': topics, 'questions': questions}
    out.update({k: v for k, v in (('source', source), ('group', group)) if v is not None})
    return out


def spec_name(s: dict) -> str:
    name = f'mask-{s["mask"]}'
    if s['end'] != 'keep':
        name += f'_end-{s["end"]}'
    if s['lr'] is not None:
        name += f'_lr{s["lr"]:g}'
    if s['topics'] is not None:
        name += f'_topics{s["topics"].replace("/", "of")}'
    if s['questions'] is not None:
        name += f'_q{s["questions"]}'
    if s.get('group') is not None:
        name += f'_{s["group"].replace(":", "-")}'
    if s.get('source') is not None:
        name += f'_from-{s["source"]}'
    return name


def arms(study: str, settings: StudySettings) -> Dict[str, Optional[dict]]:
    """Display name -> training spec (None: the base model, not trained)."""
    lr = settings.lr
    if study in ('main', 'masks'):  # masks: the main arms, related to world properties
        return {'base': None, 'dpo': spec('none', lr=lr), 'maskdpo': spec('both', lr=lr)}
    if study == 'ablation':
        return {'base': None, 'none (DPO)': spec('none', lr=lr),
                'chosen': spec('chosen', lr=lr), 'rejected': spec('rejected', lr=lr),
                'both (Mask-DPO)': spec('both', lr=lr),
                'both + end masked': spec('both', end='mask', lr=lr)}
    if study == 'scaling':
        return {'base': None,
                'topics 1/3 x 3q': spec('both', lr=lr, topics='1/3'),
                'topics 2/3 x 3q': spec('both', lr=lr, topics='2/3'),
                'all topics x 1q': spec('both', lr=lr, questions=1),
                'all topics x 2q': spec('both', lr=lr, questions=2),
                'all topics x 3q': spec('both', lr=lr)}
    if study == 'source':  # paper Table 3: where the sampled answers come from
        return {'base': None, 'maskdpo, own samples': spec('both', lr=lr),
                'maskdpo, other base model': spec(
                    'both', lr=lr, source=f'base{other_base_seed(settings)}'),
                'maskdpo, chosen from the document': spec('both', lr=lr, source='doc')}
    if study == 'nearfar':  # paper Table 5: train topics near / far from the test topics
        out = {'base': None, 'maskdpo, all train topics': spec('both', lr=lr)}
        for emb in settings.embeddings:
            if emb not in EMBEDDINGS:
                raise ValueError(f'unknown embedding {emb!r}: one of {EMBEDDINGS}')
            for side in ('near', 'far'):
                out[f'{side} ({emb})'] = spec('both', lr=lr, group=f'{side}:{emb}')
        return out
    if study in ('bestofn', 'regime'):  # Table 6: then best-of-N; regime: on other worlds
        return arms('main', settings)
    if study == 'tune':
        out = {'base': None}
        for x in settings.lrs:
            out[f'dpo lr={x:g}'] = spec('none', lr=x)
            out[f'maskdpo lr={x:g}'] = spec('both', lr=x)
        return out
    raise ValueError(f'unknown study {study!r}')


def other_base_seed(settings: StudySettings) -> int:
    """The source study's other model: the same world's base model pretrained with seed B + 1."""
    return settings.pretrain.seed + 1
