"""Training-step benchmark: MaskDPO against XTuner's DPO, TRL's DPO and the memory floor.

    bash tools/setup_trl.sh                     # once: the venv of the current TRL (~2 min)
    python tools/bench_train.py                 # everything below (~26 min wall on 2 loaded cores)
    python tools/bench_train.py --rounds 1 --long-length 0 --float64-pairs 0   # short setting only

One run, the same weights, token ids and batch for every variant, each variant in a fresh
process (the order a, b, ... then reversed, ``--rounds`` times):

* (a) XTuner 0.2.0's stock ``DPO`` (only its CPU crash patched): reference forward every step,
  full-vocabulary ``log_softmax`` of the policy and of the reference;
* (b) ``MaskDPO``, online reference, the model's own logits (``chunked_lm_head=False``) scored
  by lean log-probs (fp32 logsumexp by chunks of rows);
* (c) as (b) with ``ref_logps_cache``: reference log-probs precomputed once (timed apart), no
  reference model in memory;
* (d) as (c) with ``chunked_lm_head=True`` (the default): log-probs straight from the last hidden
  state, the LM head applied by chunks of labelled positions and recomputed in backward, so the
  ``[batch, length, vocabulary]`` logits and their gradient never exist;
* (e) as (d) with activation checkpointing (XTuner's ``use_activation_checkpointing``, as the 8B
  configs train on GPU): each decoder layer keeps its input and recomputes the rest in backward;
* TRL's ``DPOTrainer`` (``tools/bench_train_trl.py``) with its reference model (``trl``) and
  with its precomputed reference log-probs (``trl-pre``): TRL 0.17.0 in this venv
  (``requirements-bench.txt``), the current TRL (``trl-new``, ``trl-new-pre``) in the venv of
  ``tools/setup_trl.sh``. An arm whose TRL is missing is left out, and the run says so.

Printed per variant: steps/s from the CPU time of each step (user + system time of the
process, one torch thread: what an idle core gives, far steadier than wall time on a machine
shared with other jobs; median, min and max over every timed step of every round) and the
wall-clock median beside it, tokens/s, peak RSS, the libraries' RSS (after the imports, before
the model: torch alone is ~560 MB), peak / floor and (peak - libraries) / floor, the step-1 loss
and the tokens the loss counts. Then (d) and (e) against every TRL arm, and the project's fastest
against TRL's fastest.

The **floor** is what the step cannot avoid, in fp32: parameters (4 bytes each), gradients (4),
AdamW state (8), one chunk of LM-head logits (``CHUNK_ELEMENTS`` floats) and the activations
backward needs, per token: without checkpointing, in each layer the RMSNorm inputs and outputs
(4h), the rotated queries and keys and the values (h + 2 kv), the attention output (h; flash
attention keeps no [length x length] matrix), the MLP's gate, up and their product (3i), plus the
final norm's input and output (2h); with checkpointing, each layer's input (h), one layer's set
above (recomputed) and the final 2h. Tokens are the real ones (padding is avoidable). Checkpointed
variants are divided by the checkpointed floor, the others by the plain one.

**Loss agreement.** XTuner's DPO counts every labelled token except id 0 (the data here has none:
every '!' is replaced by '.'); ``mask_mode='none'`` counts every response token, text outside
sentences included; TRL counts every completion token. The completions TRL gets are cut from the
same ids at the first labelled token, so all of them count the same tokens. Their step-1 losses
are printed in fp32 and recomputed in float64 on the batch's first ``--float64-pairs`` pairs,
each in a fresh process: (a), (b), (d) (its reference online: the cache holds fp32) and the TRL
arms with a reference model. Mask-DPO itself (``mask_mode='both'``) counts fewer tokens: the
count is printed.

Then a long setting (``--long-length`` tokens per sequence, responses long enough to fill it)
for ``--long-variants``: one pair (2 x 2,048 tokens, the floor's target setting) timed, and, for
``--fit-variants``, one step at ``--fit-pairs`` pairs; memory is linear in the pairs at a fixed
length, so the line through the two peaks (both after a warm-up step, so that the AdamW state is
in both) gives the pairs per step within ``--budget-gb``. The growth per pair is taken as at
least the floor's activations of one pair: with few pairs a fixed peak (the optimizer step, the
head's weight gradient) can hide the activations. A run whose predicted peak exceeds the memory
the machine has available is not started, and the run says so.

The model is a random Llama (``--hidden``, ``--layers``) with the real Llama-3 tokenizer's
128,256-token vocabulary, so the LM head dominates as in an 8B model's logits; data from
``tools/bench_masks.py``'s generator. The policy is the reference plus noise, so step-1 losses
are not trivially log 2. Peak memory is the process's resident-set high-water mark (``VmHWM``)
over the training steps, reset after the model is built (``/proc/self/clear_refs``): weights,
gradients, AdamW state, and whatever the allocator keeps of freed memory (glibc keeps freed
blocks under 32 MB; ``MALLOC_MMAP_THRESHOLD_=131072`` in the environment, which the children
inherit, makes it return them, so that the peak is close to the live bytes). Load from other jobs
does not change the memory figures.
"""
import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from maskdpo_xtuner.io.procs import Child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRL_ARM = os.path.join(ROOT, 'tools', 'bench_train_trl.py')
SETUP_TRL = os.path.join(ROOT, 'tools', 'setup_trl.sh')

VARIANTS = {'a': "XTuner DPO (stock)", 'b': 'MaskDPO, online reference',
            'c': 'MaskDPO, cached reference', 'd': 'MaskDPO, cached + chunked head',
            'e': '(d) + activation checkpointing',
            'trl': 'TRL {} DPO, reference model', 'trl-pre': 'TRL {} DPO, precomputed ref.',
            'trl-new': 'TRL {} DPO, reference model',
            'trl-new-pre': 'TRL {} DPO, precomputed ref.'}
CHECKPOINTED = {'e'}
CACHED = {'c', 'd', 'e'}
FLOAT64_VARIANTS = ('a', 'b', 'd', 'trl', 'trl-new')


def prepare_models(args, tmp):
    """Reference and policy weights, and the tokenizer, in ``tmp``; returns (parameters, tok)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from maskdpo_xtuner.offline.llama3 import load_llama3_tokenizer
    tok = load_llama3_tokenizer()
    tok.save_pretrained(os.path.join(tmp, 'tokenizer'))  # for the TRL arms
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
    return n_params, tok


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


def trl_row(item):
    """A pair as TRL's rows: the prompt's ids and each response's ids, cut at the first labelled
    token (everything after it is labelled: the response and its end-of-turn token)."""
    start = {s: next(i for i, x in enumerate(item[f'{s}_labels']) if x != -100)
             for s in ('chosen', 'rejected')}
    prompt = item['chosen_ids'][:start['chosen']]
    if start['chosen'] != start['rejected'] or item['rejected_ids'][:start['chosen']] != prompt:
        raise ValueError('chosen and rejected sequences of a pair start with different prompts')
    if any(x == -100 for s in ('chosen', 'rejected') for x in item[f'{s}_labels'][start[s]:]):
        raise ValueError('an unlabelled token after the prompt: TRL would count it')
    return {'prompt': prompt, 'chosen': item['chosen_ids'][start['chosen']:],
            'rejected': item['rejected_ids'][start['chosen']:]}


def prepare_data(tok, pairs, max_length, seed, folder):
    """Tokenized pairs, their reference cache and TRL's rows in ``folder``; returns facts about
    the batch, among them the tokens each loss counts."""
    import torch
    from transformers import LlamaForCausalLM

    from maskdpo_xtuner.dataset import maskdpo_collate_fn, tokenize_pair, validate_record
    from maskdpo_xtuner.dataset.ref_logps import (attach_ref_logps, data_key, reference_fingerprint,
                                                  save_ref_logps)
    from maskdpo_xtuner.model.loss import token_weights
    from maskdpo_xtuner.model.reference import compute_ref_logps
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
    with open(os.path.join(folder, 'trl_rows.json'), 'w') as f:
        json.dump([trl_row(it) for it in items], f)

    def counts(n):  # tokens in the loss of the first n pairs, as each loss counts them
        data = maskdpo_collate_fn(items[:n])['data']
        labels, cls = data['labels'][:, 1:], data['token_class'][:, 1:]
        return {'labelled': int(((labels != -100) & (labels != 0)).sum()),
                'none': int(token_weights(cls, 'none').sum()),
                'both': int(token_weights(cls, 'both').sum())}
    lengths = [len(it[f'{s}_ids']) for it in items for s in ('chosen', 'rejected')]
    return {'tokens': sum(lengths), 'padded': len(lengths) * max(lengths),
            'precompute_s': precompute_s, 'max_length': max_length, 'pairs': pairs,
            'counts': counts, 'lengths': lengths}


def llm_cfg(path, dtype='float32'):
    import torch
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                      pretrained_model_name_or_path=path, torch_dtype=getattr(torch, dtype))


def vm(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def child(args):
    """Build one variant, run warm-up + timed optimizer steps on the same batch, print JSON."""
    import torch
    from transformers.models.llama import modeling_llama  # noqa: F401  (in the libraries' RSS)
    from xtuner.model.dpo import DPO

    from maskdpo_xtuner.dataset import maskdpo_collate_fn
    from maskdpo_xtuner.model import MaskDPO
    from maskdpo_xtuner.model.maskdpo import _prepare_attn_cpu_safe
    libraries = vm('VmRSS:')
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = os.path.dirname(args.data)
    policy = llm_cfg(os.path.join(tmp, 'policy'), args.dtype)
    ref = llm_cfg(os.path.join(tmp, 'ref'), args.dtype)
    cached = args.child in CACHED and args.dtype == 'float32'  # the cache holds fp32 values
    if args.child == 'a':
        class CpuDPO(DPO):  # the only change: XTuner's CPU crash (see tests/model/test_model.py)
            _prepare_for_flash_attn = staticmethod(_prepare_attn_cpu_safe)
        model = CpuDPO(policy, ref_llm=ref, use_activation_checkpointing=False)
    else:
        model = MaskDPO(policy, ref_llm=ref, mask_mode='none',
                        use_activation_checkpointing=args.child in CHECKPOINTED,
                        ref_logps_cache=os.path.join(args.data, 'ref_logps.pt') if cached
                        else None, chunked_lm_head=args.child in 'de')
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
    times, cpu_times, losses = [], [], []
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = model.compute_loss({k: v.clone() for k, v in batch.items()})
        loss = out['loss'].mean()  # XTuner's DPO returns one loss per pair
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        losses.append(loss.item())
    peak = vm('VmHWM:') if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({'step_s': times[args.warmup:], 'cpu_s': cpu_times[args.warmup:],
                      'losses': losses, 'peak_mb': peak / 2**20,
                      'libraries_mb': libraries / 2**20,
                      'peak_source': 'VmHWM after clear_refs' if reset else 'ru_maxrss',
                      'reference_model_loaded': has_ref, 'threads': torch.get_num_threads()}))


def trl_python(args, variant):
    """The python of a TRL arm, or None (and why) when that TRL is not there."""
    if not variant.startswith('trl-new'):
        if importlib.util.find_spec('trl') is None:
            return None, 'TRL is not installed here (pip install -r requirements-bench.txt)'
        return sys.executable, None
    if args.trl_python:
        return args.trl_python, None
    found = subprocess.run(['bash', SETUP_TRL] + ([] if args.build_trl else ['--find']),
                           capture_output=True, text=True)
    if found.returncode != 0:
        return None, ('the current TRL is not built (bash tools/setup_trl.sh, ~2 minutes, '
                      'or --build-trl)')
    return found.stdout.strip().splitlines()[-1], None


def run_child(args, data, variant, steps=None, warmup=None, use_pairs=0, dtype='float32'):
    steps = args.steps if steps is None else steps
    warmup = args.warmup if warmup is None else warmup
    common = ['--data', data, '--use-pairs', str(use_pairs), '--steps', str(steps),
              '--warmup', str(warmup), '--threads', str(args.threads), '--dtype', dtype]
    env = dict(os.environ, TOKENIZERS_PARALLELISM='false')
    if variant.startswith('trl'):
        cmd = [args.pythons[variant], TRL_ARM] + common
        if variant.endswith('-pre'):
            cmd.append('--precompute')
        env.pop('PYTHONPATH', None)  # it imports torch, transformers and trl only
        env.update(TQDM_DISABLE='1', HF_DATASETS_OFFLINE='1')
    else:
        cmd = [sys.executable, os.path.abspath(__file__), '--child', variant] + common
        for k in ('hidden', 'layers', 'seed'):
            cmd += [f'--{k}', str(getattr(args, k))]
        env['PYTHONPATH'] = ROOT
    t0 = time.perf_counter()
    with Child(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as child:
        stdout, stderr = child.communicate()  # a kill of this bench stops the child too
    print(f'[bench_train] ({variant}) {os.path.basename(data)}, {use_pairs or "all"} pairs, '
          f'{dtype}: {time.perf_counter() - t0:.0f} s', file=sys.stderr, flush=True)
    if child.returncode != 0:
        sys.exit(f'variant {variant} failed:\n{stderr[-3000:]}')
    result = json.loads(stdout.strip().splitlines()[-1])
    result['variant'] = variant
    return result


def median(xs):
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2


def available_mb():
    with open('/proc/meminfo') as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith('MemAvailable'))


def floor_mb(args, n_params, tokens, checkpointing):
    """The bytes the step cannot avoid (see the module's docstring), by part, in MB (2^20)."""
    from maskdpo_xtuner.model.logps import CHUNK_ELEMENTS
    h, i, layers = args.hidden, args.hidden * 11 // 4, args.layers
    kv = h  # num_key_value_heads x head_dim: no grouped-query attention in the bench's model
    layer = 4 * h + (h + 2 * kv) + h + 3 * i  # floats per token one layer keeps for backward
    per_token = (layers * h + layer if checkpointing else layers * layer) + 2 * h
    parts = {'parameters': 4 * n_params, 'gradients': 4 * n_params, 'AdamW state': 8 * n_params,
             'activations': 4 * per_token * tokens, 'head chunk': 4 * CHUNK_ELEMENTS}
    return {k: v / 2**20 for k, v in parts.items()}


def name(v, row):
    return f"{'(' + v + ') ' + row['label']:47.47}"


def label(v, runs):
    versions = runs[0].get('versions', '')
    return VARIANTS[v].format(versions.split(',')[0].replace('TRL ', '')) if versions \
        else VARIANTS[v]


def summarize(runs, info, floors, tokens_in_loss):
    """One row per variant: the table, and the rows for the ratios. Speed is CPU time per step
    (user + system of the process, one torch thread): what an idle core would give, steadier than
    wall time on a shared machine; the wall-clock median is printed beside it."""
    rows = {}
    for v, rs in runs.items():
        if not rs:
            continue
        cpu = [s for r in rs for s in r['cpu_s']]
        peak, libs = max(r['peak_mb'] for r in rs), max(r['libraries_mb'] for r in rs)
        floor = sum(floors[v in CHECKPOINTED].values())
        rows[v] = {'step_s': median(cpu), 'fastest': min(cpu), 'slowest': max(cpu),
                   'wall_s': median([s for r in rs for s in r['step_s']]),
                   'peak_mb': peak, 'libraries_mb': libs, 'floor_mb': floor,
                   'loss1': rs[0]['losses'][0], 'tokens': tokens_in_loss(v, rs[0]),
                   'label': label(v, rs)}
    print(f"\n{'':47}{'steps/s, CPU time':>20}{'wall':>7}{'tok/s':>7}{'peak':>7}{'libs':>6}"
          f"{'peak/':>7}{'-libs/':>8}{'step-1 loss':>13}{'tokens':>8}")
    print(f"{'':47}{'median (min-max)':>20}{'':>7}{'':>7}{'MB':>7}{'MB':>6}{'floor':>7}"
          f"{'floor':>8}{'':>13}{'in loss':>8}")
    for v, row in rows.items():
        print(f"{name(v, row)}{1 / row['step_s']:7.3f} ({1 / row['slowest']:5.3f}-"
              f"{1 / row['fastest']:5.3f}){1 / row['wall_s']:7.3f}"
              f"{info['tokens'] / row['step_s']:7.0f}{row['peak_mb']:7.0f}"
              f"{row['libraries_mb']:6.0f}{row['peak_mb'] / row['floor_mb']:7.2f}"
              f"{(row['peak_mb'] - row['libraries_mb']) / row['floor_mb']:8.2f}"
              f"{row['loss1']:13.8f}{row['tokens']:8d}")
    for ckpt in (False, True):
        parts = floors[ckpt]
        print(f"floor{' with checkpointing' if ckpt else ''}: {sum(parts.values()):.0f} MB = "
              + ' + '.join(f'{k} {v:.0f}' for k, v in parts.items()))
    return rows


def ratios(rows, pairs):
    for x, y in pairs:
        if x in rows and y in rows:
            print(f"({x})/({y}): steps/s {rows[y]['step_s'] / rows[x]['step_s']:.2f}x "
                  f"(wall {rows[y]['wall_s'] / rows[x]['wall_s']:.2f}x), "
                  f"peak memory {rows[x]['peak_mb'] / rows[y]['peak_mb']:.2f}x, step-1 loss "
                  f"difference {rows[x]['loss1'] - rows[y]['loss1']:+.1e}")


def against_trl(rows):
    """(d) and (e) against every TRL arm, and the project's fastest against TRL's fastest."""
    trl = [v for v in rows if v.startswith('trl')]
    ours = [v for v in ('d', 'e') if v in rows]
    if not trl or not ours:
        return
    ratios(rows, [(x, t) for x in ours for t in trl])
    best, fastest = (min(vs, key=lambda v: rows[v]['step_s']) for vs in (ours, trl))
    print(f"project's fastest ({best}) vs TRL's fastest ({fastest}, {rows[fastest]['label']}): "
          f"{rows[fastest]['step_s'] / rows[best]['step_s']:.2f}x steps/s at "
          f"{rows[best]['peak_mb'] / rows[fastest]['peak_mb']:.2f}x peak memory")


def describe(info, pairs=None):
    pairs = pairs or info['pairs']
    lengths = info['lengths'][:2 * pairs]
    print(f"\nbatch: {pairs} pairs = {2 * pairs} sequences, {sum(lengths)} tokens "
          f"({len(lengths) * max(lengths)} with padding), max_length {info['max_length']}; "
          f"reference log-probs precomputed once in {info['precompute_s']:.2f} s for the cache "
          f"of (c)-(e) (not in the step times)")


def tokens_counter(info, pairs):
    counts = info['counts'](pairs)

    def tokens_in_loss(v, run):
        if v.startswith('trl'):
            return run['scored_tokens']
        return counts['labelled'] if v == 'a' else counts['none']
    return counts, tokens_in_loss


def loss_agreement(rows, counts, floats64, pairs64):
    print(f"\ntokens in the loss: (a) {counts['labelled']} (labels other than -100 and id 0), "
          f"(b)-(e) {counts['none']} (mask_mode='none': every response token), TRL "
          f"{', '.join(str(r['tokens']) for v, r in rows.items() if v.startswith('trl'))} "
          f"(completion tokens); Mask-DPO itself (mask_mode='both') counts {counts['both']}")
    same = [r['loss1'] for r in rows.values() if r['tokens'] == counts['none']]
    print(f"fp32 step-1 losses of the {len(same)} variants counting the same tokens: largest "
          f"difference {max(same) - min(same):.1e} (fp32 sums of ~{counts['none']} log-probs)")
    if not floats64:
        return
    print(f"float64 step-1 losses on the batch's first {pairs64} pair(s), each in a fresh "
          'process ((d) with its reference online: the cache holds fp32):')
    first = next(iter(floats64.values()))
    for v, loss in floats64.items():
        print(f"  ({v}) {loss!r}  difference {loss - first:+.1e}")
    exact = [v for v, loss in floats64.items() if abs(loss - first) < 1e-12]
    print(f"  equal to 1e-12: {', '.join(exact)}")
    if 'trl-new' in floats64 and 'trl-new' not in exact:
        print("  (trl-new): TRL >= 1's fused LM head (trl.trainer.utils.add_fused_lm_head) "
              'accumulates its log-softmax in fp32 whatever the model dtype, so its float64 '
              'loss agrees to fp32 precision only')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pairs', type=int, default=4, help='pairs per step (the same batch)')
    p.add_argument('--max-length', type=int, default=256)
    p.add_argument('--hidden', type=int, default=256)
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--steps', type=int, default=2, help='timed steps per variant and round')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads (1: steadier on a CPU shared with other jobs)')
    p.add_argument('--rounds', type=int, default=2,
                   help='run the variants in order, then in reverse order, ... this many times')
    p.add_argument('--variants', default=','.join(VARIANTS),
                   help=f'comma-separated, of: {", ".join(VARIANTS)}')
    p.add_argument('--trl-python', help='python of the current TRL (default: the venv of '
                                        'tools/setup_trl.sh, if built)')
    p.add_argument('--build-trl', action='store_true',
                   help='build the venv of tools/setup_trl.sh if it is not built')
    p.add_argument('--float64-pairs', type=int, default=2,
                   help='pairs (the first of the batch) of the float64 step-1 losses (0: none)')
    p.add_argument('--long-length', type=int, default=2048,
                   help='tokens per sequence of the long setting (0: none)')
    p.add_argument('--long-variants', default='d,e')
    p.add_argument('--long-steps', type=int, default=2)
    p.add_argument('--fit-variants', default='e',
                   help='long variants also run at --fit-pairs pairs, for the pairs in budget')
    p.add_argument('--fit-pairs', type=int, default=4,
                   help='pairs of the second long run: the line through 1 and this many pairs')
    p.add_argument('--budget-gb', type=float, default=16.0,
                   help='memory budget (GiB) for the pairs-per-step comparison')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--child', choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument('--data', help=argparse.SUPPRESS)
    p.add_argument('--use-pairs', type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument('--dtype', default='float32', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    wanted = [v.strip() for v in args.variants.split(',') if v.strip()]
    args.fit_variants = [v.strip() for v in args.fit_variants.split(',') if v.strip()]
    long_wanted = [v.strip() for v in args.long_variants.split(',') if v.strip()]
    unknown = sorted(set(wanted + long_wanted + args.fit_variants) - set(VARIANTS))
    if unknown:
        p.error(f'unknown variants {unknown}; choose from {", ".join(VARIANTS)}')
    args.pythons = {}
    for v in sorted(set(wanted + long_wanted)):
        if v.startswith('trl'):
            args.pythons[v], why = trl_python(args, v)
            if why:
                print(f'NOTE: arm {v} left out: {why}')
    variants = [v for v in wanted if not v.startswith('trl') or args.pythons[v]]
    long_variants = [v for v in long_wanted if not v.startswith('trl') or args.pythons[v]]

    print(f'load average at the start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)')
    with tempfile.TemporaryDirectory() as tmp:
        n_params, tok = prepare_models(args, tmp)
        print(f"model: Llama, {n_params / 1e6:.1f}M parameters, vocabulary {len(tok)}, hidden "
              f"{args.hidden}, {args.layers} layers, fp32, {args.threads} CPU thread(s)")
        today = os.path.join(tmp, 'today')
        info = prepare_data(tok, args.pairs, args.max_length, args.seed, today)
        describe(info)
        runs = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                runs[v].append(run_child(args, today, v))
        floors = {ckpt: floor_mb(args, n_params, info['tokens'], ckpt) for ckpt in (False, True)}
        counts, tokens_in_loss = tokens_counter(info, args.pairs)
        rows = summarize(runs, info, floors, tokens_in_loss)
        print(f"(steps/s: CPU time per step, median, slowest and fastest of {args.rounds} x "
              f"{args.steps} steps each; wall: median wall-clock steps/s; peak: resident set of "
              f"the whole process over the steps; MB = 2^20 bytes)")
        ratios(rows, [('c', 'a'), ('d', 'c'), ('d', 'a'), ('e', 'd')])
        against_trl(rows)
        floats64 = {}
        if args.float64_pairs:
            floats64 = {v: run_child(args, today, v, steps=1, warmup=0, dtype='float64',
                                     use_pairs=args.float64_pairs)['losses'][0]
                        for v in FLOAT64_VARIANTS if v in variants}
        loss_agreement(rows, counts, floats64, args.float64_pairs)
        rows_long = long_setting(args, tmp, tok, n_params, long_variants) \
            if args.long_length and long_variants else None
    print(f'load average at the end: {os.getloadavg()[0]:.1f}')
    flops_8b()
    return rows, rows_long


def long_setting(args, tmp, tok, n_params, variants):
    """One pair of two long sequences, timed; one step at ``--fit-pairs``; pairs in budget."""
    folder = os.path.join(tmp, 'long')
    fit = max(args.fit_pairs, 2)
    info = prepare_data(tok, fit, args.long_length, args.seed, folder)
    print(f"\n=== long setting: 1 pair x 2 x {args.long_length} tokens ===")
    describe(info, pairs=1)
    runs = {v: [run_child(args, folder, v, steps=args.long_steps, use_pairs=1)]
            for v in variants}
    tokens = sum(info['lengths'][:2])
    floors = {ckpt: floor_mb(args, n_params, tokens, ckpt) for ckpt in (False, True)}
    counts, tokens_in_loss = tokens_counter(info, 1)
    rows = summarize(runs, dict(info, tokens=tokens), floors, tokens_in_loss)
    print(f"(steps/s: CPU time per step, median, slowest and fastest of {args.long_steps} steps "
          f"after {args.warmup} warm-up)")
    ratios(rows, [('e', 'd')])
    against_trl(rows)
    budget = args.budget_gb * 1024
    if not any(v in args.fit_variants for v in rows):
        return rows
    print(f'\npairs per step (of 2 x {args.long_length} tokens) within {args.budget_gb:g} GiB of '
          f'peak RSS, from the line through the peaks at 1 and {fit} pairs (one step each after '
          "a warm-up step); the growth per pair is at least the floor's activations of a pair:")
    for v in (v for v in rows if v in args.fit_variants):
        row = rows[v]
        predicted = row['peak_mb'] + (fit - 1) * (row['peak_mb'] - row['libraries_mb'])
        if predicted > available_mb() - 2048:
            print(f"  {name(v, row)} not run at {fit} pairs: up to {predicted:.0f} MB "
                  f"predicted, {available_mb():.0f} MB available")
            continue
        peak_fit = run_child(args, folder, v, steps=1, use_pairs=fit)['peak_mb']
        measured = (peak_fit - row['peak_mb']) / (fit - 1)
        least = floors[v in CHECKPOINTED]['activations']
        per_pair = max(measured, least)
        fits = max(1 + int((budget - row['peak_mb']) // per_pair), 0)
        print(f"  {name(v, row)} {row['peak_mb']:6.0f} / {peak_fit:6.0f} MB at 1 / "
              f"{fit} pairs: +{measured:4.0f} MB per pair measured"
              + (f', below the floor\'s {least:.0f}: {least:.0f} taken' if measured < least
                 else '') + f' -> {fits} pairs')
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
