"""Each checkout runs its own code, whatever environment it shares (tools/setup_env.sh).

Two copies of this checkout, each with a marker in its package, set up one after the other on
the same shared environment: a tool, ``python -m xtuner.tools.train`` and ``xtuner train``
started from either one import that one's code. (Before, setup installed the checkout into the
shared environment itself, so the copy set up last ran for both.)"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
MARKER = """
import os as _os
if _os.environ.get('MASKDPO_WHICH_CHECKOUT'):
    print('CHECKOUT', {name!r}, __file__, flush=True)
    raise SystemExit(0)
"""
SKIP = shutil.ignore_patterns('.git', '.venv', 'work_dirs', '__pycache__', '.pytest_cache',
                              '*.egg-info', '.hypothesis', 'build')


def shared_venv():
    """The shared environment this test runs in: named by a checkout layer's ``shared-venv``
    file, or this interpreter's own venv when it is the shared one."""
    layer = os.path.join(sys.prefix, 'shared-venv')
    if os.path.exists(layer):
        return open(layer).read().strip()
    if os.path.exists(os.path.join(sys.prefix, '.complete')):
        return sys.prefix
    pytest.skip('not run from the environment of tools/setup_env.sh')


def checkout(tmp_path, name):
    root = tmp_path / name
    shutil.copytree(ROOT, root, ignore=SKIP)
    with open(root / 'maskdpo_xtuner' / '__init__.py', 'a') as f:
        f.write(MARKER.format(name=name))
    return root


def test_each_checkout_imports_its_own_code(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['MASKDPO_VENV'] = shared_venv()
    a, b = checkout(tmp_path, 'A'), checkout(tmp_path, 'B')
    python = {}
    for root in (a, b):  # B is set up last
        proc = subprocess.run(['bash', str(root / 'tools' / 'setup_env.sh')], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        python[root.name] = proc.stdout.strip().splitlines()[-1]
        assert python[root.name] == str(root / '.venv' / 'bin' / 'python')
    outside = tmp_path / 'elsewhere'  # not inside either checkout: no cwd on sys.path helps
    outside.mkdir()
    run_env = dict(env, MASKDPO_WHICH_CHECKOUT='1')
    for root in (a, b):
        name, py = root.name, python[root.name]
        config = str(root / 'configs' / 'maskdpo' / 'tiny_cpu_maskdpo.py')
        activated = dict(run_env, PATH=f'{root / ".venv" / "bin"}{os.pathsep}{env["PATH"]}',
                         VIRTUAL_ENV=str(root / '.venv'))
        for cmd, e in (([py, str(root / 'tools' / 'train.py'), '--help'], run_env),
                       ([py, '-m', 'xtuner.tools.train', config, '--work-dir', 'w'], run_env),
                       (['xtuner', 'train', config, '--work-dir', 'w'], activated)):
            proc = subprocess.run(cmd, cwd=outside, env=e, capture_output=True, text=True,
                                  timeout=600)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('CHECKOUT')]
            assert lines, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
            assert lines[0].split()[1:] == [name, str(root / 'maskdpo_xtuner' / '__init__.py')], \
                (cmd, lines)
