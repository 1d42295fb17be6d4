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
