"""Benchmark: our exact aligner vs the official per-sentence re-tokenization, same records.

    python tools/bench_masks.py                 # 2,000 generated records, real Llama-3 tokenizer
    python tools/bench_masks.py --records 500 --max-length 1024 --repeats 3

For each record (prompt + chosen + rejected, sentences labelled) both approaches decide, for
every response token, whether it is in the loss (Mask-DPO: chosen keeps correct sentences,
rejected keeps hallucinated ones; separators and the end-of-turn token are kept by both).

* ours: render once, tokenize once with offsets, classify tokens by character position
  (maskdpo_xtuner/dataset/tokenize.py);
* official (re-implemented from its description): tokenize each sentence on its own and lay the
  token counts end to end from the prompt length; if the masks overrun the (truncated) sequence,
  fall back silently to the unmasked labels (plain DPO for that pair).

Printed: pairs/s for each and their ratio (median, slowest and fastest of ``--repeats`` timed
passes, the two approaches alternating which goes first), records whose masks differ, tokens that
differ, silent fallbacks, and tokens with id 0 that XTuner's loss would also drop. Both run in one
process on the same data; on a machine shared with other jobs single passes vary by tens of per
cent, hence the repeats.
"""
import argparse
import time

from maskdpo_xtuner.dataset.records import validate_record
from maskdpo_xtuner.dataset.tokenize import tokenize_pair
from maskdpo_xtuner.offline.synthetic_pairs import make_records


def official_side(tokenizer, prompt, response, item, side, max_length):
    """In-loss flags of one side, the official way (re-implemented from its description)."""
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    text = tokenizer.apply_chat_template(
        prompt + [{'role': 'assistant', 'content': response}], tokenize=False)
    prompt_len = min(len(tokenizer.encode(head, add_special_tokens=False)), max_length)
    ids = tokenizer.encode(text, add_special_tokens=False)[:max_length]
    labels = [-100] * prompt_len + ids[prompt_len:]
    unmasked = list(labels)
    drop = 'hallucination' if side == 'chosen' else 'no_hallucination'
    cur = prompt_len
    for sent, label in zip(item['sents'], item['type']):
        n = len(tokenizer.encode(sent, add_special_tokens=False))
        if label == drop:
            labels[cur:cur + n] = [-100] * n  # past the end this grows the list...
        cur += n
    fallback = len(labels) != len(ids)      # ...and the pair silently becomes plain DPO
    labels = unmasked if fallback else labels
    return ids, [lab != -100 for lab in labels], fallback


def median(xs):
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2


def ours_side(item, side):
    kept_classes = {0, 2, 3} if side == 'chosen' else {1, 2, 3}  # correct/halluc., sep, end
    return [c in kept_classes for c in item[f'{side}_token_class']]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--records', type=int, default=2000)
    p.add_argument('--max-length', type=int, default=1024)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--repeats', type=int, default=5, help='timed passes of each approach')
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error('--repeats must be at least 1')

    from maskdpo_xtuner.offline.llama3 import load_llama3_tokenizer
    tok = load_llama3_tokenizer()
    records = make_records(args.records, args.seed)

    def run_ours():
        return [tokenize_pair(tok, validate_record(r), args.max_length) for r in records]

    def run_official():
        return [{side: official_side(tok, r['prompt'], r[side][0]['content'],
                                     r[f'{side}_item'], side, args.max_length)
                 for side in ('chosen', 'rejected')} for r in records]

    seconds = {'ours': [], 'official': []}
    for repeat in range(args.repeats):
        order = ('ours', 'official') if repeat % 2 == 0 else ('official', 'ours')
        for approach in order:
            t0 = time.perf_counter()
            result = run_ours() if approach == 'ours' else run_official()
            seconds[approach].append(time.perf_counter() - t0)
            if approach == 'ours':
                ours = result
            else:
                official = result

    differing_records = differing_tokens = total_tokens = fallbacks = zero_ids = 0
    example = None
    for rec, mine, theirs in zip(records, ours, official):
        differs = False
        for side in ('chosen', 'rejected'):
            ids, flags, fell_back = theirs[side]
            assert ids == mine[f'{side}_ids']  # same tokens, only the masks can differ
            fallbacks += fell_back
            ours_flags = ours_side(mine, side)
            response = [c >= 0 for c in mine[f'{side}_token_class']]
            total_tokens += sum(response)
            diff = [i for i, r in enumerate(response) if r and ours_flags[i] != flags[i]]
            differing_tokens += len(diff)
            zero_ids += sum(1 for i, t in enumerate(ids) if t == 0 and response[i])
            if diff:
                differs = True
                if example is None and not fell_back:
                    i = diff[0]
                    example = (side, tok.decode(ids[max(0, i - 6):i]), tok.decode([ids[i]]),
                               tok.decode(ids[i + 1:i + 4]), ours_flags[i], flags[i])
        differing_records += differs

    n = len(records)
    speed = {k: sorted(n / t for t in ts) for k, ts in seconds.items()}
    ratio = sorted(o / u for u, o in zip(seconds['ours'], seconds['official']))
    print(f'records: {n} (Llama-3 tokenizer, max_length {args.max_length}); '
          f'{args.repeats} timed passes each')
    print(f'{"":24}{"pairs/s median":>16}{"min-max":>18}')
    for key, title in (('ours', 'ours (offsets, 1 pass)'), ('official', 'official (per sentence)')):
        xs = speed[key]
        print(f'{title:24}{median(xs):16.1f}{xs[0]:10.1f}-{xs[-1]:.1f}')
    print(f'speed ratio ours/official: median {median(ratio):.2f}x, min {ratio[0]:.2f}x, '
          f'max {ratio[-1]:.2f}x (per pass, same records)')
    print(f'records whose masks differ: {differing_records} / {n} '
          f'({100 * differing_records / n:.1f}%)')
    print(f'response tokens whose mask differs: {differing_tokens} / {total_tokens} '
          f'({100 * differing_tokens / total_tokens:.2f}%)')
    print(f'sides that silently fell back to plain DPO (official): {fallbacks}')
    print(f"response tokens with id 0 ('!'), dropped by XTuner's DPO loss: {zero_ids}")
    if example:
        side, before, tokn, after, o, t = example
        print(f'example ({side}): ...{before!r} [{tokn!r}] {after!r}...  '
              f'ours: {"in loss" if o else "masked"}, official: {"in loss" if t else "masked"}')
    return {'differing_records': differing_records, 'fallbacks': fallbacks,
            'ours_pairs_per_s': median(speed['ours']),
            'official_pairs_per_s': median(speed['official']), 'ratio': median(ratio)}


if __name__ == '__main__':
    main()
