"""Build the tiny offline model the CPU config trains: a byte-level BPE tokenizer (trained here on
the sample data, Llama-3-style chat template) and a random tiny Llama, saved as a HF folder.

    python tools/build_tiny_model.py --out work_dirs/tiny_cpu/model
"""

from maskdpo_xtuner.offline.tiny import build_tiny_model
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.errors import tool_main


@tool_main
def main(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--out', default='work_dirs/tiny_cpu/model')
    p.add_argument('--data', nargs='*', default=['data/sample_pairs.jsonl'],
                   help='JSONL files whose text trains the tokenizer')
    p.add_argument('--vocab-size', type=int, default=800)
    p.add_argument('--hidden-size', type=int, default=64)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    tok = build_tiny_model(args.out, args.data, vocab_size=args.vocab_size,
                           hidden_size=args.hidden_size, num_layers=args.layers, seed=args.seed)
    print(f'tiny model ({len(tok)} tokens) written to {args.out}')


if __name__ == '__main__':
    main()
