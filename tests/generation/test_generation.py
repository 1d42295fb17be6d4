"""Generation backends: transformers on a tiny offline model, the OpenAI-compatible client over a
real local socket, LMDeploy up to the GPU boundary."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from maskdpo_xtuner.generation.base import derive_seed
from maskdpo_xtuner.generation import (LMDeployBackend, OpenAIBackend, SamplingParams,
                                       TransformersBackend, build_backend, build_generation_config)

CONVS = [
    [{'role': 'user', 'content': 'Who was Ada Lovelace?'}],
    [{'role': 'system', 'content': 'Answer briefly.'},
     {'role': 'user', 'content': 'Where is Lyon? Tell me about the Rhone and the Saone rivers.'}],
    [{'role': 'user', 'content': '玛丽·居里出生在哪里？'}],
]


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    from maskdpo_xtuner.offline.tiny import build_tiny_llama, train_bpe_tokenizer
    out = str(tmp_path_factory.mktemp('tiny_gen') / 'model')
    build_tiny_llama(train_bpe_tokenizer(), out)
    return out


@pytest.fixture(scope='module')
def hf_backend(tiny_model):
    return TransformersBackend(tiny_model, batch_size=4)


# ---------------------------------------------------------------- transformers

def test_transformers_shapes_and_no_special_tokens(hf_backend):
    out = hf_backend.generate(CONVS, SamplingParams(max_new_tokens=8, seed=0), n=3)
    assert len(out) == len(CONVS) and all(len(r) == 3 for r in out)
    assert all(isinstance(t, str) for r in out for t in r)
    assert not any('<|eot_id|>' in t or '<|start_header_id|>' in t for r in out for t in r)


def test_transformers_seeded_sampling_is_deterministic(hf_backend):
    p = SamplingParams(max_new_tokens=12, seed=123)
    a, b = hf_backend.generate(CONVS, p, n=2), hf_backend.generate(CONVS, p, n=2)
    assert a == b
    assert len({t for r in a for t in r}) > 1  # sampling, not the same string everywhere


def test_transformers_greedy_repeatable_and_padding_invariant(tiny_model, hf_backend):
    p = SamplingParams.greedy(max_new_tokens=12)
    batched = hf_backend.generate(CONVS, p, n=2)
    assert batched == hf_backend.generate(CONVS, p, n=2)
    assert all(r[0] == r[1] for r in batched)  # greedy copies agree
    one_by_one = TransformersBackend(tiny_model, batch_size=1).generate(CONVS, p, n=1)
    assert [r[0] for r in batched] == [r[0] for r in one_by_one]  # left padding is harmless


def test_transformers_stops_at_eos(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    calls = []

    def force_eos(module, inputs, logits):  # the model always wants to end its turn
        calls.append(1)
        logits[..., tok.eos_token_id] += 1e4
        return logits
    model.lm_head.register_forward_hook(force_eos)
    backend = TransformersBackend(model, tokenizer=tok, batch_size=8)
    assert backend.generate(CONVS, SamplingParams(max_new_tokens=20, seed=0), n=2) == \
        [['', '']] * 3  # <|eot_id|> is not in the text
    assert len(calls) == 1  # one forward pass: generation stopped at the first eos


def test_transformers_generate_kwargs_explicit(hf_backend):
    kw = hf_backend._generate_kwargs(SamplingParams(max_new_tokens=7))
    assert kw['do_sample'] is True and kw['top_k'] == 40 and kw['temperature'] == 0.8
    assert kw['top_p'] == 1.0 and kw['max_new_tokens'] == 7
    assert kw['repetition_penalty'] == 1.0 and kw['min_p'] is None
    kw = hf_backend._generate_kwargs(SamplingParams.greedy(5))
    assert kw['do_sample'] is False and kw['top_k'] is None and kw['temperature'] is None
    assert kw['repetition_penalty'] == 1.0  # explicit: generation_config.json never applies
    with pytest.raises(ValueError, match='presence/frequency'):
        hf_backend._generate_kwargs(SamplingParams(presence_penalty=0.5))


# ---------------------------------------------------------------- OpenAI-compatible server

class FakeServer:
    """A real HTTP server on 127.0.0.1 answering chat completions in the OpenAI format; it
    records each request body and can answer HTTP 500 to the first ``fail_first`` requests."""

    def __init__(self, name, fail_first=0, delay=0.0):
        self.name, self.fail_first, self.bodies, self.lock = name, fail_first, [], threading.Lock()
        self.delay, self.in_flight, self.max_in_flight = delay, 0, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
                with server.lock:
                    server.bodies.append((self.path, body))
                    fail = server.fail_first > 0
                    server.fail_first -= fail
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                time.sleep(server.delay)
                with server.lock:
                    server.in_flight -= 1
                if fail:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b'boom')
                    return
                text = f"{server.name}|{body['messages'][-1]['content']}|{body.get('seed')}"
                data = json.dumps({'id': 'x', 'object': 'chat.completion', 'choices': [
                    {'index': 0, 'message': {'role': 'assistant', 'content': text},
                     'finish_reason': 'stop'}]}).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made = []

    def make(name, fail_first=0, delay=0.0):
        made.append(FakeServer(name, fail_first, delay))
        return made[-1]
    yield make
    for s in made:
        s.close()


def test_openai_request_body_and_order(servers):
    srv = servers('a')
    backend = OpenAIBackend([srv.url + '/v1/'], model='policy', concurrency=4)
    out = backend.generate(CONVS, SamplingParams(max_new_tokens=64, seed=7), n=2)
    assert [[t.split('|')[1] for t in r] for r in out] == \
        [[c[-1]['content']] * 2 for c in CONVS]  # input order
    copies = [str(derive_seed(7, 0)), str(derive_seed(7, 1))]  # generation/base.py
    assert [[t.split('|')[2] for t in r] for r in out] == [copies] * 3  # seed per copy
    assert len(srv.bodies) == 6
    for path, body in srv.bodies:
        assert path == '/v1/chat/completions'
        assert body['model'] == 'policy' and body['max_tokens'] == 64
        assert body['temperature'] == 0.8 and body['top_k'] == 40 and body['top_p'] == 1.0
        assert body['messages'] in CONVS and body['n'] == 1
        # neutral values sent, so the model folder's generation_config.json never applies
        assert (body['repetition_penalty'], body['min_p'], body['presence_penalty'],
                body['frequency_penalty']) == (1.0, 0.0, 0.0, 0.0)
    greedy = backend.request_body(CONVS[0], SamplingParams.greedy(9), seed=None)
    assert greedy['top_k'] == 1 and 'seed' not in greedy and greedy['max_tokens'] == 9
    assert greedy['repetition_penalty'] == 1.0 and greedy['min_p'] == 0.0
    set_ = backend.request_body(CONVS[0], SamplingParams(repetition_penalty=1.2, min_p=0.05,
                                                        presence_penalty=0.5,
                                                        frequency_penalty=0.25), seed=1)
    assert (set_['repetition_penalty'], set_['min_p'], set_['presence_penalty'],
            set_['frequency_penalty']) == (1.2, 0.05, 0.5, 0.25)


def test_openai_round_robin(servers):
    a, b = servers('a'), servers('b')
    backend = OpenAIBackend([a.url, b.url], model='m', concurrency=3)
    out = backend.generate(CONVS, SamplingParams(max_new_tokens=8), n=2)
    assert len(a.bodies) == len(b.bodies) == 3
    assert [t.split('|')[0] for r in out for t in r] == ['a', 'b'] * 3


def test_openai_retries_after_500(servers):
    srv = servers('a', fail_first=1)
    backend = OpenAIBackend([srv.url], model='m', concurrency=1, backoff=0.01)
    out = backend.generate(CONVS[:1], SamplingParams(max_new_tokens=8), n=1)
    assert out[0][0].startswith('a|') and len(srv.bodies) == 2


def test_openai_gives_up_on_persistent_500(servers):
    srv = servers('a', fail_first=100)
    backend = OpenAIBackend([srv.url], model='m', max_retries=2, backoff=0.01)
    with pytest.raises(RuntimeError, match='HTTP 500'):
        backend.generate(CONVS[:1], SamplingParams(max_new_tokens=8))
    assert len(srv.bodies) == 3


def test_openai_fails_over_to_the_healthy_endpoint_and_skips_the_broken_one(servers):
    broken, good = servers('broken', fail_first=10 ** 6), servers('good')
    backend = OpenAIBackend([broken.url, good.url], model='m', concurrency=1, cooldown=60,
                            backoff=0.01)
    out = backend.generate(CONVS, SamplingParams(max_new_tokens=8, seed=0), n=2)
    # every completion exactly once, in order, all from the healthy server
    assert [[t.split('|')[1:] for t in r] for r in out] == \
        [[[c[-1]['content'], str(derive_seed(0, 0))], [c[-1]['content'], str(derive_seed(0, 1))]]
         for c in CONVS]
    assert {t.split('|')[0] for r in out for t in r} == {'good'}
    assert len(broken.bodies) == 1  # tried once, then skipped for its cool-down
    assert len(good.bodies) == 6 and backend.healthy_endpoints() == [good.url]


def test_openai_retries_until_the_deadline_not_a_fixed_count(servers):
    srv = servers('a', fail_first=6)  # the old client gave up after 4 attempts
    backend = OpenAIBackend([srv.url], model='m', concurrency=1, backoff=0.01, cooldown=0)
    assert backend.generate(CONVS[:1], SamplingParams(max_new_tokens=8))[0][0].startswith('a|')
    assert len(srv.bodies) == 7
    dead = servers('dead', fail_first=10 ** 6)
    backend = OpenAIBackend([dead.url], model='m', retry_deadline=0.5, backoff=0.05,
                            max_backoff=0.1)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r'retry deadline 0.5 s.*HTTP 500'):
        backend.generate(CONVS[:1], SamplingParams(max_new_tokens=8))
    assert 0.5 <= time.monotonic() - t0 < 5 and len(dead.bodies) > 3


def test_openai_concurrency_is_what_is_asked(servers):
    srv = servers('a', delay=0.3)
    OpenAIBackend([srv.url], model='m', concurrency=5).generate(
        CONVS, SamplingParams(max_new_tokens=8), n=4)
    assert srv.max_in_flight == 5 and len(srv.bodies) == 12


def test_openai_endpoint_down_names_it():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}'
    backend = build_backend('openai', endpoints=[url], model='m', max_retries=1, backoff=0.01)
    with pytest.raises(RuntimeError, match=f'127.0.0.1:{port}.*2 attempts'):
        backend.generate(CONVS[:1], SamplingParams(max_new_tokens=8))


# ---------------------------------------------------------------- LMDeploy

def test_lmdeploy_generation_config_sampling():
    cfg = build_generation_config(SamplingParams(max_new_tokens=100, seed=3))
    assert cfg.do_sample is True and cfg.top_k == 40 and cfg.temperature == 0.8
    assert cfg.top_p == 1.0 and cfg.max_new_tokens == 100 and cfg.random_seed == 3
    assert cfg.repetition_penalty == 1.0 and cfg.min_p == 0.0
    assert cfg.n == 1


def test_lmdeploy_generation_config_greedy():
    cfg = build_generation_config(SamplingParams.greedy(50))
    assert cfg.do_sample is False and cfg.top_k == 1 and cfg.max_new_tokens == 50


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only refusal')
def test_lmdeploy_refuses_without_cuda(tiny_model):
    with pytest.raises(RuntimeError, match='NVIDIA GPU'):
        LMDeployBackend(tiny_model)
    with pytest.raises(RuntimeError, match='NVIDIA GPU'):
        build_backend('lmdeploy', model_path=tiny_model, engine='turbomind')


def test_lmdeploy_system_exit_becomes_runtime_error(monkeypatch, tiny_model):
    import lmdeploy

    def die(*args, **kwargs):
        raise SystemExit(1)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(lmdeploy, 'pipeline', die)
    with pytest.raises(RuntimeError, match='could not start'):
        LMDeployBackend(tiny_model)


def test_lmdeploy_pipeline_uses_tokenizer_template(monkeypatch, tiny_model):
    import lmdeploy
    from transformers import AutoTokenizer
    seen = {}
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(lmdeploy, 'pipeline', lambda path, **kw: seen.update(kw, path=path))
    backend = LMDeployBackend(tiny_model, engine='turbomind', tp=2, session_len=1024)
    monkeypatch.undo()  # CUDA is absent again (mmengine's logger looks at it)
    assert backend.pipe is None and seen['path'] == tiny_model
    cfg = seen['backend_config']
    assert isinstance(cfg, lmdeploy.TurbomindEngineConfig) and cfg.tp == 2
    assert cfg.session_len == 1024
    template = seen['chat_template_config'].chat_template
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert template.messages2prompt(CONVS[1]) == tok.apply_chat_template(
        CONVS[1], tokenize=False, add_generation_prompt=True)


def test_lmdeploy_generate_repeats_prompts_with_distinct_seeds():
    """The batching around the pipeline, with a stand-in for the GPU pipeline."""
    class Out:
        def __init__(self, text):
            self.text = text

    class FakePipe:
        calls = []

        def batch_infer(self, prompts, gen_config):
            self.calls.append((prompts, gen_config))
            return [Out(f"{p[-1]['content']}|{g.random_seed}")
                    for p, g in zip(prompts, gen_config)]

    backend = object.__new__(LMDeployBackend)
    backend.pipe, backend.batch_size = FakePipe(), 4
    out = backend.generate(CONVS, SamplingParams(max_new_tokens=8, seed=10), n=2)
    assert out == [[f"{c[-1]['content']}|{derive_seed(10, 0)}",
                    f"{c[-1]['content']}|{derive_seed(10, 1)}"] for c in CONVS]
    assert [len(p) for p, _ in FakePipe.calls] == [4, 2]
    assert all(g.do_sample and g.top_k == 40 for _, gs in FakePipe.calls for g in gs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='LMDeploy needs an NVIDIA GPU')
def test_lmdeploy_generates_on_gpu(tiny_model):
    backend = LMDeployBackend(tiny_model, engine='pytorch', session_len=512)
    try:
        out = backend.generate(CONVS, SamplingParams(max_new_tokens=8, seed=0), n=2)
        assert len(out) == len(CONVS) and all(len(r) == 2 for r in out)
        greedy = backend.generate(CONVS, SamplingParams.greedy(8), n=2)
        assert all(r[0] == r[1] for r in greedy)
    finally:
        backend.close()


# ---------------------------------------------------------------- constrained choices

def test_transformers_choose_ranks_whole_answers_by_log_probability(tiny_model, hf_backend):
    # issue 23, point 2: the choice of highest log-probability (its tokens and the end of the
    # turn), the same batched and padded as computed one sequence at a time in float64
    choices = ['<Facts Present>', '<No Facts>', 'yes']
    picked = hf_backend.choose(CONVS, choices)
    model, tok = hf_backend.model, hf_backend.tokenizer
    eos = hf_backend.eos_token_ids[0]
    for conv, got in zip(CONVS, picked):
        prompt = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=True)
        scores = []
        for c in choices:
            answer = tok(c, add_special_tokens=False)['input_ids'] + [eos]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt + answer])).logits.double()
            logp = torch.log_softmax(logits[0], -1)
            scores.append(sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(answer)))
        assert got == choices[max(range(len(choices)), key=scores.__getitem__)]


def test_openai_choose_sends_the_constraint_and_notices_when_it_is_ignored(servers):
    srv = servers('a')
    backend = OpenAIBackend([srv.url], model='judge')
    with pytest.raises(RuntimeError, match='ignored the constraint'):
        backend.choose(CONVS[:1], ['<No Facts>', '<Facts Present>'])
    body = srv.bodies[0][1]
    assert body['structured_outputs'] == {'choice': ['<No Facts>', '<Facts Present>']}
    assert body['top_k'] == 1 and 'guided_choice' not in body
    backend.structured = 'lmdeploy'
    with pytest.raises(RuntimeError):
        backend.choose(CONVS[:1], ['A', 'B'])
    assert srv.bodies[1][1]['response_format'] == {'type': 'regex_schema',
                                                   'regex_schema': '(A|B)'}
