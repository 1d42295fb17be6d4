"""Preference data from elsewhere -> this project's pair records (data/README.md).
    python tools/import_pairs.py --format anah anah/ --out data/anah_pairs.jsonl
    python tools/import_pairs.py --format trl prefs.parquet --out pairs.jsonl pairs.parquet
``--format trl``: rows with prompt / chosen / rejected (strings or chat messages; sentence
labels where a row carries chosen_item / rejected_item). ``--format anah``: a local copy of the
opencompass/anah release. What is read, split, aligned and left out: maskdpo_xtuner/dataset/
formats.py; the same as ``maskdpo-xtuner import-pairs``.
"""
import sys

from maskdpo_xtuner import cli


def main(argv=None) -> int:
    return cli.main(['import-pairs', *(sys.argv[1:] if argv is None else argv)])


if __name__ == '__main__':
    sys.exit(main())
