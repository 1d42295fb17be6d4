"""Build Mask-DPO training pairs from annotated files (best vs worst response per question).

The selection rules, tie-breaking and filters are in :mod:`maskdpo_xtuner.pairs`; this stage
reads the annotated files, writes the pairs in the official Mask-DPO format with exact character
spans, and writes ``<out>.summary.json``: questions read, pairs kept, drops and excluded
responses by reason, mean chosen and rejected score.
"""
import json
from typing import List

from ..io import iter_jsonl, write_jsonl
from ..pairs import build_pairs


def make_pairs(inputs: List[str], out: str, seed: int = 0, tie_break: str = 'random',
               unparsed: str = 'exclude', keep_equal_scores: bool = False) -> dict:
    """Write the pairs of ``inputs`` (annotated JSONL files) to ``out``; returns the summary."""
    records = (rec for path in inputs for rec in iter_jsonl(path))
    pairs, summary = build_pairs(records, seed=seed, tie_break=tie_break, unparsed=unparsed,
                                 keep_equal_scores=keep_equal_scores)
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
    lines.append('  responses excluded:')
    lines += [f'    {r:<28}{n:>7}' for r, n in s['responses_excluded'].items()]
    return '\n'.join(lines)
