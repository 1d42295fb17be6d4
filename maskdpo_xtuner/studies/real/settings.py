"""What the real study varies: its settings, presets, arms and question forms.

An *arm* is a trained model's recipe: the same pairs, config and reference for every arm, only
the loss mask differs (``model.mask_mode``). ``dpo`` counts every response token (vanilla DPO,
= XTuner's and TRL's DPO on the same tokens); ``maskdpo`` is the paper's method; ``chosen`` and
``rejected`` are its one-sided ablations (``--ablations``).
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from maskdpo_xtuner.studies.real import cities, countries

ARMS = {'dpo': 'none', 'maskdpo': 'both', 'chosen': 'chosen', 'rejected': 'rejected'}
MAIN_ARMS = ('dpo', 'maskdpo')
ABLATIONS = ('chosen', 'rejected')

# Held-out countries are asked in several forms (more questions per country, so more power).
# The first is the form the training answers were sampled with.
QUESTION_FORMS = (
    'Give a short factual profile of {name}: its capital, the continent it is on, its '
    'currency, its population and the countries it borders.',
    'Tell me about the country {name}.',
    'I am travelling to {name}. What is its capital, which currency will I need, and which '
    'countries are its neighbours?',
)


@dataclass(frozen=True)
class RealRunSettings:
    preset: str = 'default'
    train_questions: int = 80      # train countries (80: all of the split)
    k: int = 6                     # answers sampled per train country
    temperature: float = 0.8
    top_k: int = 40
    max_new_tokens: int = 160
    anah_questions: int = 2        # train countries whose answers the ANAH-v2 judge also labels
    sample_seed: int = 0           # the answers sampled for pairs, and the pairs' tie breaks
    train_seeds: Tuple[int, ...] = (0, 1, 2)
    arms: Tuple[str, ...] = MAIN_ARMS
    question_forms: int = 3        # held-out questions per country, in domain (<= 3)
    held_out_countries: Optional[int] = None  # None: every country not trained on (val + test)
    ood_questions: Optional[int] = None       # out-of-domain questions; None: all
    eval_seeds: Tuple[int, ...] = (0,)        # sampled evaluation runs (besides greedy)
    batch_size: int = 8            # pairs per training iteration (x accumulation = 8 per step)
    concurrency: int = 64          # requests in flight to vLLM
    cpus: Optional[str] = None     # cores vLLM binds to (None: its default)
    threads: int = 2               # torch threads of the training process (2: 1.8x of 1)
    base_port: int = 8761          # base model's server; trained models: base_port + 1

    def __post_init__(self):
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f'unknown arms {sorted(unknown)}: choose from {list(ARMS)}')
        if not 1 <= self.question_forms <= len(QUESTION_FORMS):
            raise ValueError(f'question_forms must be 1..{len(QUESTION_FORMS)}')
        if 8 % self.batch_size:
            raise ValueError('batch_size must divide 8 (the config takes 8 pairs per step)')
        if not self.train_seeds:
            raise ValueError('give at least one training seed')


PRESETS = {
    'default': {},
    # the pipeline end to end at the smallest honest size: 3 models, one training seed, 40 train
    # countries (15 optimizer steps), greedy answers to every held-out country in one form and
    # to the first 150 cities (a seeded shuffle): ~33 min on 2 cores by the measured rates
    'quick': dict(train_seeds=(0,), train_questions=40, question_forms=1, eval_seeds=(),
                  ood_questions=150),
}


def settings_from(preset: str = 'default', **overrides) -> RealRunSettings:
    """The preset's settings with ``overrides`` (None: keep the preset's value)."""
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}: choose from {list(PRESETS)}')
    fields = {f.name for f in dataclasses.fields(RealRunSettings)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f'unknown settings {sorted(unknown)}')
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    for k in ('train_seeds', 'arms', 'eval_seeds'):
        if k in values:
            values[k] = tuple(values[k])
    return RealRunSettings(preset=preset, **values)


def model_names(s: RealRunSettings):
    """The models the study evaluates: the base, then every arm of each training seed, seed by
    seed (so a run stopped half-way has every arm of its first seeds to compare)."""
    return ['base'] + [f'{arm}-s{seed}' for seed in s.train_seeds for arm in s.arms]


def eval_sets(s: RealRunSettings) -> dict:
    """name -> (annotator, question records) of every evaluation set: the countries not trained
    on, in ``question_forms`` forms (in domain); real cities, another kind of entity and
    question never trained on (out of domain, the analogue of the paper's biographies)."""
    held_out = countries.questions('val') + countries.questions('test')
    held_out = held_out[:s.held_out_countries]
    in_domain = [dict(q, id=f'{q["id"]}-f{f}', form=f,
                      question=QUESTION_FORMS[f].format(name=q['facts']['name']))
                 for q in held_out for f in range(s.question_forms)]
    return {'in-domain': ('countries', in_domain),
            'out-of-domain': ('cities', cities.questions(limit=s.ood_questions))}
