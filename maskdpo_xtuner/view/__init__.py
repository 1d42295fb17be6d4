"""See what the loss sees: a static HTML view of pairs (token classes and masks) and of judged
evaluation answers. ``tools/show.py`` is the command line; docs/view.md shows the page."""
from maskdpo_xtuner.view.eval_view import build_evals_view, load_eval_dir
from maskdpo_xtuner.view.page import CLASS_SLOTS, page_data, render_page, write_page
from maskdpo_xtuner.view.pair_view import build_pairs_view, masked_share, settings_from_config

__all__ = ['build_evals_view', 'load_eval_dir', 'CLASS_SLOTS', 'page_data', 'render_page',
           'write_page', 'build_pairs_view', 'masked_share', 'settings_from_config']
