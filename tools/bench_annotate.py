"""Annotation throughput: batched by step versus one sentence at a time, same backend and data.

    python tools/bench_annotate.py                       # tiny offline Llama on CPU
    python tools/bench_annotate.py --backend openai --endpoints http://host:23333 --model anah-v2

"batched" is ``AnahV2Annotator.annotate(all_sentences)``: one ``generate`` call per step over all
pending sentences. "sequential" is the official eval's way: each sentence's dialogue runs on
its own, one request at a time. With greedy decoding both must give the same labels; the tool
checks this. The tiny random model answers gibberish, so most labels are ``unparsed`` (most
dialogues stop at step 1). That is fine for measuring throughput.
"""
import argparse
import dataclasses
import os
import tempfile
import time
from collections import Counter

from maskdpo_xtuner.annotate import AnahV2Annotator, SentenceTask
from maskdpo_xtuner.generation.base import SamplingParams
from maskdpo_xtuner.pipeline.backends import add_backend_args, backend_spec


class CountingBackend:
    """Wraps a backend and counts its generate calls and conversations."""

    def __init__(self, backend):
        self.backend, self.calls, self.requests = backend, 0, 0

    def generate(self, conversations, params, n=1, seeds=None):
        self.calls += 1
        self.requests += len(conversations)
        return self.backend.generate(conversations, params, n)


def make_tasks(n: int):
    """``n`` sentences of the tiny corpus, each with a question and the corpus as document."""
    from maskdpo_xtuner.annotate.split import detect_lang, split_sentences
    from maskdpo_xtuner.offline.tiny import default_corpus
    lines = list(dict.fromkeys(default_corpus()))  # the seed text, once
    document = '\n'.join(lines)
    sents = [(s.text, line) for line in lines for s in split_sentences(line)]
    tasks = []
    for i in range(n):
        text, line = sents[i % len(sents)]
        lang = detect_lang(line)
        question = '请介绍一下这个主题。' if lang == 'zh' else 'Tell me about this topic.'
        tasks.append(SentenceTask(question=question, sentence=text, response=line,
                                  document=document, lang=lang))
    return tasks


def build(args, tmp):
    """The shared backend flags; with no --model, the tiny offline model."""
    spec = backend_spec(args)
    if spec.model is None:
        if spec.backend != 'transformers':
            raise SystemExit(f'--backend {spec.backend} needs --model')
        from maskdpo_xtuner.offline.tiny import build_tiny_llama, train_bpe_tokenizer
        model = os.path.join(tmp, 'tiny')
        build_tiny_llama(train_bpe_tokenizer(), model, max_position_embeddings=4096)
        spec = dataclasses.replace(spec, model=model)
    return spec.build()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_args(p, role='judge (default: a tiny random Llama built offline)')
    p.add_argument('--sentences', type=int, default=32)
    p.add_argument('--max-new-tokens', type=int, default=16)
    p.add_argument('--templates', default='auto')
    args = p.parse_args(argv)

    tasks = make_tasks(args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        backend = CountingBackend(build(args, tmp))
        ann = AnahV2Annotator(backend, templates=args.templates,
                              params=SamplingParams.greedy(max_new_tokens=args.max_new_tokens))
        ann.annotate(tasks[:1])  # warm-up (lazy init, caches)
        rows, labels = [], {}
        for mode in ('sequential', 'batched'):
            backend.calls = backend.requests = 0
            t0 = time.perf_counter()
            if mode == 'batched':
                labels[mode] = ann.annotate(tasks)
            else:
                labels[mode] = [ann.annotate([t])[0] for t in tasks]
            dt = time.perf_counter() - t0
            rows.append((mode, backend.calls, backend.requests, len(tasks), dt, len(tasks) / dt))

    print(f'backend={args.backend} model={args.model or "tiny random Llama"} '
          f'max_new_tokens={args.max_new_tokens} (greedy)')
    print(f'{"mode":<12}{"generate calls":>15}{"requests":>10}{"sentences":>11}'
          f'{"seconds":>10}{"sent/s":>10}')
    for mode, calls, reqs, n, dt, rate in rows:
        print(f'{mode:<12}{calls:>15}{reqs:>10}{n:>11}{dt:>10.2f}{rate:>10.2f}')
    speedup = rows[1][5] / rows[0][5]
    print(f'speed-up (batched / sequential): {speedup:.2f}x')
    seq, bat = labels['sequential'], labels['batched']
    diff = sum(a.label != b.label for a, b in zip(seq, bat))
    diff_raw = sum(a.trace != b.trace for a, b in zip(seq, bat))
    print(f'labels identical: {"yes" if not diff else f"NO ({diff} differ)"}; '
          f'raw answers identical: {"yes" if not diff_raw else f"NO ({diff_raw} differ)"}')
    print('labels:', dict(Counter(lab.label for lab in bat)))
    return {'rows': rows, 'speedup': speedup, 'label_mismatches': diff,
            'answer_mismatches': diff_raw}


if __name__ == '__main__':
    main()
