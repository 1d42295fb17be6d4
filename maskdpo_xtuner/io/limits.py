"""Length limits on everything a model or a judge reads: one place, set by environment variables.

Every text a model or a judge reads has a maximum length, far above real answers, set by an
environment variable:

=================================  ==========  ===============================================
variable                           default     what
=================================  ==========  ===============================================
``MASKDPO_MAX_QUESTION_CHARS``     20,000      a question (or the messages of one prompt)
``MASKDPO_MAX_RESPONSE_CHARS``     32,000      one response (~8,000 tokens; the paper: 512)
``MASKDPO_MAX_DOCUMENT_CHARS``     100,000     a reference document (every judge step of
                                               every sentence of its question shows it)
``MASKDPO_MAX_SENTENCES``          500         sentences of one response (one judge dialogue
                                               each)
``MASKDPO_MAX_LINE_BYTES``         64 MiB      one line of any JSON Lines input
=================================  ==========  ===============================================

A record over a limit is an error naming file, line, id and field (reason ``too_long``), or
with ``--on-error skip`` is left out and counted; a line over the byte limit is never read
whole (memory stays bounded). Without them, one 200,000-character response made the ANAH
annotator build 5 GB of prompts (each sentence's dialogue holds the whole response).

The checks that apply them are in :mod:`maskdpo_xtuner.io.validate` (``check_length``, the
line limit of ``iter_lines``) and :mod:`maskdpo_xtuner.dataset.records` (training pairs); the
sentence limit is applied where responses are split (pipeline/annotation.py,
pipeline/factscore_eval.py).
"""
import os

LIMITS = {'question': 20_000, 'response': 32_000, 'document': 100_000, 'sentences': 500,
          'line': 64 * 2 ** 20}
_UNITS = {'sentences': ('MASKDPO_MAX_SENTENCES', 'sentences'),
          'line': ('MASKDPO_MAX_LINE_BYTES', 'bytes')}


def limit(name: str) -> int:
    """The limit ``name`` (a key of :data:`LIMITS`): its environment variable, else the
    default."""
    var = _UNITS.get(name, (f'MASKDPO_MAX_{name.upper()}_CHARS',))[0]
    value = os.environ.get(var)
    if value is None:
        return LIMITS[name]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f'{var}={value!r}: expected a positive whole number')
    return int(value)


def limit_text(name: str) -> str:
    var, unit = _UNITS.get(name, (f'MASKDPO_MAX_{name.upper()}_CHARS', 'characters'))
    return f'the limit of {limit(name):,} {unit} ({var}; raise it to accept longer ones)'
