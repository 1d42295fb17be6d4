"""Headless Chromium (Debian's ``chromium``, installed by tools/setup_browser.sh): the DOM of a
page after its scripts ran, and screenshots. Used by the view's tests and ``tools/show.py
--screenshot``. Every call starts a fresh browser with a throw-away profile and no network
services (no sync, no component updates, no background requests)."""
import os
import shutil
import subprocess
import tempfile
from typing import Optional

NAMES = ('chromium', 'chromium-browser')
FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-quic', '--hide-scrollbars', '--mute-audio')


def find_chromium() -> Optional[str]:
    """The chromium binary: ``$CHROMIUM`` if set, else the first on PATH; None if absent."""
    env = os.environ.get('CHROMIUM')
    if env:
        return env if os.path.exists(env) else None
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def file_url(path: str, fragment: str = '') -> str:
    url = 'file://' + os.path.abspath(path)
    return url + ('#' + fragment if fragment else '')


def _run(url: str, extra, timeout: float, binary: Optional[str]) -> str:
    binary = binary or find_chromium()
    if not binary:
        raise FileNotFoundError('chromium not found: run tools/setup_browser.sh')
    with tempfile.TemporaryDirectory(prefix='chromium-profile-') as profile:
        cmd = [binary, *FLAGS, f'--user-data-dir={profile}', *extra, url]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             cwd=profile)
    if res.returncode != 0:
        raise RuntimeError(f'chromium exited with {res.returncode}: {res.stderr[-2000:]}')
    return res.stdout


def dump_dom(url: str, budget_ms: int = 5000, timeout: float = 120,
             binary: Optional[str] = None) -> str:
    """The serialized DOM of ``url`` once its scripts ran (``--virtual-time-budget``)."""
    return _run(url, [f'--virtual-time-budget={budget_ms}', '--dump-dom'], timeout, binary)


def screenshot(url: str, png: str, width: int = 1400, height: int = 1000,
               budget_ms: int = 5000, timeout: float = 120,
               binary: Optional[str] = None) -> str:
    """A PNG of the first ``width`` x ``height`` pixels of ``url``; returns ``png``."""
    png = os.path.abspath(png)
    os.makedirs(os.path.dirname(png), exist_ok=True)
    _run(url, [f'--virtual-time-budget={budget_ms}', f'--window-size={width},{height}',
               f'--screenshot={png}'], timeout, binary)
    if not os.path.exists(png):
        raise RuntimeError(f'chromium wrote no screenshot to {png}')
    return png
