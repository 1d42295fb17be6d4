"""Benchmark: our exact aligner vs the official per-sentence re-tokenization, same records.

    python tools/bench_masks.py                 # 2,000 generated records, real Llama-3 tokenizer
    python tools/bench_masks.py --records 500 --max-length 1024

For each record (prompt + chosen + rejected, sentences labelled) both approaches decide, for
every response token, whether it is in the loss (Mask-DPO: chosen keeps correct sentences,
rejected keeps hallucinated ones; separators and the end-of-turn token are kept by both).

* ours: render once, tokenize once with offsets, classify tokens by character position
  (maskdpo_xtuner/dataset/tokenize.py);
* official (re-implemented from its description): tokenize each sentence on its own and lay the
  token counts end to end from the prompt length; if the masks overrun the (truncated) sequence,
  fall back silently to the unmasked labels (plain DPO for that pair).

Printed: pairs/s for each, records whose masks differ, tokens that differ, silent fallbacks, and
tokens with id 0 that XTuner's loss would also drop. Both run in one process on the same data.
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


def ours_side(item, side):
    kept_classes = {0, 2, 3} if side == 'chosen' else {1, 2, 3}  # correct/halluc., sep, end
    return [c in kept_classes for c in item[f'{side}_token_class']]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--records', type=int, default=2000)
    p.add_argument('--max-length', type=int, default=1024)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)

    from maskdpo_xtuner.offline.llama3 import load_llama3_tokenizer
    tok = load_llama3_tokenizer()
    records = make_records(args.records, args.seed)

    t0 = time.perf_counter()
    ours = [tokenize_pair(tok, validate_record(r), args.max_length) for r in records]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    official = [{side: official_side(tok, r['prompt'], r[side][0]['content'], r[f'{side}_item'],
                                     side, args.max_length) for side in ('chosen', 'rejected')}
                for r in records]
    t_official = time.perf_counter() - t0

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
    print(f'records: {n} (Llama-3 tokenizer, max_length {args.max_length})')
    print(f'{"":24}{"pairs/s":>10}')
    print(f'{"ours (offsets, 1 pass)":24}{n / t_ours:10.1f}')
    print(f'{"official (per sentence)":24}{n / t_official:10.1f}')
    print(f'speed ratio ours/official: {t_official / t_ours:.2f}x')
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
            'ours_pairs_per_s': n / t_ours, 'official_pairs_per_s': n / t_official}


if __name__ == '__main__':
    main()
