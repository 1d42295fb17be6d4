"""Serve a model over the OpenAI-compatible API until Ctrl-C: vLLM on the CPU or LMDeploy on GPUs.

    python tools/serve.py --model DIR --port 8000                 # vLLM (venv of tools/setup_vllm.sh)
    python tools/serve.py --engine lmdeploy --model DIR --port 23333 --tp 8
    python tools/serve.py --model DIR --print-command             # only print the command line

The server runs in its own process group with its output in --log; it is ready when
GET /v1/models answers, and Ctrl-C stops the whole group. See maskdpo_xtuner/generation/serve.py.
"""
import os
import shlex
import signal
import sys

from maskdpo_xtuner.generation import serve
from maskdpo_xtuner.cli import tool_parser
from maskdpo_xtuner.io.secrets import NO_KEY, api_key
from maskdpo_xtuner.io.errors import tool_main

SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'setup_vllm.sh')


@tool_main
def main(argv=None):
    p = tool_parser(__doc__)
    p.add_argument('--backend', '--engine', dest='engine', choices=['vllm', 'lmdeploy'],
                   default='vllm', help='the server (--engine: its old name)')
    p.add_argument('--model', required=True, help='a Hugging Face model folder')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=8000)
    p.add_argument('--api-key', help='require this key (Authorization: Bearer KEY); better set '
                   '$MASKDPO_API_KEY (a key on the command line is visible to every user)')
    p.add_argument('--served-name', help='the model name clients send (default: --model)')
    p.add_argument('--log', default='work_dirs/serve.log')
    p.add_argument('--max-model-len', type=int, default=1024, help='vLLM only')
    p.add_argument('--kv-cache-gb', type=int, default=1, help='vLLM only: VLLM_CPU_KVCACHE_SPACE')
    p.add_argument('--cpus', help="vLLM only: cores its engine binds to, e.g. '1' or '0-3'")
    p.add_argument('--tp', type=int, default=1, help='LMDeploy only: tensor parallel GPUs')
    p.add_argument('--ready-timeout', type=float, default=300)
    p.add_argument('--print-command', action='store_true')
    args = p.parse_args(argv)
    key = api_key(args.api_key)  # $MASKDPO_API_KEY, or the flag (warned about)
    args.api_key = None if key == NO_KEY else key
    if args.engine == 'vllm':
        cmd = serve.vllm_command(args.model, args.port, args.host, api_key=args.api_key,
                                 served_name=args.served_name, max_model_len=args.max_model_len,
                                 python=serve.vllm_python(SETUP, not args.print_command))
        env = serve.vllm_env(args.kv_cache_gb, args.cpus)
    else:
        cmd = serve.lmdeploy_command(args.model, args.port, args.host, tp=args.tp,
                                     api_key=args.api_key, served_name=args.served_name)
        env = None
    if args.print_command:
        print(shlex.join(cmd) + (f'  # with {", ".join(cmd.secret_env)} set to the key in its '
                                 'environment' if cmd.secret_env else ''))
        return
    server = serve.Server(cmd, args.port, args.log, args.host, env, args.api_key,
                          args.ready_timeout)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
        print(f'[serve] started {args.engine}, log {args.log}', flush=True)
        seconds = server.wait_ready()
        print(f'[serve] ready at {server.url} after {seconds:.0f} s (Ctrl-C stops it)', flush=True)
        server.proc.wait()
        print(f'[serve] the server exited; log {args.log}:\n{server.log_tail()}', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == '__main__':
    main()
