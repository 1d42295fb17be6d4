"""The Arrow backend (dataset/arrow.py): exactly the list backend's items and report, errors
naming file, line and field, a cache keyed by data, tokenizer and max_length, built once by
rank 0, never trusted half-built; load_dataset sources; packing and cached reference log-probs
on the memory-mapped dataset."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SAMPLE
from maskdpo_xtuner.dataset import PackedPairs, build_maskdpo_dataset, maskdpo_collate_fn
from maskdpo_xtuner.dataset import arrow as arrow_module
from maskdpo_xtuner.dataset.records import RecordError
from test_masks import responses
from test_records import BAD, good, write


def both(path, tokenizer, cache_dir, max_length=300, **kw):
    lists = build_maskdpo_dataset(path, tokenizer, max_length, progress=False, **kw)
    arrow = build_maskdpo_dataset(path, tokenizer, max_length, progress=False, backend='arrow',
                                  cache_dir=str(cache_dir), **kw)
    return lists, arrow


def assert_same_items(lists, arrow):
    assert len(lists) == len(arrow)
    for i in range(len(lists)):
        assert lists[i] == arrow[i], i  # ids, labels, token classes, prompt_tokens, source


def builds(cache_dir):
    """The complete builds in ``cache_dir`` (not scratch, not failure notes)."""
    return sorted(f for f in os.listdir(cache_dir) if not f.startswith('.')
                  and os.path.isdir(os.path.join(cache_dir, f)))


@pytest.mark.parametrize('tok_name', ['bpe_tokenizer', 'unigram_tokenizer'])
def test_sample_items_and_report_are_the_lists_ones(tok_name, request, tmp_path):
    lists, arrow = both(SAMPLE, request.getfixturevalue(tok_name), tmp_path, max_length=256)
    assert_same_items(lists, arrow)
    assert arrow.report == lists.report
    col = arrow.data.features
    assert col['chosen_ids'].feature.dtype == 'int32'
    assert col['rejected_token_class'].feature.dtype == 'int8'


def test_adversarial_records_skip_and_filters(tmp_path, bpe_tokenizer):
    """Every bad record of test_records and every filter, in one file, with on_error='skip'."""
    no_correct = good(chosen_item={'sents': ['Ada was a mathematician.', 'She wrote notes.'],
                                   'type': ['hallucination', 'unverifiable']})
    same = good(rejected=good()['chosen'], rejected_item=good()['chosen_item'])
    long_prompt = good(prompt=[{'role': 'user', 'content': 'Who was Ada? ' * 200}])
    loose = good(chosen_item={'sents': ['Ada  was a\nmathematician.', 'She wrote notes.'],
                              'type': ['ok', 'ok']})
    records = [good(), '{"prompt": [', '', no_correct, same, long_prompt, loose, good()]
    records += [rec for rec, _ in BAD.values()]
    path = write(tmp_path, records)
    lists, arrow = both(path, bpe_tokenizer, tmp_path / 'c', on_error='skip')
    assert_same_items(lists, arrow)
    assert arrow.report == lists.report
    assert set(arrow.report['invalid']) == set(BAD) | {'bad_json'}
    assert arrow.report['loose_sentence_matches'] == 1 and len(arrow.report['filtered']) == 3


@pytest.mark.parametrize('reason', sorted(BAD))
def test_errors_name_file_line_and_field(tmp_path, bpe_tokenizer, reason):
    rec, field = BAD[reason]
    path = write(tmp_path, [good(), rec, good(), rec])
    errors = []
    for kw in ({}, {'backend': 'arrow', 'cache_dir': str(tmp_path / 'c'), 'num_proc': 2}):
        with pytest.raises(RecordError) as err:
            build_maskdpo_dataset(path, bpe_tokenizer, progress=False, **kw)
        errors.append(err.value)
    assert str(errors[0]) == str(errors[1])  # the first bad record, in file order
    assert (errors[1].reason, errors[1].line, errors[1].field) == (reason, 2, field)
    assert f'{path}:2' in str(errors[1])
    assert not builds(tmp_path / 'c')  # nothing cached; a note for the waiting ranks
    notes = [f for f in os.listdir(tmp_path / 'c') if f != '.tokenizers']
    assert len(notes) == 1 and notes[0].endswith('.failed')


def test_generated_responses_of_the_mask_properties(tmp_path_factory, unigram_tokenizer):
    """Responses drawn by test_masks' strategy (lists, Chinese, emoji, straddling tokens)."""
    @settings(max_examples=3, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(responses(), responses()), min_size=12, max_size=12))
    def run(sides):
        recs = []
        for (c, cs), (r, rs) in sides:
            if not c.strip() or not r.strip():
                continue
            recs.append({'prompt': 'Tell me about Ada.', 'chosen': c, 'rejected': r,
                         'chosen_item': _item(c, cs), 'rejected_item': _item(r, rs)})
        tmp = tmp_path_factory.mktemp('gen')
        lists, arrow = both(write(tmp, recs), unigram_tokenizer, tmp / 'c', max_length=64,
                            filters=[], num_proc=2)
        assert_same_items(lists, arrow)
        assert arrow.report == lists.report

    run()


def _item(text, spans):
    return {'sents': [text[s:e] for s, e, _ in spans],
            'type': ['hallucination' if h else 'no_hallucination' for _, _, h in spans],
            'spans': [[s, e] for s, e, _ in spans]}


def test_cache_hit_miss(tmp_path, bpe_tokenizer, unigram_tokenizer, monkeypatch):
    path = write(tmp_path, [json.loads(line) for line in open(SAMPLE)])
    cache = tmp_path / 'c'
    first = both(path, bpe_tokenizer, cache, 256)[1]
    assert len(builds(cache)) == 1

    def no_tokenizing(*a, **k):
        raise AssertionError('a cached start tokenized')

    with monkeypatch.context() as m:  # a second start opens the cache without tokenizing
        m.setattr(arrow_module, 'tokenize_pair', no_tokenizing)
        again = build_maskdpo_dataset(path, bpe_tokenizer, 256, progress=False,
                                      backend='arrow', cache_dir=str(cache))
        assert_same_items(first, again)
        assert again.report == first.report
    build_maskdpo_dataset(path, bpe_tokenizer, 200, progress=False, backend='arrow',
                          cache_dir=str(cache))
    assert len(builds(cache)) == 2  # max_length
    build_maskdpo_dataset(path, unigram_tokenizer, 256, progress=False, backend='arrow',
                          cache_dir=str(cache))
    assert len(builds(cache)) == 3  # tokenizer
    template = bpe_tokenizer.chat_template
    bpe_tokenizer.chat_template = '{# another version #}' + template
    try:
        build_maskdpo_dataset(path, bpe_tokenizer, 256, progress=False, backend='arrow',
                              cache_dir=str(cache))
    finally:
        bpe_tokenizer.chat_template = template
    assert len(builds(cache)) == 4  # the chat template is part of the tokenizer
    text = open(path).read()
    with open(path, 'w') as f:  # same path, same size, one word changed
        f.write(text.replace('Pecs', 'Pest'))
    changed = build_maskdpo_dataset(path, bpe_tokenizer, 256, progress=False, backend='arrow',
                                    cache_dir=str(cache))
    assert len(builds(cache)) == 5  # data content
    assert any(first[i] != changed[i] for i in range(len(first)))


SLOW_MAP = '''
import os, sys, time
sys.path.insert(0, {root!r})
from maskdpo_xtuner.dataset import build_maskdpo_dataset
from maskdpo_xtuner.offline.tiny import train_bpe_tokenizer

def slow(rec):
    if os.environ.get('HANG') and rec['prompt'][0]['content'].startswith('Tell'):
        open(os.environ['HANG'], 'w').close()
        time.sleep(600)
    return rec

ds = build_maskdpo_dataset({data!r}, train_bpe_tokenizer(), 256, dataset_map_fn=slow,
                           progress=False, backend='arrow', cache_dir={cache!r})
print('LEN', len(ds))
'''


def test_killed_build_is_not_trusted_and_other_ranks_wait(tmp_path):
    cache, marker = str(tmp_path / 'c'), str(tmp_path / 'hanging')
    script = tmp_path / 'build.py'
    script.write_text(SLOW_MAP.format(root=ROOT, data=SAMPLE, cache=cache))
    env = dict(os.environ, PYTHONPATH=ROOT, LOCAL_RANK='0', HANG=marker)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    _until(lambda: os.path.exists(marker), proc)
    os.kill(proc.pid, signal.SIGKILL)  # killed in the middle of tokenizing
    proc.wait()
    assert not builds(cache) and any(f.startswith('.building-') for f in os.listdir(cache))

    env.pop('HANG')
    waiter = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              env=dict(env, LOCAL_RANK='1'))  # waits: rank 0 builds
    time.sleep(1)
    assert waiter.poll() is None and not builds(cache)
    builder = subprocess.run([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                             timeout=300, check=True)
    assert b'LEN 32' in builder.stdout and len(builds(cache)) == 1
    out, _ = waiter.communicate(timeout=120)
    assert waiter.returncode == 0 and b'LEN 32' in out


def _until(cond, proc, timeout=120):
    t = time.time()
    while not cond():
        assert proc.poll() is None and time.time() - t < timeout, 'the build did not start'
        time.sleep(0.2)


def test_load_dataset_sources_parquet_folder_and_map_fn(tmp_path, bpe_tokenizer):
    import pandas as pd
    recs = [json.loads(line) for line in open(SAMPLE)]
    lists = build_maskdpo_dataset(SAMPLE, bpe_tokenizer, 256, progress=False)
    raw = [{'q': r['prompt'], 'good': r['chosen'], 'bad': r['rejected'],
            'good_sents': r['chosen_item'], 'bad_sents': r['rejected_item']} for r in recs]
    pd.DataFrame(raw).to_parquet(tmp_path / 'pairs.parquet')
    folder = tmp_path / 'folder'
    folder.mkdir()
    write(folder, recs, 'train.jsonl')
    for source, map_fn in ((dict(path='parquet', data_files=str(tmp_path / 'pairs.parquet')),
                            convert), (dict(path=str(folder)), None)):
        arrow = build_maskdpo_dataset(None, bpe_tokenizer, 256, progress=False,
                                      backend='arrow', cache_dir=str(tmp_path / 'c'),
                                      source=source, dataset_map_fn=map_fn)
        assert len(arrow) == len(lists)
        for i in range(len(lists)):
            a, b = dict(lists[i]), dict(arrow[i])
            assert b.pop('source') == f"{source['path']}:{i + 1}"  # row numbers
            a.pop('source')
            assert a == b
    broken = tmp_path / 'broken.parquet'
    pd.DataFrame(raw[:3] + [{'q': None, 'good': None, 'bad': None, 'good_sents': None,
                             'bad_sents': None}]).to_parquet(broken)
    with pytest.raises(RecordError, match=r'parquet:4: .*dataset_map_fn raised'):
        build_maskdpo_dataset(None, bpe_tokenizer, 256, progress=False, backend='arrow',
                              cache_dir=str(tmp_path / 'c'), dataset_map_fn=convert,
                              source=dict(path='parquet', data_files=str(broken)))


def convert(r):
    return {'prompt': list(r['q']), 'chosen': list(r['good']), 'rejected': list(r['bad']),
            'chosen_item': {k: v for k, v in r['good_sents'].items() if v is not None},
            'rejected_item': {k: v for k, v in r['bad_sents'].items() if v is not None}}


@pytest.mark.usefixtures('one_thread')
def test_packing_and_reference_cache_on_arrow(tmp_path, tiny_model_dir, cache):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    kw = dict(progress=False, ref_logps_cache=cache)
    lists = build_maskdpo_dataset(SAMPLE, tok, 256, **kw)
    arrow = build_maskdpo_dataset(SAMPLE, tok, 256, backend='arrow',
                                  cache_dir=str(tmp_path / 'c'), **kw)
    assert isinstance(arrow, arrow_module.ArrowPairs)
    for i in range(len(lists)):
        a, b = lists[i], arrow[i]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]
    p_lists, p_arrow = (PackedPairs(d, max_packed_length=600, seed=3) for d in (lists, arrow))
    assert p_lists.packs == p_arrow.packs
    for packed in (False, True):
        batch = ([p_lists[0]], [p_arrow[0]]) if packed else ([lists[i] for i in range(4)],
                                                            [arrow[i] for i in range(4)])
        x, y = (maskdpo_collate_fn(b, use_varlen_attn=packed)['data'] for b in batch)
        for k in x:
            if torch.is_tensor(x[k]):
                assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k


@pytest.mark.usefixtures('one_thread')
def test_precompute_ref_logps_on_the_arrow_dataset(tmp_path, tiny_model_dir, cache):
    from conftest import precompute
    out = precompute(tiny_model_dir, str(tmp_path / 'ref.pt'),
                     **{'train_dataloader.dataset.backend': 'arrow',
                        'train_dataloader.dataset.cache_dir': str(tmp_path / 'c')})
    a, b = (torch.load(p, weights_only=True) for p in (cache, out))
    assert a['meta']['data'] == b['meta']['data'] and torch.equal(a['offsets'], b['offsets'])
    assert torch.equal(a['logps'], b['logps'])
