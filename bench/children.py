"""Child processes a benchmark starts, and the guarantee that none outlives it.

Each child gets PR_SET_PDEATHSIG (the kernel signals it when the benchmark dies, even by
SIGKILL), and atexit plus SIGTERM/SIGINT/SIGHUP handlers stop whatever is still running.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1
_children: list[subprocess.Popen[bytes]] = []


def program(name: str) -> list[str]:
    """The installed console script beside this Python (sonde-server, sonde-agent)."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        raise SystemExit(f"{script} is missing: install Sonde in this environment first")
    return [str(script)]


# Runs in the child before exec: no preexec_fn (unsafe once gRPC has started threads here).
# The death signal survives execve; the parent-pid check covers a parent already gone.
_LAUNCHER = """
import ctypes, os, sys
ctypes.CDLL(None).prctl({option}, int(sys.argv[1]), 0, 0, 0)
if os.getppid() != int(sys.argv[2]):
    sys.exit(70)
os.execv(sys.argv[3], sys.argv[3:])
"""


def die_with_parent(signum: int, parent_pid: int | None = None) -> None:
    """Ask the kernel to send `signum` to this process when its parent dies."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        raise SystemExit("the benchmark that started this process is gone")


def start(
    argv: Sequence[str],
    log_path: Path,
    *,
    on_parent_death: int = signal.SIGTERM,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child with its output in log_path; it is stopped when we exit or die."""
    launcher = [sys.executable, "-c", _LAUNCHER.format(option=_PR_SET_PDEATHSIG)]
    launcher += [str(on_parent_death), str(os.getpid())]
    executable = shutil.which(argv[0]) or argv[0]
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [*launcher, executable, *argv[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
    _children.append(child)
    return child


def stop(child: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaps the child."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout)
    if child in _children:
        _children.remove(child)


def stop_all() -> None:
    # Newest first: agents and load workers before the server they talk to.
    for child in reversed(list(_children)):
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for child in reversed(list(_children)):
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    _children.clear()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Call once in main(): every started child is stopped on exit or on a signal."""
    atexit.register(stop_all)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
