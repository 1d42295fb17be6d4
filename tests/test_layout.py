"""The project's structure rules, checked: the library never loads a script, imports only
downward (the layers below) and never in circles, keeps the studies to themselves, and keeps its
files readable."""
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


# The layers, bottom up: a module may import its own layer and those below, never above.
LAYERS = [
    ['labels', 'hooks', 'io'],
    ['generation', 'offline'],
    ['annotate'],
    ['pairs', 'dataset', 'evaluation'],
    ['model'],
    ['train', 'configs'],
    ['pipeline'],
    ['view'],
    ['cli'],
    ['studies'],
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def import_graph():
    """{module: {imported package module, ...}} over every import in the file, including those
    inside functions; a name imported from a package face counts as the face."""
    modules = {module_name(p): p for p in library_files()}
    graph = {}
    for name, path in modules.items():
        out = set()
        for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f'{name}: relative import (the package imports by full name)'
                targets = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t in modules and t != name:
                    out.add(t)
                    break
        graph[name] = out
    return graph


def part_of(module):
    return module.split('.')[1] if module.count('.') else ''


def test_imports_run_only_downward_and_never_in_circles():
    graph = import_graph()
    for mod, targets in graph.items():
        if mod == 'maskdpo_xtuner':
            continue
        for t in targets:
            if part_of(t) == '':
                continue
            assert RANK[part_of(t)] <= RANK[part_of(mod)], f'{mod} imports {t}: an arrow back up'
    # no circle: a depth-first search finds no module on its own path
    state = {}

    def visit(m, path):
        state[m] = 'open'
        for t in graph[m]:
            if state.get(t) == 'open':
                raise AssertionError('import circle: ' + ' -> '.join(path + [m, t]))
            if t not in state:
                visit(t, path + [m])
        state[m] = 'done'
    for m in graph:
        if m not in state:
            visit(m, [])


def test_every_part_has_a_layer_and_the_root_stays_small():
    parts = {part_of(m) for m in import_graph()} - {''}
    assert parts <= set(RANK), f'a part with no layer: {sorted(parts - set(RANK))}'
    root_files = [f for f in os.listdir(PKG) if f.endswith('.py')]
    assert len(root_files) <= 8, root_files


def test_no_study_is_imported_by_the_library():
    for mod, targets in import_graph().items():
        if part_of(mod) == 'studies':
            continue
        assert not [t for t in targets if part_of(t) == 'studies'], (mod, targets)
    # and the core names no study as a string either (annotators come by entry point)
    for path in library_files():
        if os.sep + 'studies' + os.sep in path:
            continue
        text = open(path, encoding='utf-8').read()
        assert 'maskdpo_xtuner.studies' not in text, path


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
    from maskdpo_xtuner.evaluation.factscore import EXTRACT_PROMPT, VERIFY_PROMPT
    for f in [*BUNDLED.values(), os.path.basename(EXTRACT_PROMPT), os.path.basename(VERIFY_PROMPT)]:
        assert f'maskdpo_xtuner/prompts/{f}' in names, f
