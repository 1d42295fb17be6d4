"""Benchmark: the training set as Python lists in every rank (today) vs the Arrow cache.

    nice -n 10 python tools/bench_dataset.py                  # 10k and 100k pairs, 8 ranks
    python tools/bench_dataset.py --pairs 2000 --ranks 4 --tokenizer tiny

Data: ``tools/bench_masks.py``'s generated records (English and Chinese, prose and lists, 2 to 8
sentences, sometimes 60 to 90), tokenized with the real Llama-3 tokenizer
(``maskdpo_xtuner/offline/llama3.py``, converted once and saved, so each rank loads it in ~1 s) or the
tiny BPE. Each rank is a separate process, as under torchrun (LOCAL_RANK=0..R-1), and does what a
training rank does with its data: build or open the set, pack it (PackedPairs: every pair's
length) and read its 1/R share of the pairs once (an epoch under DistributedSampler).

* today (``backend='lists'``): every rank tokenizes everything. One rank is run, alone (the R
  ranks do identical work; run at once on this 2-core machine they would only queue).
* Arrow, first start: R processes start together on an empty cache: rank 0 builds with
  ``--num-proc`` tokenizer processes, the others wait and open it.
* Arrow, cached start: R processes start again and open the cache.

Per rank it prints the time to have the dataset (in-process; imports, which a training process
has done already (xtuner imports ``datasets``), and tokenizer loading excluded) and memory from
/proc/self/status after the epoch's read, minus before the build: anonymous memory (RssAnon: the process's own, it adds up over ranks) and file-backed pages
(RssFile: the memory-mapped Arrow file, page cache shared by every rank on the machine and
reclaimable).
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

from maskdpo_xtuner.io.procs import Child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status_kib():
    with open('/proc/self/status') as f:
        fields = dict(line.split(':', 1) for line in f)
    return {k: int(fields[k].split()[0]) for k in ('VmRSS', 'RssAnon', 'RssFile')}


def child(args):
    """One rank: build or open, pack, read this rank's share; print one JSON line."""
    import datasets  # noqa: F401 - what a training process has imported already (xtuner does)
    import pyarrow.compute  # noqa: F401
    import torch.distributed  # noqa: F401
    from mmengine.logging import MMLogger
    from transformers import AutoTokenizer

    from maskdpo_xtuner.dataset import PackedPairs, build_maskdpo_dataset
    from maskdpo_xtuner.dataset import arrow  # noqa: F401
    from maskdpo_xtuner.dataset.packing import pair_lengths
    MMLogger.get_instance('bench')
    tok = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    rank, world = int(os.environ['LOCAL_RANK']), args.ranks
    before = status_kib()
    t0 = time.perf_counter()
    kw = dict(backend='arrow', cache_dir=args.cache, num_proc=args.num_proc) \
        if args.backend == 'arrow' else {}
    ds = build_maskdpo_dataset(args.data, tok, args.max_length, progress=False, **kw)
    ready = time.perf_counter() - t0
    PackedPairs(ds, max_packed_length=16384)
    tokens = 0
    for i in range(rank, len(ds), world):
        item = ds[i]
        tokens += len(item['chosen_ids']) + len(item['rejected_ids'])
    after = status_kib()
    print('RESULT ' + json.dumps({
        'rank': rank, 'pairs': len(ds), 'tokens': sum(pair_lengths(ds)), 'ready_s': ready,
        'epoch_s': time.perf_counter() - t0 - ready, 'tokens_read': tokens,
        **{f'{k}_mib': (after[k] - before[k]) / 1024 for k in before}}), flush=True)


def run_ranks(args, backend, ranks, cache):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false',
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--backend', backend,
           '--data', args.data, '--cache', cache, '--ranks', str(args.ranks),
           '--tokenizer-dir', args.tokenizer_dir, '--max-length', str(args.max_length),
           '--num-proc', str(args.num_proc)]
    t0 = time.perf_counter()
    out = []
    with contextlib.ExitStack() as owned:  # a kill of this bench stops every rank too
        procs = [owned.enter_context(Child(cmd, env=dict(env, LOCAL_RANK=str(r)), text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
                 for r in range(ranks)]
        for p in procs:
            stdout, _ = p.communicate()
            if p.returncode:
                sys.exit(f'a {backend} rank failed ({p.returncode}):\n{stdout}')
            out.append(json.loads(stdout.split('RESULT ', 1)[1]))
    wall = time.perf_counter() - t0
    return out, wall


def prepare(args, n):
    """The generated JSONL (written once per size) and the tokenizer folder."""
    from maskdpo_xtuner.offline.synthetic_pairs import make_records
    os.makedirs(args.out, exist_ok=True)
    args.tokenizer_dir = os.path.join(args.out, f'tokenizer-{args.tokenizer}')
    if not os.path.isdir(args.tokenizer_dir):
        if args.tokenizer == 'llama3':
            from maskdpo_xtuner.offline.llama3 import load_llama3_tokenizer
            load_llama3_tokenizer().save_pretrained(args.tokenizer_dir)
        else:
            from maskdpo_xtuner.offline.tiny import train_bpe_tokenizer
            train_bpe_tokenizer().save_pretrained(args.tokenizer_dir)
    args.data = os.path.join(args.out, f'pairs-{n}.jsonl')
    if not os.path.exists(args.data):
        with open(args.data, 'w', encoding='utf-8') as f:
            for rec in make_records(n, seed=n):
                f.write(json.dumps(rec, ensure_ascii=False) + '\n')


def summary(rows, key):
    vals = [r[key] for r in rows]
    return max(vals) if key == 'ready_s' else sum(vals) / len(vals)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pairs', type=int, nargs='+', default=[10000, 100000])
    p.add_argument('--ranks', type=int, default=8)
    p.add_argument('--num-proc', type=int, default=2, help="rank 0's tokenizing processes")
    p.add_argument('--max-length', type=int, default=1024)
    p.add_argument('--tokenizer', choices=['llama3', 'tiny'], default='llama3')
    p.add_argument('--out', default='/tmp/maskdpo_bench_dataset')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--backend', default='lists', help=argparse.SUPPRESS)
    p.add_argument('--data', help=argparse.SUPPRESS)
    p.add_argument('--cache', help=argparse.SUPPRESS)
    p.add_argument('--tokenizer-dir', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    import shutil
    table = ['| pairs | tokens | run | time to data (s) | anon MiB / rank | file-backed MiB '
             '/ rank | ranks |', '|---|---|---|---|---|---|---|']
    for n in args.pairs:
        prepare(args, n)
        cache = os.path.join(args.out, f'cache-{n}')
        shutil.rmtree(cache, ignore_errors=True)
        today, _ = run_ranks(args, 'lists', 1, cache)
        first, _ = run_ranks(args, 'arrow', args.ranks, cache)
        again, _ = run_ranks(args, 'arrow', args.ranks, cache)
        tokens = today[0]['tokens']
        for name, rows in (('today (lists), each rank', today), ('Arrow, first start', first),
                           ('Arrow, cached start', again)):
            table.append(f"| {n:,} | {tokens:,} | {name} | {summary(rows, 'ready_s'):.2f} | "
                         f"{summary(rows, 'RssAnon_mib'):.1f} | "
                         f"{summary(rows, 'RssFile_mib'):.1f} | {len(rows)} |")
        mem = summary(first, 'RssAnon_mib') / today[0]['RssAnon_mib']
        build = first[0]['ready_s']  # rank 0's
        table.append(f'|  |  | **Arrow / today** | first build {build / today[0]["ready_s"]:.2f}x'
                     f', cached (slowest rank) {summary(again, "ready_s") / build:.3f}x of the '
                     f'first | {mem:.3f}x (mean) |  |  |')
        print('\n'.join(table), flush=True)
        print(json.dumps({'pairs': n, 'today': today, 'first': first, 'cached': again}),
              flush=True)
    return table


if __name__ == '__main__':
    main()
