"""The real Llama-3 tokenizer (the paper's model), built offline from the ``llama-models`` package.

``llama-models`` ships Llama-3's tiktoken BPE file; transformers' ``TikTokenConverter`` turns it
into a fast tokenizer (128,256 ids; id 0 is ``!``; ``<|eot_id|>`` is 128009) in seconds, without
the model hub. The chat template is ours: it reproduces the Llama-3.1-Instruct format, including
the system header with the knowledge-cutoff and date lines that Llama-3.1 inserts when no system
message is given. Used by tests and benchmarks that need the exact tokenization of the 8B model.
"""
import functools

LLAMA31_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] | trim %}{% set rest = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set rest = messages %}{% endif %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\n\n' }}"
    "{{ 'Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n' }}"
    "{{ system }}{{ '<|eot_id|>' }}"
    "{% for message in rest %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{{ message['content'] | trim }}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")


@functools.lru_cache(maxsize=1)
def load_llama3_tokenizer():
    """A ``PreTrainedTokenizerFast`` identical in its ids to Llama-3.1-8B-Instruct's."""
    import os
    from pathlib import Path

    import llama_models.llama3 as llama3_pkg
    from llama_models.llama3.tokenizer import Tokenizer as TiktokenLlama3
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = os.path.join(os.path.dirname(llama3_pkg.__file__), 'tokenizer.model')
    reference = TiktokenLlama3(Path(path))  # gives the special-token names in id order
    specials = sorted(reference.special_tokens, key=reference.special_tokens.get)
    converter = TikTokenConverter(vocab_file=path, pattern=reference.pat_str,
                                  additional_special_tokens=specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=converter.converted(),
                                  bos_token='<|begin_of_text|>', eos_token='<|eot_id|>',
                                  pad_token='<|finetune_right_pad_id|>')
    tok.chat_template = LLAMA31_TEMPLATE
    return tok
