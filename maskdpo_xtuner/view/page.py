"""One self-contained HTML file: the data as JSON, the CSS and the JavaScript inline.

No server, no network: the page loads no script, style sheet or font from anywhere (system
fonts only), so it opens from disk, from a mail attachment or from a CI artifact alike. The
browser renders one page of pairs (or questions) at a time from the embedded data, so a file of
thousands of pairs stays responsive (see docs/view.md for the sizes tested).

The token classes shown are ``CLASS_NAMES`` of ``maskdpo_xtuner.dataset.tokenize``; the legend
also keeps a slot for each name of ``CLASS_SLOTS`` that is not (yet) a class there.
"""
import html
import json
import os
from typing import Optional

from maskdpo_xtuner.dataset.tokenize import CLASS_NAMES
from maskdpo_xtuner.model.loss import MASK_MODES

HERE = os.path.dirname(os.path.abspath(__file__))
# Display order of the legend; 'unlabelled' is reserved for response text that no sentence
# label covers, a class being added to the tokenizer's classes in another change.
CLASS_SLOTS = ('correct', 'hallucinated', 'mixed', 'separator', 'unlabelled', 'end')
PAGE_SIZE = 20


def _asset(name: str) -> str:
    with open(os.path.join(HERE, name), encoding='utf-8') as f:
        return f.read()


def page_data(pairs: Optional[dict] = None, evals: Optional[dict] = None,
              mask_mode: str = 'both', title: str = 'Mask-DPO view') -> dict:
    if mask_mode not in MASK_MODES:
        raise ValueError(f'mask_mode must be one of {MASK_MODES}, got {mask_mode!r}')
    if pairs is None and evals is None:
        raise ValueError('nothing to show: give pairs, evaluations or both')
    names = {str(k): v for k, v in CLASS_NAMES.items()}
    slots = [s for s in CLASS_SLOTS if s in names.values()]
    slots += [s for s in names.values() if s not in slots and s != 'prompt']
    missing = [s for s in CLASS_SLOTS if s not in names.values()]
    return {'title': title, 'classes': names, 'slots': slots, 'missing_slots': missing,
            'modes': list(MASK_MODES), 'mode': mask_mode, 'page_size': PAGE_SIZE,
            'pairs': pairs, 'evals': evals}


def render_page(data: dict) -> str:
    blob = json.dumps(data, ensure_ascii=False, separators=(',', ':'))
    blob = blob.replace('</', '<\\/').replace('<!--', '<\\!--')  # stays inside <script>
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{html.escape(data["title"])}</title>\n'
            f'<style>\n{_asset("page.css")}</style>\n</head>\n<body>\n'
            '<noscript>This page draws its content with JavaScript: enable it.</noscript>\n'
            '<div id="app"></div>\n'
            f'<script id="data" type="application/json">{blob}</script>\n'
            f'<script>\n{_asset("page.js")}</script>\n</body></html>\n')


def write_page(path: str, pairs: Optional[dict] = None, evals: Optional[dict] = None,
               mask_mode: str = 'both', title: str = 'Mask-DPO view') -> str:
    """Write the page to ``path`` (folders created); returns ``path``."""
    text = render_page(page_data(pairs, evals, mask_mode, title))
    from maskdpo_xtuner.io.atomic import atomic_file
    with atomic_file(path) as f:
        f.write(text)
    return path
