"""The command line: every tool's --help shows its defaults and an example and loads nothing
heavy; one name per concept (old spellings kept as aliases); the maskdpo-xtuner command."""
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, load_script

HEAVY = ('torch', 'transformers', 'xtuner', 'mmengine', 'deepspeed', 'lmdeploy', 'datasets')
# the benchmark tools (tools/bench_*.py) are another issue's; every other tool is held to this
TOOLS = sorted(p for p in glob.glob(os.path.join(ROOT, 'tools', '*.py'))
               if not os.path.basename(p).startswith('bench_'))
PROBE = """
import contextlib, io, json, runpy, sys
sys.argv = [{path!r}, '--help']
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        runpy.run_path({path!r}, run_name='__main__')
except SystemExit as e:
    code = e.code
print(json.dumps({{'code': code, 'help': out.getvalue(),
                  'heavy': [m for m in {heavy!r} if m in sys.modules]}}))
"""


@pytest.mark.parametrize('path', TOOLS, ids=os.path.basename)
def test_help_shows_an_example_and_imports_nothing_heavy(path):
    proc = subprocess.run([sys.executable, '-c', PROBE.format(path=path, heavy=HEAVY)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['code'] in (0, None), proc.stderr[-2000:]
    assert '\nexample:\n  ' in result['help'], result['help'][-500:]
    assert result['heavy'] == [], result['heavy']  # so --help answers in a fraction of a second


def _help(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', name), *args, '--help'],
                          capture_output=True, text=True, timeout=120, cwd=ROOT).stdout


def test_help_shows_defaults():
    text = _help('sample.py')
    assert 'responses per question (paper: 32) (default: 32)' in ' '.join(text.split())
    assert '(default: transformers)' in text  # the shared backend flags too


def test_one_name_per_concept_old_spellings_still_work():
    study = load_script('world_study')
    assert study.parse_args(['--n', '4']).k == study.parse_args(['--k', '4']).k == 4
    assert '--n N, --k N' in _help('real_run.py')
    cmds = [subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'serve.py'), flag,
                            'lmdeploy', '--model', 'M', '--print-command'], capture_output=True,
                           text=True, timeout=120, cwd=ROOT).stdout for flag in
            ('--backend', '--engine')]
    assert cmds[0] == cmds[1] and 'lmdeploy serve api_server M' in cmds[0]


def test_demo_help_describes_the_demo():
    text = _help('demo.py')
    assert '--tiny' in text and 'tools/world_study.py' in text
    assert '--preset' not in text.split('world study options')[0]  # not world_study's own list
    demo = load_script('demo')
    args, rest = demo.parse_args(['--preset', 'quick', '--seeds', '0', '1'])
    assert not args.tiny and rest == ['--preset', 'quick', '--seeds', '0', '1']


def test_the_maskdpo_xtuner_command(tmp_path, capsys):
    from maskdpo_xtuner.cli import main
    assert main(['list-cfg', '-p', 'TINY_CPU']) == 0
    names = capsys.readouterr().out.split()
    assert 'tiny_cpu_maskdpo' in names and all('tiny_cpu' in n for n in names)
    assert main(['copy-cfg', 'tiny_cpu_maskdpo', str(tmp_path)]) == 0
    assert (tmp_path / 'tiny_cpu_maskdpo_copy.py').exists()
    with pytest.raises(SystemExit, match='exists'):  # refused, named, no traceback
        main(['copy-cfg', 'tiny_cpu_maskdpo', str(tmp_path)])
    out = tmp_path / 'pairs.jsonl'
    # import-pairs imports `datasets`, whose logger keeps the sys.stderr of that moment; under
    # capsys that stream is closed after this test, and every later test that logs through
    # `datasets` would print a logging traceback (seen in test_bad_inputs when run after this)
    with capsys.disabled():
        assert main(['import-pairs', '--format', 'trl',
                     os.path.join(ROOT, 'data', 'formats', 'trl_sample.jsonl'), '--out',
                     str(out), str(tmp_path / 'pairs.parquet')]) == 0
    assert len(out.read_text().splitlines()) == 4 and (tmp_path / 'pairs.parquet').exists()
