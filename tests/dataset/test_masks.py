"""Exact sentence-to-token masks, checked character by character on two tokenizer families."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskdpo_xtuner.dataset.records import Pair, validate_record
from maskdpo_xtuner.dataset.tokenize import classify_tokens, render, tokenize_pair, tokenize_side
from maskdpo_xtuner.labels import CORRECT, END, HALLUCINATED, MIXED, PROMPT, SEPARATOR, UNLABELLED
from maskdpo_xtuner.model.loss import token_weights

PROMPT_MSGS = [{'role': 'user', 'content': 'Tell me about Ada.'}]

words = st.sampled_from(['Ada', 'was', 'born', 'in', 'London', '1815', 'Dr.', 'e.g.', 'U.S.A.',
                         'naïve', 'café', '数学家', '她', '出生于', '伦敦', '!', '(1843)', '"quoted"',
                         'Nobel', '—', '3.14', 'x²', '🙂', 'Ω'])
sentence = st.lists(words, min_size=1, max_size=7).map(' '.join).map(
    lambda s: s + '.')
separator = st.sampled_from([' ', '  ', '\n', '\n\n', '\n- ', '\n1. ', '\n\t', '', '; ', ' | '])


@st.composite
def responses(draw):
    """A response text built from labelled sentences and separators, with exact spans."""
    n = draw(st.integers(1, 6))
    lead = draw(st.sampled_from(['', '- ', '1. ', '** ']))
    text, spans = lead, []
    for i in range(n):
        s = draw(sentence)
        start = len(text)
        text += s
        spans.append((start, len(text), draw(st.booleans())))
        if i < n - 1:
            text += draw(separator)
    text += draw(st.sampled_from(['', '\n', ' (end)']))
    return text, spans


def char_labels(text_len, spans, shift):
    """Per character of the rendered text: None (no sentence) or the sentence's flag."""
    labels = [None] * text_len
    for s, e, h in spans:
        for i in range(s + shift, e + shift):
            labels[i] = h
    return labels


def check_side(tokenizer, response, spans, chosen):
    text, start, content = render(tokenizer, PROMPT_MSGS, response)
    shift = start - (len(response) - len(response.lstrip()) if content != response else 0)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    out = tokenize_side(tokenizer, PROMPT_MSGS, response, spans)
    assert out['input_ids'] == enc['input_ids']
    chars = char_labels(len(text), spans, shift)
    row = 0 if chosen else 1
    import torch
    cls = torch.tensor([out['token_class']] * 2)
    keep = token_weights(cls, 'both', separator_tokens='mask', end_tokens='mask')[row]
    end = start + len(content)
    for i, (a, b) in enumerate(enc['offset_mapping']):
        inside = [chars[j] for j in range(a, max(b, a + 1)) if j < len(chars)]
        if max(b, a + 1) <= start:
            assert out['token_class'][i] == PROMPT
            assert out['labels'][i] == -100
            continue
        assert out['labels'][i] == enc['input_ids'][i]
        if a >= end:
            assert out['token_class'][i] == END
            continue
        # the masked sentences of this side: hallucinated in chosen, correct in rejected
        touches_masked = any(c is (True if chosen else False) for c in inside)
        touches_kept = any(c is (False if chosen else True) for c in inside)
        if touches_masked:
            assert keep[i] == 0, (text[a:b], inside)
        elif touches_kept:
            assert keep[i] == 1, (text[a:b], inside)
        else:  # no sentence character: unlabelled if its gap holds a letter, else separator
            gap_letter = False
            for j in range(max(a, start), min(max(b, a + 1), end)):
                lo = hi = j
                while lo > start and chars[lo - 1] is None:
                    lo -= 1
                while hi < end and chars[hi] is None:
                    hi += 1
                gap_letter |= any(c.isalpha() for c in text[lo:hi])
            want = UNLABELLED if gap_letter else SEPARATOR
            assert out['token_class'][i] == want, (text[a:b], out['token_class'][i])
            if want == UNLABELLED:
                assert keep[i] == 0  # masked on both sides
    # every character of every sentence is covered by a token of that sentence's class
    for s, e, h in spans:
        covered = set()
        for i, (a, b) in enumerate(enc['offset_mapping']):
            if out['token_class'][i] in ((HALLUCINATED if h else CORRECT), MIXED):
                covered.update(range(a, b))
        assert set(range(s + shift, e + shift)) <= covered


@pytest.mark.parametrize('tok_name', ['bpe_tokenizer', 'unigram_tokenizer'])
def test_property_masks_follow_characters(tok_name, request):
    tokenizer = request.getfixturevalue(tok_name)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(responses(), st.booleans())
    def run(resp, chosen):
        text, spans = resp
        if not text.strip():
            return
        check_side(tokenizer, text, spans, chosen)

    run()


def test_truncation_keeps_masks_aligned(bpe_tokenizer):
    text = ' '.join(f'Fact number {i} is here.' for i in range(30))
    spans, cur = [], 0
    for i in range(30):
        s = text.index(f'Fact number {i} ', cur)
        e = s + len(f'Fact number {i} is here.')
        spans.append((s, e, i % 3 == 0))
        cur = e
    full = tokenize_side(bpe_tokenizer, PROMPT_MSGS, text, spans)
    for max_len in (40, 77, 120):
        cut = tokenize_side(bpe_tokenizer, PROMPT_MSGS, text, spans, max_length=max_len)
        assert len(cut['input_ids']) == max_len
        assert cut['token_class'] == full['token_class'][:max_len]
        assert cut['labels'] == full['labels'][:max_len]
        assert HALLUCINATED in cut['token_class']  # the mask survived the cut


def test_straddling_token_is_masked_on_both_sides():
    # sentence A = chars [0, 4) correct, B = [4, 8) hallucinated; a token (3, 6) touches both
    offsets = [(0, 3), (3, 6), (6, 8), (8, 9), (9, 20)]
    cls = classify_tokens(offsets, 0, 9, [(0, 4, False), (4, 8, True)], 0)
    assert cls == [CORRECT, MIXED, HALLUCINATED, SEPARATOR, END]
    import torch
    w = token_weights(torch.tensor([cls, cls]), 'both')
    assert w[0].tolist() == [1, 0, 0, 1, 1] and w[1].tolist() == [0, 0, 1, 1, 1]


def test_end_of_turn_and_separators_follow_policies(bpe_tokenizer):
    rec = {'prompt': PROMPT_MSGS,
           'chosen': 'Ada was born in London.\n\nShe was born in 1900.',
           'rejected': 'Ada was born in Paris.\n\nShe was born in 1815.',
           'chosen_item': {'sents': ['Ada was born in London.', 'She was born in 1900.'],
                           'type': ['ok', 'contradictory']},
           'rejected_item': {'sents': ['Ada was born in Paris.', 'She was born in 1815.'],
                             'type': ['contradictory', 'ok']}}
    item = tokenize_pair(bpe_tokenizer, validate_record(rec))
    eot = bpe_tokenizer.convert_tokens_to_ids('<|eot_id|>')
    assert item['chosen_ids'][-1] == eot and item['chosen_token_class'][-1] == END
    assert SEPARATOR in item['chosen_token_class']  # the blank line
    import torch
    from torch.nn.utils.rnn import pad_sequence
    cls = pad_sequence([torch.tensor(item['chosen_token_class']),
                        torch.tensor(item['rejected_token_class'])], True, PROMPT)
    keep = token_weights(cls, 'both')
    drop_all = token_weights(cls, 'both', separator_tokens='mask', end_tokens='mask')
    assert keep[0, len(item['chosen_ids']) - 1] == 1 and drop_all[0, len(item['chosen_ids']) - 1] == 0
    assert (keep - drop_all).sum() == (cls == SEPARATOR).sum() + (cls == END).sum()


def test_template_that_trims_whitespace(bpe_tokenizer):
    text = '  \nAda was born in London. She was a painter.\n '
    pair = Pair(PROMPT_MSGS, text, text, [(3, 26, False), (27, 45, True)],
                [(3, 26, False), (27, 45, True)])
    assert text[3:26] == 'Ada was born in London.' and text[27:45] == 'She was a painter.'
    item = tokenize_pair(bpe_tokenizer, pair)
    toks = bpe_tokenizer.convert_ids_to_tokens(item['chosen_ids'])
    hall = ''.join(t for t, c in zip(toks, item['chosen_token_class']) if c == HALLUCINATED)
    assert hall.replace('Ġ', ' ').strip() == 'She was a painter.'


@pytest.mark.parametrize('tok_name', ['bpe_tokenizer', 'unigram_tokenizer'])
def test_chinese_sentences(tok_name, request):
    tok = request.getfixturevalue(tok_name)
    sents = ['林晓是一位化学家。', '她出生于杭州！', '她获得过金星奖。']
    text = ''.join(sents)
    spans, cur = [], 0
    for s, h in zip(sents, [False, True, False]):
        spans.append((cur, cur + len(s), h))
        cur += len(s)
    check_side(tok, text, spans, chosen=True)
    check_side(tok, text, spans, chosen=False)
