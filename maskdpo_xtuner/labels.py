"""Sentence labels and token classes: the contract between annotators, the dataset and the loss.

Sentence labels: the one mapping from annotator vocabularies to "hallucinated or not".

Two vocabularies are accepted, and nothing else:

================  ====================  ================
vocabulary        label                 hallucinated?
================  ====================  ================
official Mask-DPO ``no_hallucination``  no
official Mask-DPO ``hallucination``     yes
ANAH-v2           ``ok``                no
ANAH-v2           ``nofact``            no   (no checkable fact: ANAH-v2 counts it as correct)
ANAH-v2           ``contradictory``     yes
ANAH-v2           ``unverifiable``      yes
================  ====================  ================

``unparsed`` (the annotator's answer matched nothing) is deliberately *not* accepted for
training: a sentence of unknown status must not silently count as correct or wrong. Re-annotate
it, or drop the record with ``on_error='skip'``.

Token classes: ``dataset/tokenize.py`` gives every token one (the table there says which
characters make which class); ``model/loss.py:token_weights`` decides, per ``mask_mode``, which
classes count on which side. ``IGNORE_INDEX`` marks labels that are never scored.
"""

HALLUCINATED_LABELS = frozenset({'hallucination', 'contradictory', 'unverifiable'})
CORRECT_LABELS = frozenset({'no_hallucination', 'ok', 'nofact'})
KNOWN_LABELS = HALLUCINATED_LABELS | CORRECT_LABELS

# Outputs of the annotators in this package (ANAH-v2 protocol and the world's oracle).
ANNOTATOR_LABELS = ('ok', 'nofact', 'contradictory', 'unverifiable', 'unparsed')


def is_hallucinated(label: str) -> bool:
    """True for a hallucinated sentence, False for a correct one; ValueError otherwise."""
    if label in HALLUCINATED_LABELS:
        return True
    if label in CORRECT_LABELS:
        return False
    raise ValueError(f'unknown sentence label {label!r}; expected one of {sorted(KNOWN_LABELS)}')


# ---------------------------------------------------------------- token classes
PROMPT, CORRECT, HALLUCINATED, SEPARATOR, END, MIXED, UNLABELLED = -1, 0, 1, 2, 3, 4, 5
CLASS_NAMES = {PROMPT: 'prompt', CORRECT: 'correct', HALLUCINATED: 'hallucinated',
               SEPARATOR: 'separator', END: 'end', MIXED: 'mixed', UNLABELLED: 'unlabelled'}
UNLABELLED_TOKENS = ('mask', 'keep', 'error')  # the dataset builder's choice for UNLABELLED
IGNORE_INDEX = -100
# which side's sentence masks apply (model/loss.py): Mask-DPO, the two ablations, vanilla DPO
MASK_MODES = ('both', 'chosen', 'rejected', 'none')
