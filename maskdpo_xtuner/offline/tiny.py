"""Tiny tokenizers and models built offline, in seconds, for tests and the CPU default job.

* ``train_bpe_tokenizer``: byte-level BPE (the Llama-3 / GPT family) with a Llama-3-style chat
  template. Special tokens are appended after training, so id 0 is ``!`` exactly as in Llama-3.
* ``train_unigram_tokenizer``: a SentencePiece-style Unigram model (``▁`` word boundaries) with a
  ChatML-style template, to check that nothing depends on one tokenizer family.
* ``train_word_tokenizer``: one token per word (byte-level pre-tokens such as ``ĠLyon``, so
  decoding restores the text exactly): the synthetic world's tokenizer, where every name must
  be a single token for a tiny model to copy it.
* ``build_tiny_llama``: a randomly initialised ``LlamaForCausalLM`` saved as a HF folder.

Nothing here downloads anything.
"""
import os
from typing import Iterable, Iterator, Optional

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{{ message['content'] | trim }}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{{ message['content'] }}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

LLAMA3_SPECIALS = ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>']
CHATML_SPECIALS = ['<|im_start|>', '<|im_end|>', '<unk>']

_SEED_TEXT = """\
Ada Lovelace was an English mathematician. She worked with Charles Babbage on the Analytical
Engine! Her notes include the first published algorithm; many call her the first programmer.
The city of Lyon lies at the confluence of the Rhone and the Saone. It was founded in 43 BC.
1. Early life: born in London in 1815.
2. Career: wrote notes (1843) on the engine, e.g. Note G.
- Dr. Smith, Mr. Jones and Mrs. Brown met at 10 a.m. on Jan. 5th, 2021 -- "Why?" she asked.
Marie Curie won two Nobel Prizes. She was born in Warsaw, Poland, in 1867.
艾达·洛夫莱斯是英国数学家。她与查尔斯·巴贝奇合作研究分析机！她的笔记包含第一个算法；
里昂位于罗讷河与索恩河的交汇处。它建于公元前43年。
玛丽·居里两次获得诺贝尔奖？她出生于波兰华沙。
"""


def default_corpus(extra: Iterable[str] = ()) -> list:
    lines = _SEED_TEXT.splitlines() * 20
    return lines + list(extra)


def train_bpe_tokenizer(out_dir: Optional[str] = None, corpus: Iterable[str] = (),
                        vocab_size: int = 600):
    """Byte-level BPE + Llama-3-style chat template; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(default_corpus(corpus), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<|begin_of_text|>',
                                   eos_token='<|eot_id|>', pad_token='<|eot_id|>')
    fast.add_special_tokens({'additional_special_tokens': LLAMA3_SPECIALS[1:3]})
    fast.chat_template = LLAMA3_TEMPLATE
    if out_dir:
        fast.save_pretrained(out_dir)
    return fast


def train_unigram_tokenizer(out_dir: Optional[str] = None, corpus: Iterable[str] = (),
                            vocab_size: int = 500):
    """SentencePiece-style Unigram (Metaspace) + ChatML template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, show_progress=False,
                                      special_tokens=CHATML_SPECIALS, unk_token='<unk>')
    tok.train_from_iterator(default_corpus(corpus), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>',
                                   eos_token='<|im_end|>', pad_token='<|im_end|>',
                                   additional_special_tokens=['<|im_start|>'])
    fast.chat_template = CHATML_TEMPLATE
    if out_dir:
        fast.save_pretrained(out_dir)
    return fast


def train_word_tokenizer(out_dir: Optional[str] = None, corpus: Iterable[str] = ()):
    """A word-level vocabulary over byte-level pre-tokens + the Llama-3-style chat template.
    Words never seen in ``corpus`` become ``<unk>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Regex
    # each newline is its own piece: otherwise the "\n\n" that ends a generation prompt would
    # be one (unseen) piece, while inside a training conversation it splits in two
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex('\n'), behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    words = {}
    for text in corpus:
        for piece, _ in pre.pre_tokenize_str(text):
            words.setdefault(piece, len(words))
    vocab = {'<unk>': 0}
    for w in sorted(words, key=words.get):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>',
                                   bos_token='<|begin_of_text|>', eos_token='<|eot_id|>',
                                   pad_token='<|eot_id|>')
    fast.add_special_tokens({'additional_special_tokens': LLAMA3_SPECIALS[1:3]})
    fast.chat_template = LLAMA3_TEMPLATE
    if out_dir:
        fast.save_pretrained(out_dir)
    return fast


def build_tiny_llama(tokenizer, out_dir: Optional[str] = None, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, intermediate_size: int = 128,
                     max_position_embeddings: int = 1024, seed: int = 0):
    """A random ``LlamaForCausalLM`` sized for CPU tests; saved with its tokenizer if asked."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads,
                         num_key_value_heads=num_heads, intermediate_size=intermediate_size,
                         max_position_embeddings=max_position_embeddings,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
                         torch_dtype='float32')
    model = LlamaForCausalLM(config)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return model


def corpus_from_pairs(paths: Iterable[str]) -> Iterator[str]:
    """Every prompt and response text of pair files (JSONL, the official format)."""
    from maskdpo_xtuner.io.validate import RecordError, iter_lines
    for path in paths:
        for line, rec in iter_lines(path):  # not UTF-8, not JSON, empty: named
            if isinstance(rec, RecordError):
                raise rec
            for key in ('prompt', 'chosen', 'rejected'):
                msgs = rec.get(key) if isinstance(rec, dict) else None
                if not isinstance(msgs, list) or not all(
                        isinstance(m, dict) and isinstance(m.get('content'), str) for m in msgs):
                    raise RecordError('bad_message', key, 'expected a list of {"role", '
                                      '"content"} messages', path, line)
                for msg in msgs:
                    yield msg['content']


def build_tiny_model(out_dir: str, data: Iterable[str], vocab_size: int = 800,
                     hidden_size: int = 64, num_layers: int = 2, seed: int = 0):
    """A byte-level BPE trained on the text of the pair files ``data`` and a random tiny Llama,
    saved as a HF folder; returns the tokenizer."""
    tok = train_bpe_tokenizer(corpus=list(corpus_from_pairs(data)), vocab_size=vocab_size)
    build_tiny_llama(tok, out_dir, hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    return tok
