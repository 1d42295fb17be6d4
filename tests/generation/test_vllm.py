"""The OpenAI backend against real vLLM servers (CPU) serving SmolLM2-135M-Instruct.

Two servers serve a copy of the model whose generation_config.json asks for repetition_penalty
1.3, min_p 0.05 and temperature 0.6: vLLM applies those to every field a request leaves out,
so the tests see whether the backend sends every sampling field. Both servers need the
venv of ``bash tools/setup_vllm.sh`` (skipped, saying so, when it is absent); each takes ~3.5 GB
and ~30-60 s to start.
"""
import json
import os
import re
import signal
import threading
import time

import pytest
import requests

from conftest import ROOT
from maskdpo_xtuner.generation import serve
from maskdpo_xtuner.generation import OpenAIBackend, SamplingParams, TransformersBackend
from maskdpo_xtuner.generation.base import derive_seed

pytestmark = [pytest.mark.vllm, pytest.mark.real_model, pytest.mark.slow]
KEY, NAME = 'test-key', 'smollm2'
POISON = {'repetition_penalty': 1.3, 'min_p': 0.05, 'temperature': 0.6}
QUESTIONS = ['Tell me about France.', 'Tell me a bio of Marie Curie.', 'What is the capital of Japan?',
             'Name three rivers in Europe.', 'Who wrote Hamlet?', 'What is photosynthesis?',
             'Tell me about the Moon.', 'What is the largest ocean?']
CONVS = [[{'role': 'user', 'content': q}] for q in QUESTIONS]
GREEDY = SamplingParams.greedy(max_new_tokens=32)


@pytest.fixture(scope='module')
def vllm_py():
    # $MASKDPO_VLLM_PYTHON, else the setup script's venv if it is built
    python = serve.vllm_python(os.path.join(ROOT, 'tools', 'setup_vllm.sh'))
    if python is None:
        pytest.skip('the vLLM environment is not built (bash tools/setup_vllm.sh builds it)')
    return python


@pytest.fixture(scope='module')
def poisoned_dir(smollm2_dir, tmp_path_factory):
    """SmolLM2 with sampling defaults in generation_config.json (weights linked, not copied)."""
    out = tmp_path_factory.mktemp('smollm2_poisoned')
    for name in os.listdir(smollm2_dir):
        if name != 'generation_config.json':
            os.symlink(os.path.join(smollm2_dir, name), out / name)
    gen = json.load(open(os.path.join(smollm2_dir, 'generation_config.json')))
    (out / 'generation_config.json').write_text(json.dumps({**gen, **POISON, 'do_sample': True}))
    return str(out)


@pytest.fixture(scope='module')
def servers(vllm_py, poisoned_dir, tmp_path_factory):
    """Two servers, each bound to its own core, started together; stopped at the end."""
    logs = tmp_path_factory.mktemp('vllm_logs')
    made = []
    for i, cpu in enumerate(('0', '1')):
        port = serve.free_port()
        cmd = serve.vllm_command(poisoned_dir, port, python=vllm_py, api_key=KEY,
                                 served_name=NAME)
        made.append(serve.Server(cmd, port, logs / f'vllm{i}.log', env=serve.vllm_env(1, cpu),
                                 api_key=KEY))
    try:
        for s in made:
            s.start()
        t0 = time.monotonic()
        for s in made:
            s.wait_ready()
        print(f'[test_vllm] two servers ready in {time.monotonic() - t0:.0f} s')
        yield made
    finally:
        for s in made:
            s.stop()


def backend(*urls, **kw) -> OpenAIBackend:
    return OpenAIBackend(list(urls), model=NAME, api_key=KEY, **kw)


def logged_params(log: str) -> list:
    """The SamplingParams vLLM logged for each chat request, as dicts of their simple fields."""
    out = []
    for line in open(log, errors='replace'):
        m = re.search(r'Received request chatcmpl-\S+ params: SamplingParams\((.*)\), lora', line)
        if m:
            out.append({k: v for k, v in re.findall(r'(\w+)=([^,\[\]]+)', m.group(1))})
    return out


@pytest.fixture(scope='module')
def reference(servers):
    """Greedy answers through the first server alone, for the failover / restart checks."""
    return backend(servers[0].url, concurrency=4).generate(CONVS, GREEDY)


def test_a_burst_of_seeded_requests_keeps_the_engine_alive(servers):
    """160 seeded requests, 64 in flight, prompts of 10 to 400 tokens: with chunked prefill on
    (vLLM's default) the same burst killed the engine ("CPU Generator does not use offset",
    serve.vllm_command)."""
    convs = [[{'role': 'user', 'content': f'Tell me about country number {i}. ' * (1 + i % 40)}]
             for i in range(160)]
    params = SamplingParams(max_new_tokens=4, temperature=0.8, top_k=40, seed=7)
    out = backend(servers[1].url, concurrency=64, retry_deadline=30).generate(convs, params)
    assert len(out) == 160 and all(len(r) == 1 and r[0] for r in out)
    assert 'does not use offset' not in open(servers[1].log, errors='replace').read()


def test_api_key_is_required_and_sent(servers):
    url = servers[0].url
    assert requests.get(url + '/v1/models', timeout=10).status_code == 401
    with pytest.raises(RuntimeError, match='HTTP 401'):  # a client error: no retrying
        OpenAIBackend([url], model=NAME, api_key='wrong').generate(CONVS[:1], GREEDY)
    assert backend(url).generate(CONVS[:1], GREEDY)[0][0]


def test_every_sampling_field_reaches_the_engine(servers):
    srv = servers[0]
    seen = len(logged_params(srv.log))
    params = SamplingParams(max_new_tokens=16, temperature=0.8, top_k=40, top_p=1.0, seed=4242)
    out = backend(srv.url).generate(CONVS[:1], params, n=2)
    assert len(out[0]) == 2 and all(out[0])
    # a request that leaves the fields out gets the folder's defaults: the poison is real
    requests.post(srv.url + '/v1/chat/completions', timeout=120,
                  headers={'Authorization': f'Bearer {KEY}'},
                  json={'model': NAME, 'messages': CONVS[0], 'max_tokens': 4})
    logged = logged_params(srv.log)[seen:]
    copies = sorted(str(derive_seed(4242, j)) for j in range(2))  # one seed per copy
    ours = sorted((p for p in logged if p['seed'] in copies), key=lambda p: p['seed'])
    assert [p['seed'] for p in ours] == copies
    for p in ours:
        assert (p['temperature'], p['top_k'], p['top_p'], p['max_tokens'], p['n']) == \
            ('0.8', '40', '1.0', '16', '1')
        assert (p['repetition_penalty'], p['min_p'], p['presence_penalty'],
                p['frequency_penalty']) == ('1.0', '0.0', '0.0', '0.0')
    bare = [p for p in logged if p['seed'] == 'None']
    assert len(bare) == 1 and (bare[0]['repetition_penalty'], bare[0]['min_p']) == ('1.3', '0.05')


def test_tokens_and_greedy_equal_transformers(servers, poisoned_dir, smollm2_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(poisoned_dir)
    for conv in CONVS[:3]:  # the engine's encoding of the chat equals apply_chat_template
        r = requests.post(servers[0].url + '/tokenize', timeout=30,
                          headers={'Authorization': f'Bearer {KEY}'},
                          json={'model': NAME, 'messages': conv, 'add_generation_prompt': True})
        assert r.json()['tokens'] == tok.apply_chat_template(conv, add_generation_prompt=True)
    served = backend(servers[0].url, concurrency=4).generate(CONVS, GREEDY)
    local = TransformersBackend(smollm2_dir, batch_size=8).generate(CONVS, GREEDY)
    assert served == local  # the served folder's sampling defaults are overridden
    poisoned = TransformersBackend(poisoned_dir, batch_size=8).generate(CONVS, GREEDY)
    assert poisoned == local  # and so are they in transformers' model.generate
    france = served[0][0]
    assert 'France' in france and ' is ' in france  # words with their spaces, not "namedSmolLM"


def test_failover_when_one_of_two_servers_stops_mid_run(servers, reference):
    a, b = servers
    if not b.healthy():
        b.start().wait_ready()
    seen_b = len(logged_params(b.log))
    result, run = {}, backend(a.url, b.url, concurrency=4, cooldown=120)
    worker = threading.Thread(target=lambda: result.setdefault('out', run.generate(
        CONVS * 3, GREEDY)))
    worker.start()
    while len(logged_params(b.log)) < seen_b + 2 and worker.is_alive():
        time.sleep(0.1)
    os.killpg(b.proc.pid, signal.SIGKILL)  # a crash: its requests in flight are cut off
    assert worker.is_alive(), 'the run ended before the server was stopped: nothing tested'
    b.stop()
    worker.join(600)
    assert result['out'] == reference * 3  # every answer once, in order, none lost
    assert len(logged_params(b.log)) >= seen_b + 2 and b.url not in run.healthy_endpoints()


def test_a_server_restart_within_the_retry_deadline_is_survived(servers, reference):
    b = servers[1]
    b.stop()  # down (if the failover test left it up), and a run starts against it alone
    result, run = {}, backend(b.url, concurrency=4, retry_deadline=300)
    worker = threading.Thread(target=lambda: result.setdefault('out', run.generate(
        CONVS, GREEDY)))
    t0 = time.monotonic()
    worker.start()
    time.sleep(3)
    b.start()
    ready = b.wait_ready()
    worker.join(600)
    print(f'[test_vllm] restart: ready after {ready:.0f} s, run done after '
          f'{time.monotonic() - t0:.0f} s')
    assert result['out'] == reference
