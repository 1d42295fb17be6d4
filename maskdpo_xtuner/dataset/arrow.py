"""The training set as a memory-mapped Arrow ``datasets.Dataset``, built once for all ranks.

``build_maskdpo_dataset(..., backend='arrow', cache_dir=DIR)`` (builder.py) comes here:

1. The key: sha256 of the data files' bytes (or, for a Hub dataset, its ``datasets``
   fingerprint), the tokenizer (``ref_logps.tokenizer_fingerprint``), ``max_length``, the
   filters, ``on_error``, the ``dataset_map_fn``'s source and the source of the code that makes
   the items (``CODE_FILES``). The built set lives in ``DIR/<key>/``.
2. Rank 0 (``LOCAL_RANK``, else ``torch.distributed``'s, else ``RANK``) builds it if
   that folder does not exist: raw records -> ``map(num_proc=...)`` running the same per-record
   code as the list backend (``validate_record``, ``tokenize_pair``, ``filter_reason``) ->
   int32 ids and labels, int8 token classes -> ``save_to_disk`` into
   ``DIR/.building-<key>-<host>-<pid>``, then one ``rename``: a killed build leaves only a
   ``.building-*`` folder, which nothing reads, and which the next build on that machine
   removes once its process is gone. The ``num_proc`` workers (and the manager ``datasets``
   forks beside them) die with the process that forked them, even after a SIGKILL
   (``prctl(PR_SET_PDEATHSIG)`` and a watchdog: maskdpo_xtuner/io/procs.py).
   The other ranks wait for the folder (or for rank 0's ``<key>.failed`` note) and open it.
3. Every start logs the read report stored with the set (``report.json``).

Sources: JSONL files (``data_files``, or ``source=dict(path='json', data_files=...)``) are read
line by line as the list backend reads them, so errors name file, line and field and the items
are identical. Any other ``datasets.load_dataset`` source (``source=dict(path='parquet', ...)``,
a local folder, a Hub name) is loaded by ``datasets`` and its rows numbered from 1 in errors.

Longer than 400 lines: the key, the build, the rank protocol and the reader belong together.
"""
import contextlib
import hashlib
import inspect
import json
import os
import re
import shutil
import socket
import time
from collections import Counter
from typing import Callable, Optional, Sequence

from mmengine.logging import print_log
from torch.utils.data import Dataset

from maskdpo_xtuner.io.atomic import atomic_file, stale_owner
from maskdpo_xtuner.io.manifest import hash_file
from maskdpo_xtuner.io.procs import die_with_parent, guard_forks
from maskdpo_xtuner.io.validate import iter_text_lines
from maskdpo_xtuner.dataset.ref_logps import checked_ref_logps, ref_logps_of, tokenizer_fingerprint
from maskdpo_xtuner.dataset.records import ReadReport, RecordError, _apply, validate_record
from maskdpo_xtuner.labels import UNLABELLED
from maskdpo_xtuner.dataset.tokenize import tokenize_pair
from maskdpo_xtuner.dataset.filters import check_filters, filter_reason, log_report, make_report

FORMAT = 1
HERE = os.path.dirname(os.path.abspath(__file__))
CODE_FILES = [os.path.join(HERE, f) for f in ('records.py', 'tokenize.py', 'filters.py', 'builder.py',
                                              'arrow.py')] + [
    os.path.join(os.path.dirname(HERE), 'labels.py')]
SIDES = ('chosen', 'rejected')
_STARTED = time.time()


def features():
    from datasets import Features, Sequence as Seq, Value
    cols = {f'{side}_{k}': Seq(Value('int8' if k == 'token_class' else 'int32'))
            for side in SIDES for k in ('ids', 'labels', 'token_class')}
    cols.update(prompt_tokens=Value('int32'), source=Value('string'), _status=Value('string'),
                _field=Value('string'), _message=Value('string'), _loose=Value('int32'))
    return Features(cols)


# ---------------------------------------------------------------------------- one record
def encode(raw, source: str, line: int, tokenizer, max_length: int, filters, map_fn, parse):
    """One raw record -> one row: the item, or why it was dropped (``_status`` is '' for a
    kept pair, 'invalid:REASON' or 'filtered:REASON'). Runs inside ``Dataset.map``."""
    row = {f'{side}_{k}': [] for side in SIDES for k in ('ids', 'labels', 'token_class')}
    row.update(prompt_tokens=0, source=f'{source}:{line}', _status='', _field='', _message='',
               _loose=0)
    try:
        if isinstance(raw, RecordError):  # not UTF-8, a line over the limit
            raise raw
        rec = _parse_json(raw) if parse else raw
        if map_fn is not None:
            rec = _apply(map_fn, rec)
        pair = validate_record(rec)
    except RecordError as err:
        row.update(_status=f'invalid:{err.reason}', _field=err.field, _message=err.message)
        return row
    item = tokenize_pair(tokenizer, pair, max_length)
    reason = filter_reason(pair, item, max_length, filters)
    row['_loose'] = pair.loose_matches
    if reason:
        row['_status'] = f'filtered:{reason}'
        return row
    row.update(item)
    return row


def _parse_json(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError('bad_json', '<line>', f'invalid JSON: {e}')


def _encode_row(row, idx, source_name, owner=None, **kw):
    """``map`` adapter: JSONL rows are (source, line, text); others are the record itself.
    In a worker forked by ``map(num_proc=...)`` (its pid is not ``owner``'s), the worker is
    first bound to die with its parent."""
    if owner is not None and os.getpid() != owner:
        die_with_parent(owner)
    if source_name is None:
        reason, _, message = row['error'].partition('\t')
        raw = RecordError(reason, '<line>', message) if reason else row['text']
        return encode(raw, row['source'], row['line'], parse=True, **kw)
    return encode(dict(row), source_name, idx + 1, parse=False, **kw)


# ---------------------------------------------------------------------------- sources
def _jsonl_files(data_files, source):
    """The JSONL paths to read line by line, or None for a generic ``load_dataset`` source."""
    if source is None:
        return [data_files] if isinstance(data_files, str) else list(data_files)
    files = source.get('data_files')
    if source.get('path') == 'json' and set(source) <= {'path', 'data_files', 'split'}:
        files = [files] if isinstance(files, str) else files
        if isinstance(files, (list, tuple)) and all(str(f).endswith('.jsonl') for f in files):
            return list(files)
    return None


def _lines(paths):
    """The raw lines, as the list backend reads them (maskdpo_xtuner/io/validate.py): a line
    that is not UTF-8 or is over the line limit becomes an error the map reports."""
    for path in paths:
        for lineno, line in iter_text_lines(path):
            bad = isinstance(line, RecordError)
            yield {'source': path, 'line': lineno, 'text': '' if bad else line,
                   'error': f'{line.reason}\t{line.message}' if bad else ''}


def _raw_dataset(files, source, work: str):
    import datasets
    if files is not None:
        for path in files:  # an unreadable or empty file: named here, not inside datasets
            next(iter_text_lines(path))
        return datasets.Dataset.from_generator(_lines, gen_kwargs={'paths': files},
                                               cache_dir=work)
    kw = dict(source)
    kw.setdefault('split', 'train')
    return datasets.load_dataset(**kw)


def _local_files(source) -> Optional[list]:
    """Every local file a ``load_dataset`` source reads, or None when it is not all local."""
    found = []
    for key in ('data_files', 'data_dir', 'path'):
        val = source.get(key)
        vals = list(val.values()) if isinstance(val, dict) else val
        for v in ([vals] if isinstance(vals, str) else vals or []):
            for p in ([v] if isinstance(v, str) else v):
                if os.path.isdir(p):
                    found += [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs]
                elif os.path.isfile(p):
                    found.append(p)
                elif key != 'path':
                    return None
    return sorted(found) or None


# ---------------------------------------------------------------------------- the key
def cache_key(files, source, tokenizer, max_length, filters, on_error, map_fn,
              cache_dir) -> dict:
    data = {}
    local = files if files is not None else _local_files(source)
    if local is not None:
        for path in local:
            h = hashlib.sha256()
            hash_file(h, path)
            data[path] = h.hexdigest()  # the path too: items name it in 'source'
    else:  # a Hub dataset: datasets' own fingerprint of what it downloaded
        data['fingerprint'] = _raw_dataset(None, source, '')._fingerprint
    code = hashlib.sha256()
    for path in CODE_FILES:
        hash_file(code, path)
    return {'format': FORMAT, 'data': data,
            'source': None if source is None else json.dumps(source, sort_keys=True,
                                                             default=str),
            'tokenizer': _tokenizer_id(tokenizer, cache_dir), 'max_length': int(max_length),
            'filters': sorted(filters), 'on_error': on_error,
            'dataset_map_fn': _function_id(map_fn), 'code': code.hexdigest()}


def _tokenizer_id(tokenizer, cache_dir: str) -> str:
    """``tokenizer_fingerprint`` (the one ``ref_logps_cache`` checks), remembered in
    ``cache_dir/.tokenizers/`` under the sha256 of the tokenizer's raw serialization: computing
    it parses and re-sorts the whole vocabulary (~5 s for Llama-3's), hashing the raw text takes
    ~0.6 s, so a cached start does not pay for the parse again."""
    if not hasattr(tokenizer, 'backend_tokenizer'):
        return tokenizer_fingerprint(tokenizer)
    raw = json.dumps([tokenizer.backend_tokenizer.to_str(), tokenizer.chat_template,
                      tokenizer.all_special_tokens])
    memo = os.path.join(cache_dir, '.tokenizers', hashlib.sha256(raw.encode()).hexdigest())
    if not os.path.exists(memo):
        with atomic_file(memo) as f:
            f.write(tokenizer_fingerprint(tokenizer))
    with open(memo) as f:
        return f.read().strip()


def _function_id(fn):
    if fn is None:
        return None
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        from datasets.fingerprint import Hasher
        src = Hasher.hash(fn)
    return f'{getattr(fn, "__module__", "")}.{getattr(fn, "__qualname__", "")}:' \
           + hashlib.sha256(src.encode()).hexdigest()[:16]


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def build_rank() -> int:
    """Which rank builds: LOCAL_RANK when the launcher sets it (torchrun, mmengine's slurm
    launcher), so each node's first rank builds when cache_dir is node-local and the rename
    settles the race when it is shared; else torch.distributed's rank, else RANK."""
    import torch.distributed as dist
    if 'LOCAL_RANK' in os.environ:
        return int(os.environ['LOCAL_RANK'])
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get('RANK', 0))


# ---------------------------------------------------------------------------- build or open
def build_arrow_dataset(data_files, tokenizer, max_length: int = 1024,
                        dataset_map_fn: Optional[Callable] = None, on_error: str = 'raise',
                        filters: Sequence[str] = (), progress: bool = True,
                        ref_logps_cache: Optional[str] = None, cache_dir: Optional[str] = None,
                        num_proc: int = 1, source: Optional[dict] = None,
                        wait_timeout: float = 6 * 3600) -> 'ArrowPairs':
    """Open (or, on rank 0, first build) the cached Arrow training set; see the module
    docstring. Arguments as ``build_maskdpo_dataset``'s."""
    if on_error not in ('raise', 'skip'):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not cache_dir:
        raise ValueError("backend='arrow' needs cache_dir (a folder every rank can read)")
    if (data_files is None) == (source is None):
        raise ValueError('give either data_files (JSONL) or source (load_dataset arguments)')
    check_filters(filters)
    files = _jsonl_files(data_files, source)
    key = cache_key(files, source, tokenizer, max_length, filters, on_error, dataset_map_fn,
                    cache_dir)
    final = os.path.join(cache_dir, digest(key))
    failed = f'{final}.failed'
    t0 = time.perf_counter()
    if os.path.isdir(final):
        how = 'opened the cache'
    elif build_rank() == 0:
        try:
            _build(final, key, files, source, tokenizer, max_length, filters, on_error,
                   dataset_map_fn, num_proc, progress)
        except BaseException as e:
            _note_failure(failed, e)
            raise
        how = f'built it with {num_proc} process(es)'
    else:
        _wait(final, failed, wait_timeout)
        how = 'waited for rank 0 to build it'
    ds = ArrowPairs.open(final, tokenizer, max_length)
    log_report(ds.report)
    print_log(f'Mask-DPO data (Arrow): {final} ({how}, {time.perf_counter() - t0:.1f} s)',
              logger='current')
    if ref_logps_cache:
        ds.attach_ref_logps(ref_logps_cache)
    return ds


def _build(final, key, files, source, tokenizer, max_length, filters, on_error, map_fn,
           num_proc, progress):
    import datasets
    if os.path.exists(f'{final}.failed'):
        os.remove(f'{final}.failed')
    remove_dead_builds(os.path.dirname(final))
    work = (f'{os.path.dirname(final)}/.building-{os.path.basename(final)}-'
            f'{socket.gethostname()}-{os.getpid()}')
    scratch = os.path.join(work, 'scratch')  # the raw rows and map's shards
    os.makedirs(scratch)
    bars = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        raw = _raw_dataset(files, source, os.path.join(scratch, 'raw'))
        kw = dict(tokenizer=tokenizer, max_length=max_length, filters=tuple(filters),
                  map_fn=map_fn, source_name=None if files is not None else
                  str(source.get('path')), owner=os.getpid() if num_proc > 1 else None)
        with guard_forks() if num_proc > 1 else contextlib.nullcontext():
            rows = raw.map(_encode_row, with_indices=True, fn_kwargs=kw, features=features(),
                           remove_columns=raw.column_names, num_proc=num_proc if num_proc > 1
                           else None, cache_file_name=os.path.join(scratch, 'mapped.arrow'),
                           new_fingerprint=digest(key) + 'm', desc='tokenizing pairs')
        report = _report(rows, on_error)
        kept = rows.filter(lambda s: s == '', input_columns='_status',
                           cache_file_name=os.path.join(scratch, 'kept.arrow'),
                           new_fingerprint=digest(key) + 'k')
        kept = kept.remove_columns(['_status', '_field', '_message', '_loose'])
        if not len(kept):
            raise ValueError(f'no training pairs left from {files or source}: {report}')
        kept.save_to_disk(os.path.join(work, 'data'))
        del raw, rows, kept
        _remove(scratch)
        for name, obj in (('report.json', report), ('key.json', key)):
            with open(os.path.join(work, name), 'w') as f:
                json.dump(obj, f, indent=1, sort_keys=True)
        try:
            os.rename(work, final)  # atomic: the folder exists only once complete
        except OSError:
            if not os.path.isdir(final):  # not "another node finished first"
                raise
    finally:
        if bars:
            datasets.enable_progress_bars()
        _remove(work)  # nothing is left when the rename happened; a failed build's scratch


_BUILDING = re.compile(r'^\.building-[0-9a-f]+-(?:(.+)-)?(\d+)$')


def remove_dead_builds(cache_dir: str) -> list:
    """Remove the ``.building-<key>-<host>-<pid>`` folders of builds that ran on this machine
    and whose process is gone (killed); a build still running, or on another machine sharing
    the folder, is left alone. Returns the folders removed."""
    removed = []
    for name in os.listdir(cache_dir) if os.path.isdir(cache_dir) else []:
        m = _BUILDING.match(name)  # .building-<key>-<host>-<pid> (or the older -<pid>)
        if m and stale_owner(int(m.group(2)), m.group(1)):
            shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)
            removed.append(name)
    if removed:
        print_log(f'removed {len(removed)} folder(s) of killed dataset builds in {cache_dir}: '
                  f'{removed}', logger='current')
    return removed


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def _report(rows, on_error: str) -> dict:
    """The list backend's report from the map's status columns; with on_error='raise', the
    first bad record (in file order) raised as the list backend raises it."""
    cols = rows.select_columns(['source', '_status', '_field', '_message', '_loose',
                                'chosen_token_class', 'rejected_token_class'])
    read, dropped, unlabelled = ReadReport(), Counter(), 0
    for batch in cols.iter(batch_size=10000):
        for src, status, fld, msg, loose, c_cls, r_cls in zip(*batch.values()):
            kind, _, reason = status.partition(':')
            if kind == 'invalid':
                path, _, line = src.rpartition(':')
                err = RecordError(reason, fld, msg, path, int(line))
                if on_error == 'raise':
                    raise err
                read.drop(err)
                continue
            read.kept += 1
            read.loose_matches += loose
            unlabelled += c_cls.count(UNLABELLED) + r_cls.count(UNLABELLED)
            if kind == 'filtered':
                dropped[reason] += 1
    return make_report(read, dropped, read.kept - sum(dropped.values()), None, unlabelled)


def _note_failure(failed: str, e: BaseException):
    with contextlib.suppress(OSError):  # the build's own error is the one to raise
        with atomic_file(failed) as f:
            f.write(f'{type(e).__name__}: {e}')


def _wait(final: str, failed: str, timeout: float):
    start, last_log = time.time(), 0.0
    while not os.path.isdir(final):
        if os.path.exists(failed) and os.path.getmtime(failed) >= _STARTED:
            with open(failed) as f:
                raise RuntimeError(f'rank 0 failed to build the dataset {final}: {f.read()}')
        if time.time() - start > timeout:
            raise TimeoutError(f'waited {timeout:.0f} s for rank 0 to build {final}')
        if time.time() - last_log > 60:
            print_log(f'waiting for rank 0 to build the dataset {final}', logger='current')
            last_log = time.time()
        time.sleep(0.5)


# ---------------------------------------------------------------------------- the dataset
class ArrowPairs(Dataset):
    """Tokenized pairs read from a memory-mapped Arrow folder: item ``i`` is the dict the list
    backend holds (Python lists of ints), plus its reference log-probs when attached."""

    def __init__(self, data, report: dict, tokenizer=None, max_length: Optional[int] = None):
        self.data, self.report = data, report
        self.tokenizer, self.max_length = tokenizer, max_length
        self._ref = None

    @classmethod
    def open(cls, folder: str, tokenizer=None, max_length=None) -> 'ArrowPairs':
        import datasets
        with open(os.path.join(folder, 'report.json')) as f:
            report = json.load(f)
        return cls(datasets.load_from_disk(os.path.join(folder, 'data')), report, tokenizer,
                   max_length)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        if not -len(self) <= idx < len(self):
            raise IndexError(idx)
        item = self.data[int(idx) % len(self)]
        if self._ref is not None:
            item.update(ref_logps_of(*self._ref, int(idx) % len(self)))
        return item

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def pair_lengths(self):
        """Tokens per pair (chosen + rejected), from the Arrow offsets (no rows are built)."""
        import pyarrow.compute as pc
        table = self.data.data
        lens = [pc.list_value_length(table.column(f'{s}_ids')).to_numpy() for s in SIDES]
        return (lens[0] + lens[1]).tolist()

    def attach_ref_logps(self, path: str):
        """Check the reference log-prob cache against these pairs; items then carry them."""
        self._ref = checked_ref_logps(self, path, self.tokenizer, self.max_length)
