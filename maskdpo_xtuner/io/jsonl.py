"""JSONL reading and resumable JSONL writing, shared by every tool.

A long job (sampling, annotation, evaluation) appends one line per finished item and flushes it;
killed at any point and started again, it reads the keys already written, drops a half-written
last line (and says so; a complete last record that lacks only its newline is kept), and does
only what is missing. So no record is lost or written twice. The writer holds an exclusive lock
on its file and, given a manifest, resumes only the job that made the file
(:mod:`maskdpo_xtuner.io.manifest`).
"""
import json
import os
import sys
from typing import Callable, Iterable, Iterator, List, Optional, Set

from maskdpo_xtuner.io.atomic import atomic_file
from maskdpo_xtuner.io.manifest import bind, lock


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


def write_jsonl(path: str, records: Iterable[dict]) -> None:
    """Write all records at once (atomically: a temporary file, then rename; under the file's
    lock). A temporary left by a killed writer is removed first (maskdpo_xtuner/io/atomic.py)."""
    with lock(path), atomic_file(path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + '\n')


class ResumableJsonlWriter:
    """Append-only output whose finished items are known by key.

    >>> w = ResumableJsonlWriter('out.jsonl', key=lambda r: r['id'])  # doctest: +SKIP
    >>> todo = [q for q in questions if q['id'] not in w.done]         # doctest: +SKIP
    >>> w.write({'id': 3, ...})                                        # doctest: +SKIP
    """

    def __init__(self, path: str, key: Callable[[dict], object],
                 manifest: Optional[dict] = None, overwrite: bool = False):
        """``manifest``: what this job is (:func:`maskdpo_xtuner.io.manifest.bind`): an existing
        file made by another job is refused. ``overwrite``: start the file again."""
        self.path, self.key = path, key
        self._lock = lock(path)  # refused at once if another process writes this file
        try:
            if manifest is not None:
                self.manifest = bind(path, manifest, overwrite)
            elif overwrite and os.path.exists(path):
                os.remove(path)
            self.done: Set = set()
            if os.path.exists(path):
                self._repair_last_line()
                for line, rec in enumerate(iter_jsonl(path), 1):
                    if key(rec) in self.done:
                        raise ValueError(f'{path}: item {key(rec)!r} is written twice (record '
                                         f'{line}): the file was written by two jobs at once')
                    self.done.add(key(rec))
            self._f = open(path, 'a', encoding='utf-8')
        except BaseException:
            self._lock.close()
            raise

    def _repair_last_line(self):
        """Keep a complete last record that lacks only its newline; drop (and report) a torn
        one. A proper prefix of a JSON object never parses as an object, so the two cannot be
        confused."""
        with open(self.path, 'rb+') as f:
            size = f.seek(0, os.SEEK_END)
            pos, tail = size, b''
            while pos > 0 and b'\n' not in tail:  # read back to the last newline
                step = min(1 << 16, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
            cut = tail.rfind(b'\n') + 1
            last = tail[cut:]
            if not last.strip():
                return
            try:
                complete = isinstance(json.loads(last.decode('utf-8')), dict)
            except (UnicodeDecodeError, json.JSONDecodeError):
                complete = False
            if complete:
                f.seek(0, os.SEEK_END)
                f.write(b'\n')
                return
            f.truncate(pos + cut)
            print(f'{self.path}: dropped a torn last line ({len(last)} bytes, '
                  f'{last[:40]!r}...) left by an interrupted write; its item is done again',
                  file=sys.stderr)

    def write(self, rec: dict) -> None:
        k = self.key(rec)
        if k in self.done:
            raise ValueError(f'{self.path}: item {k!r} is already written')
        self._f.write(json.dumps(rec, ensure_ascii=False) + '\n')
        self._f.flush()
        self.done.add(k)

    def close(self):
        self._f.close()
        self._lock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
