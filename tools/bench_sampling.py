"""Sampling throughput on SmolLM2-135M-Instruct: vLLM (CPU server) vs the in-process transformers
backend, the same prompts and sampling parameters, one run each.

    python tools/bench_sampling.py                        # 16 questions x 4 answers, 128 tokens
    python tools/bench_sampling.py --questions 32 --n 8 --cpus 0-1 --threads 2

The paper's data sampling (top-k 40, temperature 0.8, top-p 1.0). Tokens are counted by
re-tokenizing the answers (the backends return text), so both sides are counted the same way.
vLLM's engine is bound to --cpus; transformers uses --threads torch threads. The server's start
time is reported apart and not counted.
"""
import argparse
import os
import time

from maskdpo_xtuner.generation import serve
from maskdpo_xtuner.offline import smollm2
from maskdpo_xtuner.generation import OpenAIBackend, SamplingParams, TransformersBackend

SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'setup_vllm.sh')

TOPICS = ['France', 'Marie Curie', 'the Moon', 'Japan', 'the Nile', 'Isaac Newton', 'Brazil',
          'the Roman Empire', 'photosynthesis', 'Mount Everest', 'Ada Lovelace', 'Canada',
          'the printing press', 'Egypt', 'Albert Einstein', 'the Pacific Ocean']


def prompts(k: int):
    return [[{'role': 'user', 'content': f'Tell me about {TOPICS[i % len(TOPICS)]}.'
              + ('' if i < len(TOPICS) else f' ({i // len(TOPICS) + 1})')}] for i in range(k)]


def run(name, backend, convs, params, n, tokenizer):
    t0 = time.perf_counter()
    out = backend.generate(convs, params, n)
    seconds = time.perf_counter() - t0
    tokens = sum(len(tokenizer(t, add_special_tokens=False).input_ids) for r in out for t in r)
    answers = sum(len(r) for r in out)
    print(f'| {name} | {answers} | {tokens} | {seconds:.1f} | {answers / seconds:.2f} | '
          f'{tokens / seconds:.1f} |', flush=True)
    return seconds, tokens


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', help='HF folder (default: build/reuse SmolLM2, tools/build_smollm2.py)')
    p.add_argument('--questions', type=int, default=16)
    p.add_argument('--n', type=int, default=4, help='answers per question')
    p.add_argument('--max-new-tokens', type=int, default=128)
    p.add_argument('--concurrency', type=int, default=64, help='vLLM: requests in flight')
    p.add_argument('--batch-size', type=int, default=64, help='transformers: sequences per batch')
    p.add_argument('--cpus', default='0-1', help='cores the vLLM engine binds to')
    p.add_argument('--threads', type=int, default=2, help='torch threads for transformers')
    p.add_argument('--log', default='work_dirs/bench_sampling_vllm.log')
    args = p.parse_args(argv)
    import torch
    from transformers import AutoTokenizer
    model = args.model or str(smollm2.build())
    tok = AutoTokenizer.from_pretrained(model)
    convs = prompts(args.questions)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, seed=0)
    print(f'{args.questions} questions x {args.n} answers, <= {args.max_new_tokens} new tokens, '
          f'top-k {params.top_k}, T {params.temperature}; model {model}\n')
    print('| backend | answers | tokens | seconds | answers/s | tokens/s |\n|---|---|---|---|---|---|')
    port = serve.free_port()
    python = serve.vllm_python(SETUP, build=True)
    server = serve.Server(serve.vllm_command(model, port, served_name='bench',
                                             log_requests=False, python=python),
                          port, args.log, env=serve.vllm_env(1, args.cpus))
    try:
        server.start()
        start = server.wait_ready()
        run(f'vLLM (cores {args.cpus}, {args.concurrency} in flight)',
            OpenAIBackend([server.url], model='bench', concurrency=args.concurrency),
            convs, params, args.n, tok)
    finally:
        server.stop()
    torch.set_num_threads(args.threads)
    run(f'transformers ({args.threads} threads, batch {args.batch_size})',
        TransformersBackend(model, batch_size=args.batch_size, dtype=torch.float32),
        convs, params, args.n, tok)
    print(f'\nvLLM server start (not counted): {start:.0f} s; log {args.log}')


if __name__ == '__main__':
    main()
