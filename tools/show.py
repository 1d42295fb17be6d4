"""Write one static HTML page that shows what the loss sees: pairs, masks and judged answers.

    # the training data of a config, exactly as that config tokenizes and masks it
    python tools/show.py --config configs/maskdpo/tiny_cpu_maskdpo.py --out work_dirs/view.html
    # another pairs file, with a tokenizer folder (and the masking settings given here)
    python tools/show.py --pairs data/sample_pairs.jsonl --tokenizer work_dirs/tiny_cpu/model \\
        --max-length 256 --mask-mode both --out work_dirs/view.html
    # evaluation answers, per model (output folders of tools/eval_anah.py); may be combined
    python tools/show.py --evals base=work_dirs/eval/base maskdpo=work_dirs/eval/maskdpo \\
        --out work_dirs/view.html

The page is self-contained (no server, no network) and opens in any browser. See docs/view.md.
"""
import os

from maskdpo_xtuner.cli import cfg_options, tool_parser
from maskdpo_xtuner.io.errors import tool_main


def parse_args(argv=None):
    from maskdpo_xtuner.labels import MASK_MODES
    p = tool_parser(__doc__)
    p.add_argument('--out', required=True, help='HTML file to write')
    p.add_argument('--config', help='training config: tokenizer, max_length, data files, '
                   'filters and masking settings as training uses them')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   metavar='KEY=VALUE', help='override config keys, as for xtuner train')
    p.add_argument('--pairs', nargs='+', help="pairs JSONL files (default: the config's)")
    p.add_argument('--tokenizer', help='tokenizer folder (instead of the config\'s)')
    p.add_argument('--max-length', type=int, help="default: the config's, else 1024")
    p.add_argument('--mask-mode', choices=MASK_MODES,
                   help="mode shown first (all can be switched in the page); default: the "
                   "config's, else 'both'")
    p.add_argument('--separator-tokens', choices=('keep', 'mask'))
    p.add_argument('--end-tokens', choices=('keep', 'mask'))
    p.add_argument('--evals', nargs='+', metavar='NAME=DIR', default=[],
                   help='tools/eval_anah.py output folders, one per model')
    p.add_argument('--title', default='Mask-DPO view')
    p.add_argument('--on-error', choices=('raise', 'skip'), default='raise',
                   help='an invalid pair: stop naming file:line:field (raise), or count it in '
                        "the page's summary and show the others (skip)")
    p.add_argument('--screenshot', metavar='PNG',
                   help='also save a PNG of the page drawn by headless chromium')
    p.add_argument('--screenshot-at', default='', metavar='STATE',
                   help="the page state to shoot, as in the page's URL after '#', "
                   "e.g. 'mode=none&size=10&page=3' or 'tab=evals'")
    p.add_argument('--screenshot-size', default='1400x1000', metavar='WxH')
    args = p.parse_args(argv)
    args.cfg_options = cfg_options(args.cfg_options)
    return args


def pair_settings(args) -> dict:
    """Settings from the config (if any), overridden by the command line."""
    from maskdpo_xtuner.dataset.builder import FILTERS
    from maskdpo_xtuner.view import settings_from_config
    if args.config:
        s = settings_from_config(args.config, args.cfg_options,
                                 build_tokenizer=not args.tokenizer)
    else:
        s = {'tokenizer': None, 'max_length': 1024, 'data_files': None,
             'filters': tuple(FILTERS), 'map_fn': None, 'mask_mode': 'both',
             'separator_tokens': 'keep', 'end_tokens': 'keep'}
    if args.tokenizer:
        from transformers import AutoTokenizer
        s['tokenizer'] = AutoTokenizer.from_pretrained(args.tokenizer)
    for key in ('max_length', 'mask_mode', 'separator_tokens', 'end_tokens'):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    if args.pairs:
        s['data_files'] = args.pairs
    if s['tokenizer'] is None:
        raise SystemExit('pairs need a tokenizer: give --config or --tokenizer')
    if not s['data_files']:
        raise SystemExit('no pairs file: give --pairs or a --config with data_files')
    return s


def parse_evals(specs) -> dict:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition('=')
        if not sep or not name or not path:
            raise SystemExit(f'--evals expects NAME=DIR, got {spec!r}')
        if name in out:
            raise SystemExit(f'--evals: name {name!r} used twice')
        out[name] = path
    return out


@tool_main
def main(argv=None) -> str:
    args = parse_args(argv)
    from maskdpo_xtuner.view import build_evals_view, build_pairs_view, write_page
    evals_dirs = parse_evals(args.evals)
    if not (args.config or args.pairs or evals_dirs):
        raise SystemExit('nothing to show: give --config / --pairs and/or --evals')
    pairs = evals = None
    mode = args.mask_mode or 'both'
    if args.config or args.pairs:
        s = pair_settings(args)
        mode = s['mask_mode']
        pairs = build_pairs_view(s['data_files'], s['tokenizer'], s['max_length'],
                                 s['separator_tokens'], s['end_tokens'], s['filters'],
                                 s['map_fn'], args.on_error)
        sm = pairs['summary']
        print(f"pairs: {sm['valid']} valid of {sm['read']} records, {sm['trained']} trained; "
              f"masked share under {mode}: {sm['masked_share'][mode]:.3f}")
    if evals_dirs:
        evals = build_evals_view(evals_dirs)
        print(f"evaluations: {evals['summary']['answers']} answers to "
              f"{evals['summary']['questions']} questions from {len(evals_dirs)} models")
    write_page(args.out, pairs, evals, mode, args.title)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)')
    if args.screenshot:
        from maskdpo_xtuner.view.browser import file_url, screenshot
        width, _, height = args.screenshot_size.partition('x')
        screenshot(file_url(args.out, args.screenshot_at), args.screenshot, int(width),
                   int(height))
        print(f'wrote {args.screenshot}')
    return args.out


if __name__ == '__main__':
    main()
