"""Training-step benchmark: XTuner's DPO vs MaskDPO (online reference, cached, chunked head).

    python tools/bench_train.py                       # ~70M-parameter Llama, 128k vocabulary, CPU
    python tools/bench_train.py --pairs 2 --steps 3 --long-pairs 0   # quicker, no long setting

One run, same data, same weights, same batch for all four:

* (a) XTuner 0.2.0's stock ``DPO`` (only its CPU crash patched): reference forward every step,
  full-vocabulary ``log_softmax`` of the policy and of the reference;
* (b) ``MaskDPO``, online reference: lean log-probs (fp32 logsumexp by chunks), reference first;
* (c) ``MaskDPO`` with ``ref_logps_cache``: reference log-probs precomputed once (timed apart),
  no reference model in memory;
* (d) as (c) with ``chunked_lm_head=True``: log-probs straight from the last hidden state, the LM
  head applied by chunks of labelled positions and recomputed in backward, so the
  ``[batch, length, vocabulary]`` logits and their gradient never exist. (b) and (c) run with
  ``chunked_lm_head=False``, the way they ran before (d) existed.

Then a long setting (``--long-pairs`` pairs x 2 x ``--long-length`` tokens, responses long
enough to fill it) for ``--long-variants`` (default (c) and (d): (a) holds several copies of the
logits, ~35 GB at 4 x 2 x 2,048 tokens in fp32). There each variant first runs one step with 1
and with 2 pairs; the line (memory is linear in the pairs at a fixed length) through the
peaks at 2 pairs and at the timed run's pairs gives the largest number of
pairs per step within ``--budget-gb`` (at 1 pair a fixed floor, weights and optimizer state,
can hide the activations). A timed run whose predicted peak exceeds the memory the machine
has available is not started: the long setting then uses fewer pairs and says so.

The model is a random Llama (``--hidden``, ``--layers``) with the real Llama-3 tokenizer's
128,256-token vocabulary, so the LM head dominates as in an 8B model's logits; data from
``tools/bench_masks.py``'s generator with every '!' replaced by '.' (XTuner's DPO drops label id
0, which is '!', and then its loss would differ for that reason alone); ``mask_mode='none'``,
so all three compute the same loss. The policy is the reference plus noise, so step-1 losses
are not trivially log 2. Each variant runs in its own process; peak memory is the process's
resident-set high-water mark (``VmHWM``) over the training steps, reset after the model is
built (``/proc/self/clear_refs``), so it includes weights, gradients and AdamW state.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VARIANTS = {'a': "XTuner DPO (stock)", 'b': 'MaskDPO, online reference',
            'c': 'MaskDPO, cached reference', 'd': 'MaskDPO, cached + chunked head'}


def prepare_models(args, tmp):
    """Reference and policy weights in ``tmp``; returns (parameters, vocabulary, tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from maskdpo_xtuner.offline.llama3 import load_llama3_tokenizer
    tok = load_llama3_tokenizer()
    torch.manual_seed(args.seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=args.hidden,
                         intermediate_size=args.hidden * 11 // 4, num_hidden_layers=args.layers,
                         num_attention_heads=args.hidden // 64,
                         num_key_value_heads=args.hidden // 64,
                         max_position_embeddings=max(2048, args.long_length),
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, torch_dtype='float32')
    model = LlamaForCausalLM(config)
    model.save_pretrained(os.path.join(tmp, 'ref'))
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(os.path.join(tmp, 'policy'))
    return n_params, len(tok), tok


def records(n, max_length, seed):
    """``tools/bench_masks.py``'s pairs, '!' replaced by '.'; for a long setting each response
    is the responses of several pairs joined, enough to fill ``max_length`` tokens."""
    from maskdpo_xtuner.offline.synthetic_pairs import make_records
    recs = json.loads(json.dumps(make_records(n * 40, seed)).replace('!', '.'))
    if max_length <= 512:
        return recs[:n]
    out = []
    for group in range(n):
        parts = recs[group * 40:(group + 1) * 40]
        rec = {'prompt': parts[0]['prompt']}
        for side in ('chosen', 'rejected'):
            rec[side] = [{'role': 'assistant', 'content': '\n\n'.join(
                r[side][0]['content'] for r in parts)}]
            rec[f'{side}_item'] = {k: sum((r[f'{side}_item'][k] for r in parts), [])
                                   for k in ('sents', 'type')}
        out.append(rec)
    return out


def prepare_data(tok, pairs, max_length, seed, folder):
    """Tokenized pairs and their reference cache in ``folder``; returns facts about the batch."""
    import torch
    from transformers import LlamaForCausalLM

    from maskdpo_xtuner.dataset import tokenize_pair, validate_record
    from maskdpo_xtuner.model.reference import compute_ref_logps
    from maskdpo_xtuner.dataset.ref_logps import (attach_ref_logps, data_key, reference_fingerprint,
                                                  save_ref_logps)
    os.makedirs(folder)
    tmp = os.path.dirname(folder)
    items = [tokenize_pair(tok, validate_record(r), max_length)
             for r in records(pairs, max_length, seed)]
    assert not any(0 in it[f'{s}_labels'] for it in items for s in ('chosen', 'rejected'))
    t0 = time.perf_counter()
    model = LlamaForCausalLM.from_pretrained(os.path.join(tmp, 'ref'), torch_dtype=torch.float32)
    logps = compute_ref_logps(model.eval(), items, batch_size=pairs, progress=False)
    cache = os.path.join(folder, 'ref_logps.pt')
    save_ref_logps(cache, logps, data_key(items, tok, max_length),
                   reference_fingerprint(llm_cfg(os.path.join(tmp, 'ref')), torch.float32))
    precompute_s = time.perf_counter() - t0
    torch.save(items, os.path.join(folder, 'items.pt'))
    cached = [dict(it) for it in items]
    attach_ref_logps(cached, cache, tok, max_length)
    torch.save(cached, os.path.join(folder, 'items_cached.pt'))
    lengths = [len(it[f'{s}_ids']) for it in items for s in ('chosen', 'rejected')]
    labelled = sum(sum(1 for x in it[f'{s}_labels'] if x != -100)
                   for it in items for s in ('chosen', 'rejected'))
    return {'tokens': sum(lengths), 'padded': len(lengths) * max(lengths), 'labelled': labelled,
            'precompute_s': precompute_s, 'max_length': max_length, 'pairs': pairs}


def llm_cfg(path):
    import torch
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                      pretrained_model_name_or_path=path, torch_dtype=torch.float32)


def vm(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def child(args):
    """Build one variant, run warm-up + timed optimizer steps on the same batch, print JSON."""
    import torch
    from xtuner.model.dpo import DPO

    from maskdpo_xtuner.dataset import maskdpo_collate_fn
    from maskdpo_xtuner.model import MaskDPO
    from maskdpo_xtuner.model.maskdpo import _prepare_attn_cpu_safe
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = os.path.dirname(args.data)
    policy, ref = llm_cfg(os.path.join(tmp, 'policy')), llm_cfg(os.path.join(tmp, 'ref'))
    cached = args.child in 'cd'
    if args.child == 'a':
        class CpuDPO(DPO):  # the only change: XTuner's CPU crash (see tests/model/test_model.py)
            _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)
        model = CpuDPO(policy, ref_llm=ref, use_activation_checkpointing=False)
    else:
        model = MaskDPO(policy, ref_llm=ref, mask_mode='none', use_activation_checkpointing=False,
                        ref_logps_cache=os.path.join(args.data, 'ref_logps.pt') if cached
                        else None, chunked_lm_head=args.child == 'd')
    items = torch.load(os.path.join(args.data, 'items_cached.pt' if cached else 'items.pt'),
                       weights_only=False)[:args.use_pairs or None]
    batch = maskdpo_collate_fn(items)['data']
    if args.child == 'a':
        batch.pop('token_class')
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    has_ref = getattr(model, 'ref_llm', None) is not None
    try:  # reset the resident-set high-water mark: measure the steps, weights included
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        reset = True
    except OSError:
        reset = False
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        out = model.compute_loss({k: v.clone() for k, v in batch.items()})
        loss = out['loss'].mean()  # XTuner's DPO returns one loss per pair
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    peak = vm('VmHWM:') if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({'variant': args.child, 'step_s': times[args.warmup:], 'losses': losses,
                      'peak_mb': peak / 2**20,
                      'peak_source': 'VmHWM after clear_refs' if reset else 'ru_maxrss',
                      'reference_model_loaded': has_ref, 'threads': torch.get_num_threads()}))


def run_child(args, data, variant, steps=None, warmup=None, use_pairs=0):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', variant, '--data', data,
           '--use-pairs', str(use_pairs), '--steps', str(args.steps if steps is None else steps),
           '--warmup', str(args.warmup if warmup is None else warmup)]
    for k in ('hidden', 'layers', 'threads', 'seed'):
        cmd += [f'--{k}', str(getattr(args, k))]
    env = dict(os.environ, TOKENIZERS_PARALLELISM='false', PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f'variant {variant} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(xs):
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2


def available_mb():
    with open('/proc/meminfo') as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith('MemAvailable'))


def summarize(runs, info):
    rows = {}
    for v, rs in runs.items():
        rows[v] = {'step_s': median([s for r in rs for s in r['step_s']]),
                   'peak_mb': max(r['peak_mb'] for r in rs), 'loss1': rs[0]['losses'][0],
                   'ref': rs[0]['reference_model_loaded']}
    print(f"\n{'':35}{'steps/s':>8}{'tokens/s':>10}{'peak RSS MB':>13}{'step-1 loss':>13}"
          '  reference model')
    for v, row in rows.items():
        print(f"({v}) {VARIANTS[v]:31}{1 / row['step_s']:8.3f}"
              f"{info['tokens'] / row['step_s']:10.1f}{row['peak_mb']:13.0f}"
              f"{row['loss1']:13.8f}  {'loaded' if row['ref'] else 'not loaded'}")
    return rows


def ratios(rows, pairs):
    for x, y in pairs:
        if x in rows and y in rows:
            print(f"({x})/({y}): steps/s {rows[y]['step_s'] / rows[x]['step_s']:.2f}x, "
                  f"peak memory {rows[x]['peak_mb'] / rows[y]['peak_mb']:.2f}, step-1 loss "
                  f"difference {rows[x]['loss1'] - rows[y]['loss1']:+.1e}")


def describe(info, args):
    print(f"\nbatch: {info['pairs']} pairs = {2 * info['pairs']} sequences, {info['tokens']} "
          f"tokens ({info['padded']} with padding, {info['labelled']} labelled), max_length "
          f"{info['max_length']}; reference log-probs precomputed once in "
          f"{info['precompute_s']:.2f} s (not in the step times)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pairs', type=int, default=4, help='pairs per step (the same batch)')
    p.add_argument('--max-length', type=int, default=256)
    p.add_argument('--hidden', type=int, default=256)
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--steps', type=int, default=5, help='timed steps per variant')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads (1: steadier on a CPU shared with other jobs)')
    p.add_argument('--rounds', type=int, default=2,
                   help='run the variants in a, b, c, d, d, c, b, a... order this many times')
    p.add_argument('--long-pairs', type=int, default=4, help='pairs of the long setting (0: none)')
    p.add_argument('--long-length', type=int, default=2048)
    p.add_argument('--long-variants', default='cd')
    p.add_argument('--long-steps', type=int, default=2)
    p.add_argument('--budget-gb', type=float, default=16.0,
                   help='memory budget for the largest-pairs-per-step comparison')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--child', choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument('--data', help=argparse.SUPPRESS)
    p.add_argument('--use-pairs', type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory() as tmp:
        n_params, vocab, tok = prepare_models(args, tmp)
        print(f"model: Llama, {n_params / 1e6:.1f}M parameters, vocabulary {vocab}, hidden "
              f"{args.hidden}, {args.layers} layers, fp32, {args.threads} CPU threads")
        info = prepare_data(tok, args.pairs, args.max_length, args.seed,
                            os.path.join(tmp, 'today'))
        describe(info, args)
        runs = {v: [] for v in VARIANTS}
        order = list(VARIANTS)
        for r in range(args.rounds):
            for v in (order if r % 2 == 0 else order[::-1]):
                runs[v].append(run_child(args, os.path.join(tmp, 'today'), v))
        rows = summarize(runs, info)
        print(f"(median of {args.rounds} x {args.steps} steps each; peak: "
              f"{runs['a'][0]['peak_source']}, resident set of the whole process over the steps)")
        ratios(rows, [('c', 'a'), ('b', 'a'), ('d', 'c')])
        losses = [r['loss1'] for r in rows.values()]
        print(f'step-1 losses: largest difference {max(losses) - min(losses):.1e} (fp32)')
        if args.long_pairs:
            rows_long = long_setting(args, tmp, tok)
    flops_8b()
    return (rows, rows_long) if args.long_pairs else rows


def long_setting(args, tmp, tok):
    """(c) vs (d) at a long length: timed steps, and pairs per step within the budget."""
    folder = os.path.join(tmp, 'long')
    info = prepare_data(tok, args.long_pairs, args.long_length, args.seed, folder)
    print(f"\n=== long setting: {args.long_pairs} pairs x 2 x {args.long_length} tokens ===")
    describe(info, args)
    # one step at 1 and 2 pairs: a first slope for the guard below, which keeps 2 GB spare as it
    # can run low (at 1 pair a fixed floor, weights and optimizer state, can hide activations;
    # the budget fit therefore uses the peaks at 2 pairs and at the timed run's pairs)
    line = {}
    for v in args.long_variants:
        p1, p2 = (run_child(args, folder, v, steps=1, warmup=0, use_pairs=n)['peak_mb']
                  for n in (1, 2))
        line[v] = (p1, p2 - p1)

    def predict(v, n):
        return line[v][0] + (n - 1) * line[v][1]

    pairs = args.long_pairs
    while pairs > 2 and max(predict(v, pairs) for v in line) > available_mb() - 2048:
        pairs -= 1
    if pairs < args.long_pairs:
        print(f'NOTE: {args.long_pairs} pairs would not fit the {available_mb():.0f} MB this '
              f'machine has available; timing {pairs} pairs instead')
        info = dict(info, pairs=pairs, tokens=info['tokens'] * pairs // args.long_pairs)
    runs = {v: [run_child(args, folder, v, steps=args.long_steps, use_pairs=pairs)]
            for v in args.long_variants}
    rows = summarize(runs, info)
    print(f"(median of {args.long_steps} steps each after {args.warmup} warm-up)")
    ratios(rows, [('d', 'c')])
    budget = args.budget_gb * 1024
    print(f'\nlargest pairs per step within {args.budget_gb:g} GiB of peak RSS, from the line '
          f'through the measured peaks at 2 and {pairs} pairs of {args.long_length} tokens:')
    for v, (p1, step) in line.items():
        p2 = p1 + step
        per_pair = (rows[v]['peak_mb'] - p2) / max(pairs - 2, 1)
        fits = 2 + int((budget - p2) // per_pair) if per_pair > 0 else float('inf')
        print(f"  ({v}) {VARIANTS[v]:31} {p1:6.0f} / {p2:6.0f} / {rows[v]['peak_mb']:6.0f} MB at "
              f"1 / 2 / {pairs} pairs, +{per_pair:5.0f} MB per pair -> {max(fits, 0)} pairs")
    return rows


def flops_8b():
    """Per-step FLOPs at the paper's setting, Llama-3.1-8B: 6N policy fwd+bwd, 2N reference."""
    n, tokens = 8.03e9, 64 * 2 * 1024
    policy, ref, ckpt = 6 * n * tokens, 2 * n * tokens, 8 * n * tokens
    print("\nLlama-3.1-8B at the paper's setting (64 pairs x 2 sequences x ~1024 tokens/step):")
    print(f'  policy fwd+bwd 6N x tokens  = {policy:.2e} FLOPs')
    print(f'  reference fwd  2N x tokens  = {ref:.2e} FLOPs')
    print(f'  saved by the cache: {ref / (policy + ref):.0%} of the step, ideal speed-up '
          f'{(policy + ref) / policy:.2f}x; with activation checkpointing (8N policy) '
          f'{ref / (ckpt + ref):.0%}, {(ckpt + ref) / ckpt:.2f}x')
    logits = 16 * 1024 * 128256 * 2
    print(f'  logits of one 8-pair micro-batch (bf16): {logits / 2**30:.1f} GiB per copy. '
          "XTuner's DPO holds up to 4\n  (policy logits and their log_softmax, reference "
          f'logits and their log_softmax: ~{4 * logits / 2**30:.0f} GiB); (c) holds the '
          f'policy logits and one {2 ** 25 * 4 / 2**20:.0f} MiB fp32 chunk, (d) one chunk of '
          'logits and nothing else')
    head = 128256 * 4096
    print(f'  chunked head (d): one extra head product per token (the recomputation), '
          f'2 x {head / 1e6:.0f}M x tokens = {2 * head / (6 * n):.1%} of the policy step')


if __name__ == '__main__':
    main()
