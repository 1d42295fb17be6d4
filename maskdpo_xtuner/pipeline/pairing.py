"""Build Mask-DPO training pairs from annotated files (best vs worst response per question).

The selection rules, tie-breaking and filters are in :mod:`maskdpo_xtuner.pairs`; this stage
reads the annotated files, writes the pairs in the official Mask-DPO format with exact character
spans, and writes ``<out>.summary.json``: questions read, pairs kept, drops and excluded
responses by reason, mean chosen and rejected score.
"""
import json
from typing import List, Tuple

from maskdpo_xtuner.io.jsonl import write_jsonl
from maskdpo_xtuner.pairs import build_pairs
from maskdpo_xtuner.io.validate import Skipped, check_annotated, read_records


def read_annotated(inputs: List[str], on_error: str = 'raise') -> Tuple[List[dict], Skipped]:
    """The records of annotated files, checked (maskdpo_xtuner/io/validate.py: types, labels,
    spans, with file:line:field), each id once over all files."""
    out, skipped, seen = [], Skipped(), {}
    for path in inputs:
        for line, rec in read_records(path, check_annotated, on_error, skipped):
            if rec['id'] in seen:
                raise ValueError(f'{path}:{line}: id {rec["id"]!r} repeats {seen[rec["id"]]}')
            seen[rec['id']] = f'{path}:{line}'
            out.append(rec)
    return out, skipped


def make_pairs(inputs: List[str], out: str, seed: int = 0, tie_break: str = 'random',
               unparsed: str = 'exclude', keep_equal_scores: bool = False,
               on_error: str = 'raise') -> dict:
    """Write the pairs of ``inputs`` (annotated JSONL files) to ``out``; returns the summary
    (with ``invalid_skipped``: records left out by reason with ``on_error='skip'``)."""
    records, skipped = read_annotated(inputs, on_error)
    pairs, summary = build_pairs(records, seed=seed, tie_break=tie_break, unparsed=unparsed,
                                 keep_equal_scores=keep_equal_scores)
    summary['invalid_skipped'] = dict(skipped.counts)
    summary['input'], summary['out'] = list(inputs), out
    write_jsonl(out, pairs)
    with open(out + '.summary.json', 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    return summary


def format_summary(s: dict) -> str:
    fmt = (lambda x: 'n/a' if x is None else f'{x:.4f}')  # noqa: E731
    lines = [f'{s["questions"]} questions, {s["responses"]} responses -> {s["pairs"]} pairs',
             f'  mean score: chosen {fmt(s["mean_chosen_score"])}, '
             f'rejected {fmt(s["mean_rejected_score"])}',
             '  questions dropped:']
    lines += [f'    {r:<28}{n:>7}' for r, n in s['dropped'].items()]
    if s.get('invalid_skipped'):
        lines.append('  invalid records skipped (--on-error skip):')
        lines += [f'    {r:<28}{n:>7}' for r, n in s['invalid_skipped'].items()]
    lines.append('  responses excluded:')
    lines += [f'    {r:<28}{n:>7}' for r, n in s['responses_excluded'].items()]
    return '\n'.join(lines)
