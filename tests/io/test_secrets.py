"""API keys come from the environment, reach servers by environment, and are written nowhere
(maskdpo_xtuner/io/secrets.py); a refused key or an unreachable server names the URL and what
to check (generation/openai_backend.py)."""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import load_script
from maskdpo_xtuner.generation import serve
from maskdpo_xtuner.generation.openai_backend import OpenAIBackend
from maskdpo_xtuner.io.errors import ToolError
from maskdpo_xtuner.io.secrets import api_key, redact_command

KEY = 'sk-test-5f1e9c7a0b3d'


class KeyServer:
    """An OpenAI-compatible stand-in that answers only requests carrying ``KEY``."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def _auth(self):
                if self.headers.get('Authorization') != f'Bearer {KEY}':
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"error": "invalid api key"}')
                    return False
                return True

            def _json(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self._auth():
                    self._json({'data': [{'id': 'm'}]})

            def do_POST(self):
                self.rfile.read(int(self.headers['Content-Length']))
                if self._auth():
                    self._json({'choices': [{'message': {'content': 'Ada was born in Lyon.'},
                                             'finish_reason': 'stop'}]})

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = KeyServer()
    yield s
    s.close()


def files_holding(folder, secret):
    hits = []
    for d, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(d, f), 'rb') as fh:
                if secret.encode() in fh.read():
                    hits.append(os.path.join(d, f))
    return hits


def test_the_key_comes_from_the_environment_and_a_flag_is_warned_about(monkeypatch, capsys):
    monkeypatch.setenv('MASKDPO_API_KEY', 'from-env')
    monkeypatch.setenv('MASKDPO_JUDGE_API_KEY', 'judge-env')
    assert api_key() == 'from-env' and api_key(prefix='judge-') == 'judge-env'
    assert api_key('on-argv') == 'on-argv'
    assert 'MASKDPO_API_KEY' in capsys.readouterr().err
    monkeypatch.delenv('MASKDPO_API_KEY')
    assert api_key() == 'EMPTY'
    assert redact_command(['x', '--api-key', 'k1', '--api-keys', 'a', 'b', '--port', '1',
                           '--api-key=k2']) == ['x', '--api-key', '***', '--api-keys', '***',
                                                '***', '--port', '1', '--api-key=***']


def test_no_file_a_run_writes_holds_the_key(server, tmp_path, monkeypatch):
    """sample and eval_anah through the OpenAI backend with the key in the environment, then the
    report and the HTML view: the key is sent (the server refuses requests without it) and is
    in none of the outputs, manifests, logs, reports or pages."""
    monkeypatch.setenv('MASKDPO_API_KEY', KEY)
    monkeypatch.setenv('MASKDPO_JUDGE_API_KEY', KEY)
    q = tmp_path / 'q.jsonl'
    q.write_text(''.join(json.dumps({'id': f'q{i}', 'question': f'Who was {i}?',
                                     'document': 'Ada was born in Lyon.'}) + '\n'
                         for i in range(3)))
    openai = ['--backend', 'openai', '--endpoints', server.url, '--model', 'm']
    judge = ['--judge-backend', 'openai', '--judge-endpoints', server.url, '--judge-model', 'm']
    load_script('sample').main(['--questions', str(q), '--out', str(tmp_path / 's.jsonl'),
                                '--n', '2', *openai])
    load_script('eval_anah').main(['--questions', str(q), '--out-dir', str(tmp_path / 'ev'),
                                   '--n-boot', '10', *openai, *judge])
    load_script('report').main(['--runs', f'a={tmp_path / "ev"}', '--out',
                                str(tmp_path / 'r.md'), '--view', str(tmp_path / 'r.html')])
    written = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert len(written) >= 10 and any(f.endswith('manifest.json') for f in written)
    assert files_holding(tmp_path, KEY) == []


def test_a_refused_key_and_a_missing_server_name_the_url_and_what_to_check(server):
    backend = OpenAIBackend([server.url], model='m', api_key='wrong')
    with pytest.raises(ToolError, match=rf'{server.url}/v1/models refused the API key \(HTTP '
                                        r'401\): check the key: MASKDPO_API_KEY'):
        backend.check_endpoints()
    from maskdpo_xtuner.generation.base import SamplingParams
    with pytest.raises(ToolError, match=r'refused the API key \(HTTP 401\)'):
        backend.generate([[{'role': 'user', 'content': 'x'}]], SamplingParams.greedy(4))
    url = f'http://127.0.0.1:{serve.free_port()}'
    with pytest.raises(ToolError, match=rf"no endpoint answers: .*{url}.*check that the server "
                                        'is running'):
        OpenAIBackend([url], model='m').check_endpoints()
    dead = OpenAIBackend([url], model='m', retry_deadline=0.5, backoff=0.1)
    with pytest.raises(ToolError, match=rf'{url}/v1/chat/completions failed .*check that the '
                                        'server is running'):
        dead.generate([[{'role': 'user', 'content': 'x'}]], SamplingParams.greedy(4))


def test_sample_with_a_wrong_key_exits_naming_the_url(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('MASKDPO_API_KEY', 'wrong')
    q = tmp_path / 'q.jsonl'
    q.write_text('{"id": 1, "question": "Who?"}\n')
    with pytest.raises(SystemExit, match=rf'error: {server.url}/v1/models refused the API key'):
        load_script('sample').main(['--questions', str(q), '--out', str(tmp_path / 's.jsonl'),
                                    '--backend', 'openai', '--endpoints', server.url,
                                    '--model', 'm'])
    assert 'Traceback' not in capsys.readouterr().err


FAKE_SERVER = r'''
import os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[sys.argv.index('--port') + 1])
print('argv', sys.argv, flush=True)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get('Authorization') == 'Bearer ' + os.environ['VLLM_API_KEY']
        self.send_response(200 if ok else 401); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(('127.0.0.1', port), H).serve_forever()
'''


def test_a_server_gets_its_key_by_environment_never_on_its_command_line(tmp_path):
    fake = tmp_path / 'python'
    fake.write_text(f'#!{sys.executable}\n' + FAKE_SERVER)
    fake.chmod(0o755)
    port = serve.free_port()
    cmd = serve.vllm_command(str(tmp_path), port, python=str(fake), api_key=KEY)
    assert KEY not in cmd and cmd.secret_env == {'VLLM_API_KEY': KEY}
    log = tmp_path / 'server.log'
    with serve.Server(cmd, port, log) as server:  # healthy only with the key: it was sent
        with open(f'/proc/{server.child.pid}/cmdline', 'rb') as f:
            assert KEY.encode() not in f.read()  # what ps shows
        with open(f'/proc/{server.child.pid}/environ', 'rb') as f:
            assert f'VLLM_API_KEY={KEY}'.encode() in f.read()
    assert 'argv' in log.read_text() and KEY not in log.read_text()
    # LMDeploy reads no key variable: a launcher appends it inside the process
    cmd = serve.lmdeploy_command('/m', 23333, api_key=KEY)
    assert KEY not in ' '.join(cmd) and cmd.secret_env == {serve.SERVER_KEY_VAR: KEY}
    assert cmd[cmd.index('--server-name') + 1] == '127.0.0.1'  # this machine only


def test_lmdeploy_binds_this_machine_unless_told(tmp_path):
    cmd = serve.lmdeploy_command('/m', 23333)
    assert cmd[:4] == ['lmdeploy', 'serve', 'api_server', '/m']
    assert cmd[cmd.index('--server-name') + 1] == '127.0.0.1'
    assert serve.lmdeploy_command('/m', 1, host='0.0.0.0')[5] == '0.0.0.0'


def test_the_lmdeploy_launcher_appends_the_key_in_process(tmp_path):
    """The launcher's argv handling, run with a stand-in ``lmdeploy.cli`` that prints argv."""
    pkg = tmp_path / 'lmdeploy'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'cli.py').write_text('import sys\ndef run():\n    print(sys.argv)\n    return 0\n')
    import subprocess
    cmd = serve.lmdeploy_command('/m', 1, api_key=KEY)
    out = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(tmp_path), **cmd.secret_env),
                         capture_output=True, text=True, check=True).stdout
    argv = eval(out)  # noqa: S307 - our own print of a list of strings
    assert argv[:4] == ['lmdeploy', 'serve', 'api_server', '/m']
    assert argv[-2:] == ['--api-keys', KEY]
