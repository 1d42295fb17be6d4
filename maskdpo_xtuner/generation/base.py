"""The one interface every generation backend implements.

A backend turns chat conversations into text. Every sampling parameter is passed explicitly
(libraries disagree on defaults: LMDeploy top_k 50, its server top_k 40 / temperature 0.7,
transformers top_k 50 / temperature 1.0), so a run means the same thing on every backend.
"""
from dataclasses import asdict, dataclass
from typing import List, Optional, Protocol


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


class Backend(Protocol):
    """``generate(conversations, params, n)`` returns, for each conversation, ``n`` completions
    of the assistant turn (the text only, without the end-of-turn token)."""

    def generate(self, conversations: List[List[dict]], params: SamplingParams,
                 n: int = 1) -> List[List[str]]:
        ...
