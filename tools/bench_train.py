"""Training-step benchmark: XTuner's DPO vs MaskDPO (online reference) vs MaskDPO (cached).

    python tools/bench_train.py                       # ~70M-parameter Llama, 128k vocabulary, CPU
    python tools/bench_train.py --pairs 2 --steps 3   # quicker

One run, same data, same weights, same batch for all three:

* (a) XTuner 0.2.0's stock ``DPO`` (only its CPU crash patched): reference forward every step,
  full-vocabulary ``log_softmax`` of the policy and of the reference;
* (b) ``MaskDPO``, online reference: lean log-probs (fp32 logsumexp by chunks), reference first;
* (c) ``MaskDPO`` with ``ref_logps_cache``: reference log-probs precomputed once (timed apart),
  no reference model in memory.

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
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

VARIANTS = {'a': "XTuner DPO (stock)", 'b': 'MaskDPO, online reference',
            'c': 'MaskDPO, cached reference'}


def prepare(args, tmp):
    """Tokenized pairs, reference and policy weights, the reference cache: all in ``tmp``."""
    import torch
    from bench_masks import make_records
    from transformers import LlamaConfig, LlamaForCausalLM

    from maskdpo_xtuner.dataset import tokenize_pair, validate_record
    from maskdpo_xtuner.llama3 import load_llama3_tokenizer
    from maskdpo_xtuner.ref_logps import (attach_ref_logps, compute_ref_logps, data_key,
                                          reference_fingerprint, save_ref_logps)
    tok = load_llama3_tokenizer()
    records = json.loads(json.dumps(make_records(args.pairs, args.seed)).replace('!', '.'))
    items = [tokenize_pair(tok, validate_record(r), args.max_length) for r in records]
    assert not any(0 in it[f'{s}_labels'] for it in items for s in ('chosen', 'rejected'))
    torch.manual_seed(args.seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=args.hidden,
                         intermediate_size=args.hidden * 11 // 4, num_hidden_layers=args.layers,
                         num_attention_heads=args.hidden // 64,
                         num_key_value_heads=args.hidden // 64, max_position_embeddings=2048,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, torch_dtype='float32')
    model = LlamaForCausalLM(config)
    model.save_pretrained(os.path.join(tmp, 'ref'))
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(os.path.join(tmp, 'policy'))

    ref_cfg = llm_cfg(os.path.join(tmp, 'ref'))
    t0 = time.perf_counter()
    model = LlamaForCausalLM.from_pretrained(os.path.join(tmp, 'ref'), torch_dtype=torch.float32)
    logps = compute_ref_logps(model.eval(), items, batch_size=args.pairs, progress=False)
    save_ref_logps(os.path.join(tmp, 'ref_logps.pt'), logps,
                   data_key(items, tok, args.max_length), reference_fingerprint(ref_cfg))
    precompute_s = time.perf_counter() - t0
    torch.save(items, os.path.join(tmp, 'items.pt'))
    cached = [dict(it) for it in items]
    attach_ref_logps(cached, os.path.join(tmp, 'ref_logps.pt'), tok, args.max_length)
    torch.save(cached, os.path.join(tmp, 'items_cached.pt'))
    tokens = sum(len(it['chosen_ids']) + len(it['rejected_ids']) for it in items)
    return {'params': n_params, 'vocab': len(tok), 'tokens': tokens,
            'padded': 2 * len(items) * max(max(len(it['chosen_ids']), len(it['rejected_ids']))
                                           for it in items),
            'precompute_s': precompute_s}


def llm_cfg(path):
    import torch
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                      pretrained_model_name_or_path=path, torch_dtype=torch.float32)


def vm(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def child(args, tmp):
    """Build one variant, run warm-up + timed optimizer steps on the same batch, print JSON."""
    import torch
    from xtuner.model.dpo import DPO

    from maskdpo_xtuner.dataset import maskdpo_collate_fn
    from maskdpo_xtuner.model import MaskDPO
    from maskdpo_xtuner.model.maskdpo import _prepare_attn_cpu_safe
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy, ref = llm_cfg(os.path.join(tmp, 'policy')), llm_cfg(os.path.join(tmp, 'ref'))
    if args.child == 'a':
        class CpuDPO(DPO):  # the only change: XTuner's CPU crash (see tests/test_model.py)
            _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)
        model = CpuDPO(policy, ref_llm=ref, use_activation_checkpointing=False)
    else:
        model = MaskDPO(policy, ref_llm=ref, mask_mode='none', use_activation_checkpointing=False,
                        ref_logps_cache=os.path.join(tmp, 'ref_logps.pt')
                        if args.child == 'c' else None)
    items = torch.load(os.path.join(tmp, 'items_cached.pt' if args.child == 'c' else 'items.pt'),
                       weights_only=False)
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


def run_child(args, tmp, variant):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', variant, '--tmp', tmp]
    for k in ('pairs', 'max_length', 'hidden', 'layers', 'steps', 'warmup', 'threads', 'seed'):
        cmd += [f'--{k.replace("_", "-")}', str(getattr(args, k))]
    env = dict(os.environ, TOKENIZERS_PARALLELISM='false', PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f'variant {variant} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(xs):
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2


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
          f'logits and their log_softmax: ~{4 * logits / 2**30:.0f} GiB); ours holds the '
          f'policy logits and one {2 ** 25 * 4 / 2**20:.0f} MiB fp32 chunk')


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
                   help='run the variants in a, b, c, c, b, a... order this many times')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--child', choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument('--tmp', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args, args.tmp)

    with tempfile.TemporaryDirectory() as tmp:
        info = prepare(args, tmp)
        print(f"model: Llama, {info['params'] / 1e6:.1f}M parameters, vocabulary {info['vocab']}"
              f", hidden {args.hidden}, {args.layers} layers, fp32, {args.threads} CPU threads")
        print(f"batch: {args.pairs} pairs = {2 * args.pairs} sequences, {info['tokens']} tokens "
              f"({info['padded']} with padding), max_length {args.max_length}")
        print(f"reference log-probs precomputed once in {info['precompute_s']:.2f} s "
              f"(not in the step times below)")
        runs = {v: [] for v in VARIANTS}
        order = list(VARIANTS)
        for r in range(args.rounds):
            for v in (order if r % 2 == 0 else order[::-1]):
                runs[v].append(run_child(args, tmp, v))
    rows = {}
    for v, rs in runs.items():
        rows[v] = {'step_s': median([s for r in rs for s in r['step_s']]),
                   'peak_mb': max(r['peak_mb'] for r in rs), 'loss1': rs[0]['losses'][0],
                   'ref': rs[0]['reference_model_loaded']}
    print(f"\n{'':31}{'steps/s':>8}{'tokens/s':>10}{'peak RSS MB':>13}{'step-1 loss':>13}"
          '  reference model')
    for v, row in rows.items():
        print(f"({v}) {VARIANTS[v]:27}{1 / row['step_s']:8.3f}"
              f"{info['tokens'] / row['step_s']:10.1f}{row['peak_mb']:13.0f}"
              f"{row['loss1']:13.8f}  {'loaded' if row['ref'] else 'not loaded'}")
    a, b, c = rows['a'], rows['b'], rows['c']
    print(f"\nstep throughput  (c)/(a) {a['step_s'] / c['step_s']:.2f}x   "
          f"(b)/(a) {a['step_s'] / b['step_s']:.2f}x   (c)/(b) {b['step_s'] / c['step_s']:.2f}x"
          f"   (median of {args.rounds} x {args.steps} steps each)")
    print(f"peak memory      (c)/(a) {c['peak_mb'] / a['peak_mb']:.2f}   "
          f"(b)/(a) {b['peak_mb'] / a['peak_mb']:.2f}   "
          f"[{runs['a'][0]['peak_source']}: resident set of the whole process over the steps]")
    losses = [r['loss1'] for r in rows.values()]
    print(f'step-1 losses: largest difference {max(losses) - min(losses):.1e} '
          f'(fp32; (b) and (c) differ by {abs(b["loss1"] - c["loss1"]):.1e})')
    flops_8b()
    return rows


if __name__ == '__main__':
    main()
