"""One TRL arm of ``tools/bench_train.py``: TRL's ``DPOTrainer`` computing DPO steps on the
bench's weights and token ids, in its own process; prints one JSON line.

    (run by tools/bench_train.py; by hand:)
    python tools/bench_train_trl.py --data DIR [--precompute] [--steps 3] [--warmup 1]

It imports only torch, transformers, datasets and trl, so it runs in the training venv (TRL
0.17.0, ``requirements-bench.txt``) and in the venv of ``tools/setup_trl.sh`` (the current TRL,
with transformers 5). ``DIR`` holds ``policy/``, ``ref/`` and ``tokenizer/`` (one level up, as
bench_train.py writes them) and ``trl_rows.json``: per pair the prompt's token ids and each
response's token ids up to its end-of-turn token, cut from the very ids the other variants train
on.

Everything after tokenization is TRL's: the trainer is built on the policy and the reference,
TRL's collator pads the batch, ``training_step`` runs TRL's ``compute_loss`` (its concatenated
forward, its reference pass or its precomputed values, its sigmoid loss with beta 0.1) and the
backward; AdamW (torch's, lr 1e-6, as in every variant) then steps. Two things are set here:
the dataset preparation (``_prepare_dataset``, which tokenizes text) is skipped because the rows
are token ids already; and with ``--precompute`` the reference model is dropped once TRL's own
pass has computed its log-probs. TRL keeps a ``ref_model`` it was given loaded for the whole
run, and with ``ref_model=None`` it would take the starting policy as the reference, which is
not the bench's reference: dropping it measures TRL at its best. Gradient checkpointing is off
(as in the bench's variants (a)-(d)); TRL 1.x turns it on inside ``train()``, not called here.
"""
import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time


def vm(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', required=True, help='data folder of one bench setting')
    p.add_argument('--precompute', action='store_true',
                   help="precompute_ref_log_probs=True (TRL's own pass), reference dropped after")
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--use-pairs', type=int, default=0, help='first N pairs (0: all)')
    p.add_argument('--dtype', default='float32', choices=('float32', 'float64'))
    args = p.parse_args(argv)

    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.llama import modeling_llama  # noqa: F401  (in the libraries' RSS)
    from trl import DPOConfig, DPOTrainer
    libraries = vm('VmRSS:')
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    new = int(trl.__version__.split('.')[0]) >= 1  # TRL 1.x: prompt_ids; 0.x: prompt_input_ids
    suffix = '_ids' if new else '_input_ids'
    dtype = getattr(torch, args.dtype)
    top = os.path.dirname(os.path.abspath(args.data))
    dtype_key = 'dtype' if int(transformers.__version__.split('.')[0]) >= 5 else 'torch_dtype'

    def load(name):
        return AutoModelForCausalLM.from_pretrained(os.path.join(top, name), **{dtype_key: dtype})

    with open(os.path.join(args.data, 'trl_rows.json')) as f:
        rows = json.load(f)[:args.use_pairs or None]
    dataset = Dataset.from_list([{f'{k}{suffix}': r[k] for k in ('prompt', 'chosen', 'rejected')}
                                 for r in rows])
    tok = AutoTokenizer.from_pretrained(os.path.join(top, 'tokenizer'))
    if tok.pad_token is None:  # only padding: never scored, never attended to
        tok.pad_token = tok.eos_token

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *unused, **unused_kw):
            return dataset  # the rows are the bench's token ids already

    out_dir = tempfile.mkdtemp(prefix='bench-trl-')
    wanted = dict(output_dir=out_dir, per_device_train_batch_size=len(rows), beta=0.1,
                  loss_type='sigmoid', max_length=None, max_prompt_length=None,
                  max_completion_length=None, precompute_ref_log_probs=args.precompute,
                  precompute_ref_batch_size=len(rows), gradient_checkpointing=False,
                  report_to='none', use_cpu=True, bf16=False, fp16=False, seed=0,
                  disable_dropout=True, padding_value=tok.pad_token_id, dataloader_num_workers=0)
    fields = {f.name for f in dataclasses.fields(DPOConfig)}
    config = DPOConfig(**{k: v for k, v in wanted.items() if k in fields})
    policy, ref = load('policy'), load('ref')
    trainer = PretokenizedDPOTrainer(model=policy, ref_model=ref, args=config,
                                     train_dataset=dataset, processing_class=tok)
    if args.precompute:
        if not new:  # TRL 0.x precomputes when the train dataloader is first asked for
            trainer.get_train_dataloader()
        trainer.ref_model = None
        del ref
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    if args.precompute and 'ref_chosen_logps' not in batch:
        sys.exit('TRL did not attach precomputed reference log-probs to the batch')
    if new:
        scored = int(batch['completion_mask'].sum())
    else:
        scored = int(batch['chosen_attention_mask'].sum() + batch['rejected_attention_mask'].sum())
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which is not run
    model = trainer.model
    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        reset = True
    except OSError:
        reset = False
    times, cpu_times, losses = [], [], []
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = trainer.training_step(model, dict(batch))
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
                      'reference_model_loaded': trainer.ref_model is not None,
                      'scored_tokens': scored, 'threads': torch.get_num_threads(),
                      'versions': f'TRL {trl.__version__}, transformers '
                                  f'{transformers.__version__}, torch {torch.__version__}'}))


if __name__ == '__main__':
    main()
