"""Reference log-probs computed once, stored on disk, and refused when stale.

The reference model is frozen, so its per-token log-probs depend on the data alone. With
``ref_logps_cache = 'PATH'`` in a config, ``python tools/precompute_ref_logps.py CONFIG`` runs one
no-grad pass of the reference over every pair and writes them to PATH; training then reads them
(``build_maskdpo_dataset`` attaches them to each pair, ``maskdpo_collate_fn`` batches them) and
``MaskDPO`` never loads the reference model.

The file is keyed by what determines its values, and refused, naming what differs, when any of
them differs from the run that wants to use it:

=============  ==============================================================================
``data``       sha256 of the token ids of every pair, in dataset order (plus one per pair)
``tokenizer``  sha256 of the tokenizer (vocabulary, merges, normalisation) and chat template
``max_length`` the truncation length
``reference``  sha256 of the reference's weight files and ``config.json``, and its dtype
=============  ==============================================================================

Masks are not part of the key: values are stored per token, and the masks (``mask_mode``, the
label mapping, ``separator_tokens`` / ``end_tokens``) are applied later from ``token_class``, so
changing them reuses the same file.

Computing the file is resumable: finished pairs are kept in shards beside it
(:class:`PartialRefLogps`, ``PATH.parts/``, each written atomically), reused by a restart of the
same computation (same data key and reference) and removed once the file is complete.

Stored per sequence: ``len(ids) - 1`` fp32 values, value t = log p(ids[t + 1] | ids[:t + 1]) (0 on
prompt tokens), exactly what the policy's own scoring (``model/logps.py``) returns for that row;
4 bytes per token in total. The pass that computes them is ``model/reference.py``: this file
holds the format, the keys and the checks, and imports nothing from the model or the dataset.
"""
import glob
import hashlib
import json
import os
import shutil
import time
from typing import Dict, List, Sequence

import torch
from mmengine.logging import print_log

from maskdpo_xtuner.io.atomic import atomic_file, remove_stale
from maskdpo_xtuner.io.manifest import hash_file

FORMAT = 1


class StaleRefLogps(ValueError):
    """The cache was computed for other data, tokenizer, max_length or reference weights."""


# ---------------------------------------------------------------------------- fingerprints
def data_key(items: Sequence[dict], tokenizer, max_length: int) -> dict:
    """The data half of the key: what ``build_maskdpo_dataset`` produced, and from what."""
    pairs = [_pair_hash(it) for it in items]
    return {'data': {'sha256': hashlib.sha256(''.join(pairs).encode()).hexdigest(),
                     'pairs': len(pairs), 'pair_sha256': pairs},
            'tokenizer': tokenizer_fingerprint(tokenizer),
            'max_length': int(max_length)}


def _pair_hash(item: dict) -> str:
    h = hashlib.sha256()
    for side in ('chosen_ids', 'rejected_ids'):
        h.update(json.dumps(list(item[side])).encode())
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    if hasattr(tokenizer, 'backend_tokenizer'):  # fast tokenizer: its full definition
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        for call_time_setting in ('padding', 'truncation'):
            spec.pop(call_time_setting, None)
    else:
        spec = sorted(tokenizer.get_vocab().items())
    spec = [spec, getattr(tokenizer, 'chat_template', None), tokenizer.all_special_tokens]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


WEIGHT_FILES = ('.safetensors', '.bin', '.pt', '.pth')


def reference_fingerprint(llm_cfg, dtype) -> dict:
    """The reference half of the key, from the config that loads the reference (not the model:
    training must not load it) and the dtype it really runs in (``precompute_ref_logps``: the
    built model's; training: ``model.maskdpo.resolved_dtype``, never the config's ``None``).
    Hashes every weight file, so expect ~10 s per 16 GB."""
    if not isinstance(llm_cfg, dict) or 'pretrained_model_name_or_path' not in llm_cfg:
        raise ValueError('ref_logps_cache needs the reference as a config dict with '
                         f'pretrained_model_name_or_path, got {type(llm_cfg).__name__}')
    name = str(llm_cfg['pretrained_model_name_or_path'])
    folder = name if os.path.isdir(name) else _local_snapshot(name, llm_cfg.get('revision'))
    files = sorted(f for f in os.listdir(folder)
                   if f.endswith(WEIGHT_FILES) or f == 'config.json')
    if not any(f.endswith(WEIGHT_FILES) for f in files):
        raise ValueError(f'no weight files ({", ".join(WEIGHT_FILES)}) in {folder}')
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode())
        hash_file(h, os.path.join(folder, f))
    return {'path': name, 'weights_sha256': h.hexdigest(),
            'torch_dtype': str(dtype)}


def _local_snapshot(repo_id, revision):
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means: cannot fingerprint
        raise ValueError(f'cannot find the weights of {repo_id!r} locally to fingerprint them '
                         f'for ref_logps_cache: {e}') from e


# ---------------------------------------------------------------------------- file
def _save_atomic(obj, path: str):
    """torch.save to a temporary file renamed over ``path``; the temporary is removed on any
    failure, and leftovers of killed writers (``path.tmp<pid>``) are removed first."""
    remove_stale(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_ref_logps(path: str, logps: Dict[int, tuple], key: dict, reference: dict):
    """Write the cache atomically: one flat fp32 tensor, per-sequence offsets, and the key."""
    missing = [i for i in range(key['data']['pairs']) if i not in logps]
    if missing:
        raise ValueError(f'{path}: reference log-probs missing for {len(missing)} pairs '
                         f'(first: #{missing[0]}); not written')
    rows = [logps[i][k] for i in range(len(logps)) for k in (0, 1)]
    offsets = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)
    meta = dict(key, reference=reference, format=FORMAT,
                created=time.strftime('%Y-%m-%d %H:%M:%S'))
    _save_atomic({'meta': meta, 'logps': torch.cat(rows).float(), 'offsets': offsets}, path)


class PartialRefLogps:
    """The pairs already computed for the cache ``path``, kept in ``path.parts/`` as shards.

    A shard holds ``{pair index: (chosen, rejected)}``; ``key.json`` there says which data and
    reference they belong to. Opened with another key, the old shards are removed (and said
    so); an unreadable shard (a writer killed mid-save never leaves one: saves are atomic) is
    reported and recomputed."""

    def __init__(self, path: str, key: dict, reference: dict, rank: int = 0):
        self.dir, self.rank, self.count = path + '.parts', rank, 0
        ident = {'data': key['data']['sha256'], 'tokenizer': key['tokenizer'],
                 'max_length': key['max_length'], 'reference': reference}
        keyfile = os.path.join(self.dir, 'key.json')
        if os.path.exists(keyfile):
            with open(keyfile, encoding='utf-8') as f:
                if json.load(f) != ident:
                    print(f'{self.dir}: shards of another computation (data or reference '
                          'changed): removed', flush=True)
                    shutil.rmtree(self.dir, ignore_errors=True)
        if rank == 0 and not os.path.exists(keyfile):
            os.makedirs(self.dir, exist_ok=True)
            with atomic_file(keyfile) as f:
                json.dump(ident, f)

    def done(self) -> Dict[int, tuple]:
        """Every pair in a readable shard (of any rank)."""
        out = {}
        for shard in sorted(glob.glob(os.path.join(self.dir, 'shard-*.pt'))):
            try:
                out.update(torch.load(shard, map_location='cpu', weights_only=True))
            except Exception as e:  # noqa: BLE001 - unreadable: recompute its pairs
                print(f'{shard}: unreadable ({type(e).__name__}), its pairs are recomputed',
                      flush=True)
        return out

    def add(self, logps: Dict[int, tuple]):
        """Keep a batch of finished pairs (atomically)."""
        os.makedirs(self.dir, exist_ok=True)
        name = f'shard-r{self.rank}-{os.getpid()}-{self.count:06d}.pt'
        self.count += 1
        _save_atomic(logps, os.path.join(self.dir, name))

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def load_ref_logps(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(
            f'no reference log-probs at {path} (ref_logps_cache): compute them first with '
            '`python tools/precompute_ref_logps.py CONFIG`, or set ref_logps_cache = None to '
            'run the reference model online')
    try:
        cache = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or not a torch file
        raise StaleRefLogps(f'{path}: cannot read the reference log-prob cache (truncated or '
                            f'corrupt? {type(e).__name__}: {e}); recompute it with `python '
                            'tools/precompute_ref_logps.py CONFIG`') from e
    if not isinstance(cache, dict) or cache.get('meta', {}).get('format') != FORMAT:
        raise StaleRefLogps(f'{path}: not a reference log-prob cache of format {FORMAT}')
    return cache


# ---------------------------------------------------------------------------- use
def attach_ref_logps(items: List[dict], path: str, tokenizer, max_length: int):
    """Check the cache against this data and add ``chosen_ref_logps`` / ``rejected_ref_logps``
    to every item (the dataset side of ``ref_logps_cache``)."""
    flat, offsets = checked_ref_logps(items, path, tokenizer, max_length)
    for i, item in enumerate(items):
        item.update(ref_logps_of(flat, offsets, i))


def ref_logps_of(flat, offsets: List[int], i: int) -> dict:
    """Pair ``i``'s ``chosen_ref_logps`` and ``rejected_ref_logps`` from the checked cache."""
    return {f'{side}_ref_logps': flat[offsets[2 * i + k]:offsets[2 * i + k + 1]].clone()
            for k, side in enumerate(('chosen', 'rejected'))}


def checked_ref_logps(items: Sequence[dict], path: str, tokenizer, max_length: int):
    """The cache's (flat fp32 tensor, offsets) once checked against ``items`` (any sequence
    of tokenized pairs: a list, or the Arrow dataset read row by row)."""
    cache = load_ref_logps(path)
    meta, now = cache['meta'], data_key(items, tokenizer, max_length)
    diffs = []
    if meta['max_length'] != now['max_length']:
        diffs.append(f"max_length: cache {meta['max_length']}, this run {now['max_length']}")
    if meta['tokenizer'] != now['tokenizer']:
        diffs.append(f"tokenizer: cache {meta['tokenizer'][:12]}, this run "
                     f"{now['tokenizer'][:12]} (sha256 of vocabulary, merges, chat template)")
    if meta['data']['sha256'] != now['data']['sha256']:
        old, new = meta['data']['pair_sha256'], now['data']['pair_sha256']
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old),
                                                                                     len(new)))
        diffs.append(f'data: cache {len(old)} pairs, this run {len(new)}; token ids first '
                     f'differ at pair #{first}')
    _refuse_if(diffs, path, meta)
    offsets, flat = cache['offsets'].tolist(), cache['logps']
    if len(offsets) != 2 * len(items) + 1 or offsets[-1] != len(flat):
        raise StaleRefLogps(f'{path}: damaged: {len(offsets) - 1} rows and {len(flat)} values '
                            f'for {len(items)} pairs; recompute it')
    for i in range(len(items)):
        item = items[i]
        for k, side in enumerate(('chosen', 'rejected')):
            n = offsets[2 * i + k + 1] - offsets[2 * i + k]
            if n != len(item[f'{side}_ids']) - 1:
                raise StaleRefLogps(f'{path}: pair #{i} {side}: {n} values for '
                                    f"{len(item[f'{side}_ids'])} tokens (expected one less); "
                                    'the file is damaged or not from this data: recompute it')
    print_log(f'Reference log-probs: read {len(items)} pairs from {path} '
              f"(computed {meta['created']} with {meta['reference']['path']})", logger='current')
    return flat, offsets


def check_reference(path: str, llm_cfg, dtype) -> dict:
    """The model side of ``ref_logps_cache``: the cache was computed with these weights, in
    this dtype."""
    meta = load_ref_logps(path)['meta']
    now = reference_fingerprint(llm_cfg, dtype)
    cached = meta['reference']
    diffs = [f'reference {k}: cache {cached[k]}, this run {now[k]} ({now["path"]})'
             for k in ('weights_sha256', 'torch_dtype') if cached[k] != now[k]]
    _refuse_if(diffs, path, meta)
    return meta


def _refuse_if(diffs, path, meta):
    if diffs:
        raise StaleRefLogps(
            f'reference log-probs in {path} (computed {meta["created"]}) do not match this run '
            'and were not used:\n  ' + '\n  '.join(diffs) + '\nRecompute them with `python '
            'tools/precompute_ref_logps.py CONFIG` (or point ref_logps_cache at a new file).')
