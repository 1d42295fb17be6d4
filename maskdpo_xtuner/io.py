"""JSONL reading and resumable JSONL writing, shared by every tool (and a file hasher).

A long job (sampling, annotation, evaluation) appends one line per finished item and flushes it;
killed at any point and started again, it reads the keys already written, drops a half-written
last line, and does only what is missing. So no record is lost or written twice.
"""
import json
import os
from typing import Callable, Iterable, Iterator, List, Set


def read_jsonl(path: str) -> List[dict]:
    return list(iter_jsonl(path))


def iter_jsonl(path: str) -> Iterator[dict]:
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f'{path}:{lineno}: invalid JSON: {e}') from e


def hash_file(h, path: str) -> None:
    """Feed a file's bytes to the hashlib object ``h``, a block at a time."""
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 24), b''):
            h.update(block)


def write_jsonl(path: str, records: Iterable[dict]) -> None:
    """Write all records at once (atomically: a temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + '\n')
    os.replace(tmp, path)


class ResumableJsonlWriter:
    """Append-only output whose finished items are known by key.

    >>> w = ResumableJsonlWriter('out.jsonl', key=lambda r: r['id'])  # doctest: +SKIP
    >>> todo = [q for q in questions if q['id'] not in w.done]         # doctest: +SKIP
    >>> w.write({'id': 3, ...})                                        # doctest: +SKIP
    """

    def __init__(self, path: str, key: Callable[[dict], object]):
        self.path, self.key = path, key
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.done: Set = set()
        if os.path.exists(path):
            self._drop_partial_last_line()
            for rec in iter_jsonl(path):
                self.done.add(key(rec))
        self._f = open(path, 'a', encoding='utf-8')

    def _drop_partial_last_line(self):
        with open(self.path, 'rb+') as f:
            data = f.read()
            if data and not data.endswith(b'\n'):
                f.truncate(data.rfind(b'\n') + 1)

    def write(self, rec: dict) -> None:
        k = self.key(rec)
        if k in self.done:
            raise ValueError(f'{self.path}: item {k!r} is already written')
        self._f.write(json.dumps(rec, ensure_ascii=False) + '\n')
        self._f.flush()
        self.done.add(k)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
