"""Build the tiny offline model the CPU config trains: a byte-level BPE tokenizer (trained here on
the sample data, Llama-3-style chat template) and a random tiny Llama, saved as a HF folder.

    python tools/build_tiny_model.py --out work_dirs/tiny_cpu/model
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maskdpo_xtuner.tiny import build_tiny_llama, train_bpe_tokenizer  # noqa: E402


def corpus_from(paths):
    for path in paths:
        with open(path, encoding='utf-8') as f:
            for line in f:
                rec = json.loads(line)
                for key in ('prompt', 'chosen', 'rejected'):
                    for msg in rec[key]:
                        yield msg['content']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='work_dirs/tiny_cpu/model')
    p.add_argument('--data', nargs='*', default=['data/sample_pairs.jsonl'],
                   help='JSONL files whose text trains the tokenizer')
    p.add_argument('--vocab-size', type=int, default=800)
    p.add_argument('--hidden-size', type=int, default=64)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    tok = train_bpe_tokenizer(corpus=list(corpus_from(args.data)), vocab_size=args.vocab_size)
    build_tiny_llama(tok, args.out, hidden_size=args.hidden_size, num_layers=args.layers,
                     seed=args.seed)
    print(f'tiny model ({len(tok)} tokens) written to {args.out}')


if __name__ == '__main__':
    main()
