"""When the reader of a program's output goes away (`sonde ticket list | head -1`).

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError, and without this a
technician sees its traceback. The three programs end instead as a program that SIGPIPE ended
is seen by the shell: no word on the terminal, exit code 141 (128 + SIGPIPE), so that
`set -o pipefail` treats `sonde ... | head` as it treats `cat ... | head`. Standard library only:
`sonde-agent run` imports it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

BROKEN_PIPE = 141  # 128 + SIGPIPE (13)


def quiet_when_piped(main: Callable[[], int]) -> int:
    """main()'s exit code, or BROKEN_PIPE, without a traceback, when stdout's reader left."""
    try:
        try:
            code = main()
        finally:
            # Here, also after argparse's SystemExit: the interpreter's own flush at exit
            # would print "Exception ignored ... BrokenPipeError" and exit 120.
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return BROKEN_PIPE
    return code


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that what is still buffered goes nowhere quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no stdout file descriptor (a test's StringIO)
        pass
