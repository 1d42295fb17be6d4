"""Files in and out: JSONL reading and resumable writing (jsonl.py), what made an output and
its lock (manifest.py), and the input-validation layer (validate.py)."""
from maskdpo_xtuner.io.jsonl import ResumableJsonlWriter, iter_jsonl, read_jsonl, write_jsonl
from maskdpo_xtuner.io.manifest import hash_file

__all__ = ['read_jsonl', 'iter_jsonl', 'write_jsonl', 'ResumableJsonlWriter', 'hash_file']
