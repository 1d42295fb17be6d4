"""How every command-line tool ends: a named error and an exit code, never a bare traceback.

``@tool_main`` wraps a tool's ``main(argv=None, ...)``:

* an error caused by the input or the environment (``ValueError``, which includes
  :class:`~maskdpo_xtuner.io.validate.RecordError` and bad JSON; ``OSError``: a missing file,
  a folder given for a file, a full disk, a refused connection; :class:`ToolError`, e.g. an
  endpoint that refuses the API key) ends the program with ``error: MESSAGE`` on stderr and
  exit code 1 (``SystemExit``, so a test calling ``main()`` in-process sees the same);
* Ctrl-C ends it with exit code 130 and one line, SIGTERM with 143 (after the ``finally``
  blocks ran: a server is stopped, :mod:`maskdpo_xtuner.io.procs`);
* anything else is a bug and keeps its traceback.

``MASKDPO_TRACEBACK=1`` shows the traceback of every error (for a bug report).
"""
import functools
import os
import sys

from maskdpo_xtuner.io.procs import terminate_on_sigterm

USER_ERRORS = (ValueError, OSError)


class ToolError(RuntimeError):
    """An error whose message says all the user needs (what failed, where, what to check)."""


def error_text(e: BaseException) -> str:
    """The one-line message of a user-facing error (an OSError names its file)."""
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in str(e):
        return f'{e.filename}: {e.strerror or e}'
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        return f'{e.filename}: {e.strerror}'
    text = str(e) or type(e).__name__
    return text[6:] if text.startswith('error:') else text


def tool_main(main):
    """The decorator described in the module docstring."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        with terminate_on_sigterm():
            if os.environ.get('MASKDPO_TRACEBACK'):
                return main(*args, **kwargs)
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                print('interrupted (Ctrl-C)', file=sys.stderr)
                raise SystemExit(130) from None
            except (ToolError, *USER_ERRORS) as e:
                raise SystemExit(f'error: {error_text(e).strip()}') from None
    return run
