"""vLLM's structured outputs really constrain the judge (issue 23, point 2): SmolLM2 served by
vLLM answers fact-check prompts in free form; the old ``guided_choice`` field changes nothing
(vLLM 0.32 ignores it), ``structured_outputs: {"choice": [...]}`` (OpenAIBackend.choose) makes
every answer one of the choices, and the ANAH-v2 annotator with ``constrain=True`` leaves no
sentence unparsed."""
import os

import pytest
import requests

from conftest import ROOT
from maskdpo_xtuner.annotate import AnahV2Annotator, SentenceTask
from maskdpo_xtuner.generation import OpenAIBackend, SamplingParams, serve

pytestmark = [pytest.mark.vllm, pytest.mark.real_model, pytest.mark.slow]
CHOICES = ['<Facts Present>', '<No Facts>']
SENTENCES = ['The capital of Togo is Lome.', 'Togo is a beautiful country.',
             'Togo borders Ghana to the west.', 'I hope this helps!',
             'The currency of Togo is the euro.', 'It has about 8 million people.']


def prompt(sentence):
    return [{'role': 'user', 'content': f'Sentence: {sentence}\nDoes the sentence state a '
             'checkable fact? Reply with exactly one of: <Facts Present> or <No Facts>.'}]


@pytest.fixture(scope='module')
def server(smollm2_dir, tmp_path_factory):
    python = serve.vllm_python(os.path.join(ROOT, 'tools', 'setup_vllm.sh'))
    if python is None:
        pytest.skip('the vLLM environment is not built (bash tools/setup_vllm.sh builds it)')
    port = serve.free_port()
    s = serve.Server(serve.vllm_command(smollm2_dir, port, python=python, served_name='smollm2',
                                        max_model_len=2048),
                     port, tmp_path_factory.mktemp('vllm_choice') / 'vllm.log',
                     env=serve.vllm_env(1))
    try:
        s.start().wait_ready()
        yield s
    finally:
        s.stop()


def test_structured_choice_takes_effect_and_guided_choice_does_not(server):
    backend = OpenAIBackend([server.url], model='smollm2')
    convs = [prompt(s) for s in SENTENCES]
    free = [r[0] for r in backend.generate(convs, SamplingParams.greedy(24))]
    assert any(a not in CHOICES for a in free), free  # a small model's free answers
    old = []
    for conv in convs:  # the field older vLLM versions read
        body = dict(backend.request_body(conv, SamplingParams.greedy(24), None),
                    guided_choice=CHOICES)
        r = requests.post(server.url + '/v1/chat/completions', json=body, timeout=300)
        old.append(r.json()['choices'][0]['message']['content'])
    assert old == free  # ignored: the same free answers
    chosen = backend.choose(convs, CHOICES)
    assert all(a in CHOICES for a in chosen) and len(chosen) == len(SENTENCES)


def test_constrained_anah_leaves_nothing_unparsed(server):
    backend = OpenAIBackend([server.url], model='smollm2')
    tasks = [SentenceTask(question='Give a short profile of Togo.', sentence=s,
                          response=' '.join(SENTENCES), document='Togo is a country in '
                          'Africa. Its capital is Lome. It borders Ghana, Benin and Burkina Faso.')
             for s in SENTENCES]
    labels = AnahV2Annotator(backend, params=SamplingParams.greedy(128),
                             constrain=True).annotate(tasks)
    assert all(x.label != 'unparsed' for x in labels), [x.trace for x in labels]
