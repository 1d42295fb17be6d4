"""The paper's pair filters and the report of what was read, dropped and kept (both dataset
backends use them: builder.py for lists, arrow.py for the Arrow cache)."""
from collections import Counter
from typing import Optional, Sequence

from mmengine.logging import print_log

from maskdpo_xtuner.dataset.records import Pair, ReadReport
from maskdpo_xtuner.dataset.tokenize import CORRECT, HALLUCINATED

# The paper's filters (section 2.2), applied after truncation, so they see what is trained on.
FILTERS = {
    'prompt_too_long': 'the prompt alone fills max_length',
    'identical_responses': 'chosen and rejected are the same text',
    'no_correct_in_chosen': 'no token of a correct sentence in the (truncated) chosen',
    'no_hallucinated_in_rejected': 'no token of a hallucinated sentence in the (truncated) '
                                   'rejected',
}


def check_filters(filters: Sequence[str]):
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise ValueError(f'unknown filters {sorted(unknown)}; choose from {list(FILTERS)}')


def filter_reason(pair: Pair, item: dict, max_length: int, filters: Sequence[str]):
    """The first of ``filters`` that drops this tokenized pair, or None (it is kept)."""
    if item['prompt_tokens'] >= max_length and 'prompt_too_long' in filters:
        return 'prompt_too_long'
    if pair.chosen == pair.rejected and 'identical_responses' in filters:
        return 'identical_responses'
    if CORRECT not in item['chosen_token_class'] and 'no_correct_in_chosen' in filters:
        return 'no_correct_in_chosen'
    if (HALLUCINATED not in item['rejected_token_class']
            and 'no_hallucinated_in_rejected' in filters):
        return 'no_hallucinated_in_rejected'
    return None


def make_report(read_report: ReadReport, dropped: Counter, kept: int,
                invalid: Optional[dict] = None, unlabelled_tokens: Optional[int] = None,
                unlabelled_mode: str = 'mask') -> dict:
    """What was read, dropped (why, with an example) and kept: a JSON-able dict, logged by
    ``log_report`` (and stored with the Arrow cache, which logs it again on every start).
    ``unlabelled_tokens`` None: not counted (the Arrow backend does not count them yet)."""
    return {'read': read_report.kept + sum(read_report.dropped.values()),
            'invalid': dict(read_report.dropped) if invalid is None else invalid,
            'filtered': dict(dropped), 'kept': kept,
            'loose_sentence_matches': read_report.loose_matches,
            'unlabelled_tokens': unlabelled_tokens, 'unlabelled_mode': unlabelled_mode,
            'examples': dict(read_report.examples)}


def log_report(report: dict):
    msg = [f"Mask-DPO data: read {report['read']} records, kept {report['kept']} pairs"]
    for reason, n in sorted(report['invalid'].items()):
        msg.append(f"  invalid ({reason}): {n}   e.g. {report['examples'][reason]}")
    for reason, n in sorted(report['filtered'].items()):
        msg.append(f'  filtered ({reason}: {FILTERS[reason]}): {n}')
    if report.get('unlabelled_tokens'):
        msg.append(f"  {report['unlabelled_tokens']} response tokens are covered by no sentence "
                   f"(unlabelled): {report['unlabelled_mode']} (unlabelled_tokens)")
    if report['loose_sentence_matches']:
        msg.append(f"  {report['loose_sentence_matches']} sentences matched their response "
                   'only after ignoring whitespace')
    print_log('\n'.join(msg), logger='current')
