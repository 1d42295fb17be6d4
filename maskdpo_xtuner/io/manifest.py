"""What made a long job's output: a manifest beside it, an exclusive lock on it.

Every resumable output ``OUT`` (sampled responses, annotations, generations, FactScore details,
an evaluation folder) has ``OUT.manifest.json``::

    {"stage": "sample", "settings": {...}, "inputs": {"questions": "sha256:..."},
     "model": {"kind": "weights", "sha256": "...", "files": 7}, "code": {...}}

A job that finds an output with a manifest resumes only if its own manifest is the same
(``settings``, ``inputs`` and the fingerprints of its models); otherwise it refuses, naming each
field that differs. An output without a manifest (written by something else, or an older
version) is refused too: nobody can tell what made it. ``overwrite=True`` (``--overwrite``)
deletes the output and starts again.

Fingerprints (:func:`fingerprint`): a model folder is the sha256 of every file in it (weights,
config, tokenizer; computed once per process and folder state: 0.31 GiB/s measured on the
2-core test machine, so about 50 s for an 8B model in bf16 at each start). A served
model (openai) cannot be seen: its fingerprint is the served name and the model list the
endpoints return, and says so. A backend given as a Python object is known only by its class
(or by its own ``fingerprint()`` method if it has one).

The code version (git commit of this package, or its installed version) is recorded, and a
resume under another code version is *recorded and reported*, not refused: a documentation
commit must not throw away days of sampling, and the manifest's ``code_history`` still says
which code versions wrote the file.

:func:`lock` takes ``OUT.lock`` with ``fcntl.flock``: a second writer of the same output is
refused at once with a message naming the file and the holder's pid; the kernel releases the
lock when the holder exits, even after ``kill -9``.
"""
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from typing import Dict, Optional

INFORMATIONAL = ('code', 'code_history', 'note')  # recorded, not compared
_FOLDER_HASHES: Dict[tuple, dict] = {}


class ManifestMismatch(ValueError):
    """The output was made by another job (other settings, inputs or models)."""


class OutputLocked(ValueError):
    """Another process is writing this output."""


def content_hash(obj) -> str:
    """sha256 of a JSON value in canonical form (sorted keys): the content of parsed inputs."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(',', ':'))
    return 'sha256:' + hashlib.sha256(text.encode('utf-8')).hexdigest()


def hash_file(h, path: str) -> None:
    """Feed a file's bytes to the hashlib object ``h``, a block at a time."""
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 24), b''):
            h.update(block)


def file_hash(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    h = hashlib.sha256()
    hash_file(h, path)
    return 'sha256:' + h.hexdigest()


def folder_fingerprint(folder: str) -> dict:
    """sha256 over (relative name, content) of every non-hidden file under ``folder``."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for n in sorted(names):
            if not n.startswith('.'):
                p = os.path.join(root, n)
                st = os.stat(p)
                files.append((os.path.relpath(p, folder), st.st_size, st.st_mtime_ns))
    key = (os.path.abspath(folder), tuple(files))
    if key not in _FOLDER_HASHES:
        h = hashlib.sha256()
        for rel, _, _ in files:
            h.update(rel.encode('utf-8') + b'\0')
            h.update(file_hash(os.path.join(folder, rel)).encode())
        _FOLDER_HASHES[key] = {'kind': 'weights', 'sha256': h.hexdigest(), 'files': len(files)}
    return dict(_FOLDER_HASHES[key])


def fingerprint(backend) -> Optional[dict]:
    """What can be known of the weights behind a backend, a spec or a factory (see above): an
    object's own ``fingerprint()`` (backends, ``BackendSpec``, ``OnDemand``), else its type."""
    if backend is None:
        return None
    own = getattr(backend, 'fingerprint', None)
    if callable(own):
        return own()
    return {'kind': 'object', 'type': f'{type(backend).__module__}.{type(backend).__qualname__}',
            'note': 'given as a Python object: its weights are not known'}


def code_version() -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(['git', '-C', here, 'rev-parse', 'HEAD'], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ''
    if commit:
        return {'git': commit}
    try:
        from importlib.metadata import version
        return {'version': version('maskdpo-xtuner')}
    except Exception:
        return {'version': 'unknown'}


def _flat(d, prefix=''):
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from _flat(v, f'{prefix}{k}.')
    else:
        yield prefix.rstrip('.'), d


def differences(old: dict, new: dict) -> Dict[str, tuple]:
    """{dotted field: (old, new)} over everything but the informational fields."""
    a = dict(_flat({k: v for k, v in old.items() if k not in INFORMATIONAL}))
    b = dict(_flat({k: v for k, v in new.items() if k not in INFORMATIONAL}))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def manifest_path(out: str) -> str:
    return out + '.manifest.json'


def _short(v) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 80 else s[:77] + '...'


def bind(out: str, job: dict, overwrite: bool = False, path: Optional[str] = None) -> dict:
    """Check ``out`` against ``job`` (see the module docstring) and write its manifest.

    ``path``: the manifest file (default ``OUT.manifest.json``). With ``overwrite``, ``out``
    (a file) and its manifest are deleted first. Returns the manifest written."""
    path = path or manifest_path(out)
    has_output = os.path.isfile(out) and os.path.getsize(out) > 0
    if overwrite:
        for p in (out, path):
            if os.path.isfile(p):
                os.remove(p)
        has_output = False
    code = code_version()
    manifest = {**job, 'code': code, 'code_history': [code]}
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        diff = differences(old, job)
        if diff:
            lines = [f'  {k}: {_short(a)} there, {_short(b)} now' for k, a, b in
                     ((k, *v) for k, v in diff.items())]
            raise ManifestMismatch(
                f'{out} was made by another job ({path}); what differs:\n' + '\n'.join(lines)
                + '\nuse --overwrite (overwrite=True) to start again, or another output')
        history = old.get('code_history', [old.get('code')])
        if code not in history:
            print(f'note: {out} is resumed under another code version {code} '
                  f'(written before by {history}); recorded in {path}', file=sys.stderr)
            history = history + [code]
        manifest['code_history'] = history
    elif has_output:
        raise ManifestMismatch(f'{out} exists but has no manifest ({path}): nothing says what '
                               'made it; use --overwrite (overwrite=True) to start again, or '
                               'another output')
    from maskdpo_xtuner.io.atomic import atomic_file
    with atomic_file(path) as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
    return manifest


def lock(out: str):
    """An exclusive lock on ``out`` (``OUT.lock``), or :class:`OutputLocked`. Returns the open
    lock file; closing it releases the lock."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    f = open(out + '.lock', 'a+')
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or '?'
        f.close()
        raise OutputLocked(f'{out} is being written by another process (pid {holder}, lock '
                           f'{out}.lock): wait for it to finish or stop it; two writers of '
                           'one output would mix their records') from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f
