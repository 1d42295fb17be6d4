"""The one interface every generation backend implements.

A backend turns chat conversations into text. Every sampling parameter is passed explicitly
(libraries disagree on defaults: LMDeploy top_k 50, its server top_k 40 / temperature 0.7,
transformers top_k 50 / temperature 1.0), so a run means the same thing on every backend.

Seeds. ``generate(..., seeds=[s_0, s_1, ...])`` gives conversation i its own seed, and copy j of
it is sampled with :func:`derive_seed` ``(s_i, j)``: what a conversation gets depends on its
seed only, never on which conversations share its batch, on the batch size or on the order
(without ``seeds`` every conversation takes ``params.seed``). The sampler derives each
question's seed from the run's seed and the question's id (pipeline/sample.py).
"""
import hashlib
from dataclasses import asdict, dataclass
from typing import List, Optional, Protocol, Sequence


@dataclass(frozen=True)
class SamplingParams:
    """Defaults are the paper's data sampling: top-k 40, temperature 0.8, top-p 1.0."""
    max_new_tokens: int = 512
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 1.0
    do_sample: bool = True
    seed: Optional[int] = None
    # neutral unless set, and always sent: a server otherwise applies the model folder's
    # generation_config.json (a copy with repetition_penalty 1.3 changed every greedy answer)
    repetition_penalty: float = 1.0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @classmethod
    def greedy(cls, max_new_tokens: int = 512) -> 'SamplingParams':
        """The paper's evaluation decoding (Table 1: top-k 1)."""
        return cls(max_new_tokens=max_new_tokens, temperature=1.0, top_k=1, top_p=1.0,
                   do_sample=False)

    def to_dict(self) -> dict:
        return asdict(self)


def derive_seed(*parts) -> int:
    """A seed in [0, 2**31) from any parts (a run seed, a question id, a copy index): stable
    across processes and machines, and different for different parts."""
    digest = hashlib.sha256(repr(parts).encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big') % 2 ** 31


def copy_seeds(params: 'SamplingParams', n_conversations: int, n: int,
               seeds: Optional[Sequence[int]] = None) -> Optional[List[List[int]]]:
    """Seed of copy j of conversation i, ``[[...n...], ...]``, or None (no seed: unseeded)."""
    if seeds is None:
        if params.seed is None:
            return None
        seeds = [params.seed] * n_conversations
    if len(seeds) != n_conversations:
        raise ValueError(f'{len(seeds)} seeds for {n_conversations} conversations')
    return [[derive_seed(s, j) for j in range(n)] for s in seeds]


class Completion(str):
    """One completion: its text (a ``str``, so judges and parsers use it as text) and
    ``finish_reason``: ``'stop'`` (the model ended its turn), ``'length'`` (cut at
    ``max_new_tokens``) or ``None`` (the backend did not say). An engine error is never a
    completion: backends raise instead."""
    finish_reason: Optional[str]

    def __new__(cls, text: str, finish_reason: Optional[str] = None):
        obj = super().__new__(cls, text)
        obj.finish_reason = finish_reason
        return obj


def finish_reason(completion) -> Optional[str]:
    """How a completion ended; ``None`` for a plain string (a backend that does not say)."""
    return getattr(completion, 'finish_reason', None)


class Backend(Protocol):
    """``generate(conversations, params, n)`` returns, for each conversation, ``n`` completions
    of the assistant turn (the text without the end-of-turn token, as :class:`Completion`).

    A backend may also offer ``choose(conversations, choices, max_new_tokens)``: for each
    conversation, the one string of ``choices`` the model answers, so that a judge's verdict
    always parses. The OpenAI backend constrains the server's decoding (vLLM:
    ``structured_outputs: {"choice": [...]}``; LMDeploy: ``response_format`` with a regular
    expression, :func:`choice_regex`), the LMDeploy pipeline the same way, and the
    transformers backend ranks the choices by their log-probability as whole answers."""

    def generate(self, conversations: List[List[dict]], params: SamplingParams,
                 n: int = 1, seeds: Optional[Sequence[int]] = None) -> List[List[str]]:
        ...


def choice_regex(choices: Sequence[str]) -> str:
    """A regular expression matching exactly one of ``choices``."""
    import re
    return '(' + '|'.join(re.escape(c) for c in choices) + ')'


def check_choice(answer: str, choices: Sequence[str], where: str) -> str:
    """``answer`` if it is one of ``choices``; else a RuntimeError: the engine did not apply
    the constraint (vLLM silently ignores the old ``guided_choice`` field, for one)."""
    if answer not in choices:
        raise RuntimeError(f'{where}: the constrained answer {answer[:80]!r} is none of '
                           f'{list(choices)}: the engine ignored the constraint')
    return answer
