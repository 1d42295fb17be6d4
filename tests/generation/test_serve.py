"""serve.Server on a stand-in server (a real HTTP process with a child, like vLLM's engine core):
health check, log, and stopping the whole process group."""
import os
import sys
import time

import pytest

from maskdpo_xtuner.generation import serve

FAKE = r'''
import os, sys, time, subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
open(sys.argv[2], 'w').write(str(child.pid))
time.sleep(1)  # not ready at once
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/v1/models' else 404); self.end_headers()
    def log_message(self, *a): pass
print('fake server up', flush=True)
HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
'''


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f'/proc/{pid}/stat') as f:  # a zombie is dead too
        return f.read().split(')')[1].split()[0] != 'Z'


def test_ready_then_the_whole_group_is_stopped(tmp_path):
    port, pidfile = serve.free_port(), tmp_path / 'child.pid'
    server = serve.Server([sys.executable, '-c', FAKE, str(port), str(pidfile)], port,
                          tmp_path / 'log' / 'server.log')
    with server:
        assert server.healthy() and server.start_seconds >= 1
        child = int(pidfile.read_text())
        assert alive(child)
    assert not alive(child)  # the child of the server went with it
    assert not server.healthy()
    assert 'fake server up' in (tmp_path / 'log' / 'server.log').read_text()


def test_a_server_that_dies_is_reported_with_its_log(tmp_path):
    port = serve.free_port()
    server = serve.Server([sys.executable, '-c', 'print("no model here"); raise SystemExit(3)'],
                          port, tmp_path / 'server.log')
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r'exited with 3(.|\n)*no model here'):
        server.start().wait_ready(timeout=60)
    assert time.monotonic() - t0 < 30


def test_command_lines():
    cmd = serve.vllm_command('/m', 8000, python='/venv/bin/python', api_key='k')
    assert cmd[:3] == ['/venv/bin/python', '-m', 'vllm.entrypoints.openai.api_server']
    for flag, value in [('--dtype', 'float32'), ('--max-model-len', '1024'), ('--port', '8000')]:
        assert cmd[cmd.index(flag) + 1] == value
    assert '--enforce-eager' in cmd
    assert 'k' not in cmd and cmd.secret_env == {'VLLM_API_KEY': 'k'}  # by environment
    assert serve.vllm_env(1, '1')['VLLM_CPU_OMP_THREADS_BIND'] == '1'
    cmd = serve.lmdeploy_command('/m', 23333, tp=8)
    assert cmd[:4] == ['lmdeploy', 'serve', 'api_server', '/m']
    assert cmd[cmd.index('--tp') + 1] == '8' and '--api-keys' not in cmd
