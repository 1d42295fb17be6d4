"""Prompt length against the model's context, checked before anything is generated.

A backend that can tell has ``prompt_tokens(conversations) -> (token counts, context size)``
(the transformers backend: its tokenizer and chat template, and the model config's
``max_position_embeddings``). A prompt whose tokens plus ``max_new_tokens`` exceed the context
is refused, naming the record, before the first ``generate`` call (so no batch is lost), or,
with ``on_error='skip'``, left out and counted (``prompt_too_long``) while the rest is
generated. Backends that cannot tell (an OpenAI-compatible server, LMDeploy here) are not
checked: the server rejects such a request itself, with its own message.
"""
from typing import List, Tuple


def check_context(items: List[Tuple[object, List[dict]]], engine, max_new_tokens: int,
                  on_error: str = 'raise') -> Tuple[List[int], List[str]]:
    """``items``: [(record id, conversation)]. Returns (indices of the items that fit, one
    message per item that does not); raises ``ValueError`` on the first misfit unless
    ``on_error == 'skip'``."""
    counter = getattr(engine, 'prompt_tokens', None)
    if not callable(counter) or not items:
        return list(range(len(items))), []
    lengths, limit = counter([conv for _, conv in items])
    keep, problems = [], []
    for i, ((rid, _), n) in enumerate(zip(items, lengths)):
        if n + max_new_tokens <= limit:
            keep.append(i)
            continue
        msg = (f'id {rid!r}: the prompt takes {n} tokens; with max_new_tokens '
               f'{max_new_tokens} that exceeds the model context of {limit} tokens')
        if on_error != 'skip':
            raise ValueError(msg + ' (shorten it, or --on-error skip to leave it out)')
        problems.append(msg)
    return keep, problems
