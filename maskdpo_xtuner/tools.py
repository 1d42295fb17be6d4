"""Load a command-line script of ``tools/`` as a module, to call its ``main`` or helpers from
Python (the world study, ``tools/eval_anah.py`` and the tests all go through here).

Each script is loaded once, under a private module name, so it clashes with nothing.
"""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(ROOT, 'tools')


def load_tool(name: str):
    """``tools/<name>.py`` as a module (needs a source checkout: the scripts are not packaged)."""
    mod_name = f'maskdpo_tools_{name}'
    if mod_name not in sys.modules:
        path = os.path.join(TOOLS_DIR, f'{name}.py')
        if not os.path.isfile(path):
            raise FileNotFoundError(f'no tool {name!r}: {path} does not exist (tools/ lives in '
                                    f'the source checkout, install with pip install -e)')
        spec = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[mod_name]
            raise
    return sys.modules[mod_name]
