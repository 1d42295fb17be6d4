"""tools/sample.py end to end on a tiny offline model: output format, resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from maskdpo_xtuner.io.jsonl import read_jsonl
from conftest import ROOT, load_script

sample = load_script('sample')


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    from maskdpo_xtuner.offline.tiny import build_tiny_llama, train_bpe_tokenizer
    out = str(tmp_path_factory.mktemp('tiny_sample') / 'model')
    build_tiny_llama(train_bpe_tokenizer(), out)
    return out


def write_questions(path, records):
    with open(path, 'w', encoding='utf-8') as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')
    return str(path)


QUESTIONS = [
    {'id': 'a', 'question': 'Who was Ada Lovelace?', 'lang': 'en'},
    {'id': 7, 'question': '玛丽·居里出生在哪里？', 'lang': 'zh', 'document': 'Marie Curie ...',
     'topic': 'Curie'},
    {'id': 'c', 'messages': [{'role': 'system', 'content': 'Be brief.'},
                             {'role': 'user', 'content': 'Where is Lyon?'}]},
]


def test_sample_output_format(tmp_path, tiny_model):
    qpath = write_questions(tmp_path / 'q.jsonl', QUESTIONS)
    out = str(tmp_path / 'out.jsonl')
    sample.main(['--questions', qpath, '--out', out, '--model', tiny_model, '--n', '3',
                 '--batch-size', '4', '--max-new-tokens', '6', '--seed', '0',
                 '--system', 'You are helpful.'])
    recs = read_jsonl(out)
    assert [r['id'] for r in recs] == ['a', 7, 'c']
    for q, r in zip(QUESTIONS, recs):
        assert {k: r[k] for k in q} == q  # every input field kept
        assert len(r['responses']) == 3 and all(isinstance(t, str) for t in r['responses'])
        assert r['model'] == tiny_model
        assert r['sampling'] == {'max_new_tokens': 6, 'temperature': 0.8, 'top_k': 40,
                                 'top_p': 1.0, 'do_sample': True, 'seed': 0,
                                 'repetition_penalty': 1.0, 'min_p': 0.0,
                                 'presence_penalty': 0.0, 'frequency_penalty': 0.0}
    sys_msg = {'role': 'system', 'content': 'You are helpful.'}
    assert recs[0]['prompt'] == [sys_msg, {'role': 'user', 'content': 'Who was Ada Lovelace?'}]
    assert recs[1]['prompt'][1]['content'] == '玛丽·居里出生在哪里？'
    assert recs[2]['prompt'] == QUESTIONS[2]['messages']  # messages used as given

    # a second run of the same job finds everything done and writes nothing
    sample.main(['--questions', qpath, '--out', out, '--model', tiny_model, '--n', '3',
                 '--batch-size', '4', '--max-new-tokens', '6', '--seed', '0',
                 '--system', 'You are helpful.'])
    assert read_jsonl(out) == recs


def test_sample_greedy(tmp_path, tiny_model):
    qpath = write_questions(tmp_path / 'q.jsonl', QUESTIONS[:2])
    out = str(tmp_path / 'out.jsonl')
    sample.main(['--questions', qpath, '--out', out, '--model', tiny_model, '--n', '2',
                 '--max-new-tokens', '6', '--greedy'])
    for r in read_jsonl(out):
        assert r['sampling']['do_sample'] is False and r['sampling']['top_k'] == 1
        assert r['responses'][0] == r['responses'][1]


def test_sample_duplicate_id_is_an_error(tmp_path, tiny_model):
    qpath = write_questions(tmp_path / 'q.jsonl', QUESTIONS + [{'id': 'a', 'question': 'x'}])
    with pytest.raises(SystemExit, match=r"q.jsonl:4: id 'a' is repeated \(first used on line 1\)"):
        sample.main(['--questions', qpath, '--out', str(tmp_path / 'o.jsonl'),
                     '--model', tiny_model])
    assert not os.path.exists(tmp_path / 'o.jsonl') or not read_jsonl(tmp_path / 'o.jsonl')


def test_sample_openai_backend(tmp_path):
    bodies = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
            bodies.append(body)
            data = json.dumps({'choices': [{'message': {
                'role': 'assistant', 'content': f"re: {body['messages'][-1]['content']}"}}]})
            self.send_response(200)
            self.send_header('Content-Length', str(len(data.encode())))
            self.end_headers()
            self.wfile.write(data.encode())

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        qpath = write_questions(tmp_path / 'q.jsonl', QUESTIONS)
        out = str(tmp_path / 'out.jsonl')
        sample.main(['--questions', qpath, '--out', out, '--backend', 'openai',
                     '--model', 'policy', '--endpoints', f'http://127.0.0.1:{httpd.server_port}',
                     '--n', '4', '--max-new-tokens', '100'])
    finally:
        httpd.shutdown()
        httpd.server_close()
    recs = read_jsonl(out)
    assert recs[2]['responses'] == ['re: Where is Lyon?'] * 4 and recs[2]['model'] == 'policy'
    assert len(bodies) == 12
    assert all(b['top_k'] == 40 and b['temperature'] == 0.8 and b['max_tokens'] == 100
               for b in bodies)


def test_sample_resume_after_sigkill(tmp_path, tiny_model):
    total, n = 60, 3
    qpath = write_questions(tmp_path / 'q.jsonl', [
        {'id': f'q{i}', 'question': f'Question {i}: where was Marie Curie born?'}
        for i in range(total)])
    out = tmp_path / 'out.jsonl'
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'sample.py'), '--questions', qpath,
           '--out', str(out), '--model', tiny_model, '--n', str(n), '--batch-size', str(n),
           '--max-new-tokens', '16', '--seed', '1']
    env = dict(os.environ, OMP_NUM_THREADS='1')  # a tiny model: one thread is enough

    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b'\n') >= 5:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    written = out.read_bytes().count(b'\n')
    assert 5 <= written < total

    # simulate a crash in the middle of a write: a half-written record of a pending question
    with open(out, 'a', encoding='utf-8') as f:
        f.write('{"id": "q59", "question": "Question 59: wh')

    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    recs = read_jsonl(str(out))  # every line parses: the partial one was dropped
    ids = [r['id'] for r in recs]
    assert sorted(ids) == sorted(f'q{i}' for i in range(total))  # each exactly once
    assert all(len(r['responses']) == n for r in recs)

    # a question's seed follows its id, so the interrupted run gives the same responses as an
    # uninterrupted one
    ref = tmp_path / 'ref.jsonl'
    sample.main(cmd[2:4] + ['--out', str(ref)] + cmd[6:])
    by_id = {r['id']: r['responses'] for r in read_jsonl(str(ref))}
    assert all(r['responses'] == by_id[r['id']] for r in recs)


def test_answers_depend_on_seed_and_id_only(tmp_path, tiny_model):
    """Issue 10, defect 8: the same seed gives the same answers whatever the batch size, the
    order or the neighbours in a batch; the same question under two ids gets other answers."""
    qs = [{'id': f'q{i}', 'question': f'Tell me about topic {i}.'} for i in range(8)]
    qs.append({'id': 'twin', 'question': qs[0]['question']})

    def run(name, records, batch):
        out = str(tmp_path / f'{name}.jsonl')
        sample.main(['--questions', write_questions(tmp_path / f'{name}_q.jsonl', records),
                     '--out', out, '--model', tiny_model, '--n', '2', '--batch-size',
                     str(batch), '--max-new-tokens', '12', '--seed', '5'])
        return {r['id']: r['responses'] for r in read_jsonl(out)}

    big, small = run('big', qs, 16), run('small', qs, 2)
    reordered = run('rev', qs[::-1][:5], 6)   # other order, other neighbours, a subset
    assert big == small
    assert all(reordered[k] == big[k] for k in reordered)
    assert big['twin'] != big['q0']                      # same text, other id
    assert all(a != b for a, b in big.values())          # the two copies differ
