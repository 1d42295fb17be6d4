"""The project's structure rules, checked: the library never loads a script, imports only
downward, and keeps its files readable."""
import ast
import os

from conftest import ROOT

PKG = os.path.join(ROOT, 'maskdpo_xtuner')


def library_files():
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith('.py'):
                yield os.path.join(d, f)


def test_the_library_never_loads_a_script():
    for path in library_files():
        text = open(path, encoding='utf-8').read()
        rel = os.path.relpath(path, ROOT)
        assert 'spec_from_file_location' not in text, rel
        assert "'tools'" not in text and '"tools"' not in text, rel
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, 'module', None) or '']
                assert not any(n == 'tools' or n.startswith('tools.') for n in names), rel


def test_library_files_stay_readable():
    """About 400 lines at most, unless the module's docstring says why it is longer."""
    for path in library_files():
        text = open(path, encoding='utf-8').read()
        n = text.count('\n')
        doc = ast.get_docstring(ast.parse(text)) or ''
        assert n <= 400 or 'Longer than' in doc, f'{os.path.relpath(path, ROOT)}: {n} lines'


def test_a_built_wheel_carries_the_prompts(tmp_path):
    """The judges' prompt files are package data, so a non-editable install works."""
    import subprocess
    import sys
    import zipfile
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                           '--no-build-isolation', '-q', '-w', str(tmp_path), ROOT],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel, = [f for f in os.listdir(tmp_path) if f.endswith('.whl')]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    from maskdpo_xtuner.annotate.anah import BUNDLED
    from maskdpo_xtuner.factscore import EXTRACT_PROMPT, VERIFY_PROMPT
    for f in [*BUNDLED.values(), os.path.basename(EXTRACT_PROMPT), os.path.basename(VERIFY_PROMPT)]:
        assert f'maskdpo_xtuner/prompts/{f}' in names, f
