"""Exact sentence-to-token masks: render once, tokenize once, assign tokens by character offsets.

For one side of a pair (prompt + one response) we

1. render the conversation with the tokenizer's chat template, once;
2. tokenize the rendered text once, with ``return_offsets_mapping``;
3. find where the response text sits in the rendered text;
4. give every token a *class* from the characters it covers:

=================  =========================================================================
class              tokens
=================  =========================================================================
``PROMPT`` (-1)    end before the response starts (system/user turns, assistant header);
                   never in the loss. Padding also gets -1.
``CORRECT`` (0)    overlap only correct sentences (plus, maybe, separator characters)
``HALLUCINATED``   overlap only hallucinated sentences (plus, maybe, separator characters)
(1)
``SEPARATOR`` (2)  lie inside the response but overlap no sentence: whitespace, newlines, list
                   markers, anything the sentence splitter left out
``END`` (3)        start after the response text: the template's end-of-turn suffix
                   (``<|eot_id|>`` in Llama-3)
``MIXED`` (4)      overlap both a correct and a hallucinated sentence (a token that straddles a
                   sentence boundary, e.g. ``".The"`` without a space): masked on *both* sides
``UNLABELLED`` (5) overlap no sentence but cover response text *with a letter* (any script)
                   that no sentence covers: text the annotator skipped ("Cats can fly."), of
                   unknown truth. Masked on both sides (the dataset builder's
                   ``unlabelled_tokens='mask'``, default; 'keep' makes them separators as
                   before, 'error' refuses the pair). Gaps of whitespace, punctuation, digits
                   (list markers "1.", "-") stay ``SEPARATOR``.
=================  =========================================================================

The rule for a token straddling a boundary is therefore: it takes the label of every sentence
it touches, and is excluded wherever any of them is excluded, so no masked character ever
reaches the loss. A token that straddles the prompt/response boundary (e.g. an ``<unk>``
covering the header's newline and the response's first character) covers response text, so it is
a response token, classified by its response characters. Which classes count on which side is decided later, by the model's mask mode
(``maskdpo_xtuner.model.loss.token_weights``), so the same tokenized data serves Mask-DPO,
the ablations and vanilla DPO.

Truncation to ``max_length`` cuts the ids, labels and classes together, so masks stay aligned.
"""
from typing import List, Optional, Sequence

from maskdpo_xtuner.labels import (CLASS_NAMES, CORRECT, END, HALLUCINATED,  # noqa: F401
                                   IGNORE_INDEX, MIXED, PROMPT, SEPARATOR, UNLABELLED)
from maskdpo_xtuner.dataset.records import Span


class TemplateError(ValueError):
    """The chat template does not render the conversation in a way we can align."""


def render(tokenizer, prompt: List[dict], response: str):
    """Render prompt + response with the chat template; return (text, response_start, content).

    ``content`` is the response as it appears in the rendered text: some templates (Llama-3's)
    trim surrounding whitespace, so it may be ``response.strip()``.
    """
    if not getattr(tokenizer, 'chat_template', None):
        raise TemplateError(f'tokenizer {type(tokenizer).__name__} has no chat_template')
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    text = tokenizer.apply_chat_template(
        prompt + [{'role': 'assistant', 'content': response}], tokenize=False)
    if not text.startswith(head):
        raise TemplateError('the chat template does not render the prompt (with generation '
                            'prompt) as a prefix of the full conversation')
    for content in (response, response.strip()):
        if text.startswith(content, len(head)):
            return text, len(head), content
    raise TemplateError('the chat template changes the response text beyond trimming '
                        f'whitespace: {text[len(head):len(head) + 60]!r}')


def unlabelled_chars(text: str, start: int, end: int, spans) -> List[bool]:
    """For each character of ``text[start:end]``: is it in a gap between sentences that holds a
    letter (text no sentence covers)? ``spans``: sorted (start, end, ...) in ``text``."""
    covered = [False] * (end - start)
    for a, b, *_ in spans:
        covered[a - start:b - start] = [True] * (b - a)
    flags, i = [False] * (end - start), 0
    while i < end - start:
        if covered[i]:
            i += 1
            continue
        j = i
        while j < end - start and not covered[j]:
            j += 1
        if any(c.isalpha() for c in text[start + i:start + j]):
            flags[i:j] = [True] * (j - i)
        i = j
    return flags


def classify_tokens(offsets: Sequence, response_start: int, response_end: int,
                    sentences: Sequence[Span], shift: int,
                    text: Optional[str] = None) -> List[int]:
    """Token classes from character offsets (see the module docstring).

    ``sentences`` are spans into the original response; ``shift`` maps them into the rendered
    text (``response_start`` minus any leading whitespace the template trimmed). ``text``: the
    rendered text, to find UNLABELLED tokens (without it, they are SEPARATOR).
    """
    spans = [(max(s + shift, response_start), min(e + shift, response_end), h)
             for s, e, h in sentences]
    spans = [sp for sp in spans if sp[0] < sp[1]]
    gap_letters = (unlabelled_chars(text, response_start, response_end, spans)
                   if text is not None else None)
    classes = []
    j = 0  # first sentence that may still overlap the current token (offsets are increasing)
    for a, b in offsets:
        b = max(b, a + 1)  # a zero-width token is located at its start character
        if b <= response_start:
            classes.append(PROMPT)
            continue
        if a >= response_end:
            classes.append(END)
            continue
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        touched = set()
        k = j
        while k < len(spans) and spans[k][0] < b:
            touched.add(spans[k][2])
            k += 1
        if not touched:
            unlabelled = gap_letters is not None and any(
                gap_letters[max(a, response_start) - response_start:
                            min(b, response_end) - response_start])
            classes.append(UNLABELLED if unlabelled else SEPARATOR)
        elif len(touched) == 2:
            classes.append(MIXED)
        else:
            classes.append(HALLUCINATED if True in touched else CORRECT)
    return classes


def tokenize_side(tokenizer, prompt: List[dict], response: str, sentences: Sequence[Span],
                  max_length: Optional[int] = None) -> dict:
    """Token ids, labels and classes for prompt + one response, truncated to ``max_length``.

    ``prompt_tokens`` in the result says how many tokens the prompt takes; when it is
    ``>= max_length`` nothing of the response survived truncation.
    """
    text, start, content = render(tokenizer, prompt, response)
    lead = len(response) - len(response.lstrip()) if content != response else 0
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc['input_ids'], enc['offset_mapping']
    classes = classify_tokens(offsets, start, start + len(content), sentences, start - lead,
                              text)
    n_prompt = sum(1 for c in classes if c == PROMPT)
    if max_length is not None:
        ids, classes = ids[:max_length], classes[:max_length]
    labels = [IGNORE_INDEX if c == PROMPT else t for t, c in zip(ids, classes)]
    return {'input_ids': list(ids), 'labels': labels, 'token_class': classes,
            'prompt_tokens': n_prompt}


def tokenize_pair(tokenizer, pair, max_length: Optional[int] = None) -> dict:
    """Both sides of a :class:`~maskdpo_xtuner.dataset.records.Pair`, in XTuner's field names
    (``chosen_ids``, ``chosen_labels``, ...) plus ``chosen_token_class`` /
    ``rejected_token_class`` and ``prompt_tokens``."""
    out = {}
    for side in ('chosen', 'rejected'):
        enc = tokenize_side(tokenizer, pair.prompt, getattr(pair, side),
                            getattr(pair, f'{side}_sentences'), max_length)
        out[f'{side}_ids'] = enc['input_ids']
        out[f'{side}_labels'] = enc['labels']
        out[f'{side}_token_class'] = enc['token_class']
        out['prompt_tokens'] = max(out.get('prompt_tokens', 0), enc['prompt_tokens'])
    return out
