"""A stand-in `systemctl` for a test host without systemd as PID 1 (a container, CI).

Put first on the PATH of one test sshd's sessions (tests/support/sshd.py `path_first`), it
plays that host's systemd for the units in its own folder: `daemon-reload` and `enable` check
that the unit file parses, `start`/`restart` run its ExecStart detached (own session, output
to a log beside the pid file), `stop` ends it, `is-active` says whether it runs. It reads only
the unit file the installer wrote, so a wrong ExecStart fails here as it would under systemd.

What it cannot show: dependency ordering (After=, Wants=), Restart= supervision, the journal,
cgroups, boot-time start of an enabled unit, systemd's own unit-file validation.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = """#!{python}
import sys
sys.path.insert(0, {root!r})
from tests.support.systemctl_standin import main
sys.exit(main({unit_dir!r}, {run_dir!r}, sys.argv[1:]))
"""


def install_standin(bin_dir: Path, unit_dir: Path, run_dir: Path) -> Path:
    """Write `bin_dir/systemctl` for a host whose units live in `unit_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "systemctl"
    path.write_text(
        SCRIPT.format(
            python=sys.executable,
            root=str(HERE.parent.parent),
            unit_dir=str(unit_dir),
            run_dir=str(run_dir),
        )
    )
    path.chmod(0o755)
    return path


def _exec_start(unit: Path) -> list[str]:
    for line in unit.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == "ExecStart":
            return shlex.split(value.strip())
    raise ValueError(f"{unit} has no ExecStart")


def _pid(run_dir: Path, name: str) -> int | None:
    try:
        pid = int((run_dir / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    # An ended agent nobody reaped (its parent, this script, exited long ago) is gone too.
    return None if state in {"Z", "X"} else pid


def _stop(run_dir: Path, name: str) -> None:
    pid = _pid(run_dir, name)
    if pid is None:
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid(run_dir, name) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid(run_dir, name) is not None:
        os.killpg(pid, signal.SIGKILL)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)


def stop_all(run_dir: Path) -> None:
    """What a test's teardown calls: every unit this stand-in started is stopped."""
    for pid_file in run_dir.glob("*.pid"):
        _stop(run_dir, pid_file.stem)


def main(unit_dir_text: str, run_dir_text: str, argv: list[str]) -> int:
    unit_dir, run_dir = Path(unit_dir_text), Path(run_dir_text)
    if not argv:
        print("systemctl (stand-in): no command", file=sys.stderr)
        return 1
    command, names = argv[0], [a for a in argv[1:] if not a.startswith("-")]
    if command == "daemon-reload":
        for unit in unit_dir.glob("*.service"):
            _exec_start(unit)
        return 0
    if command not in {"enable", "start", "restart", "stop", "is-active"} or not names:
        print(f"systemctl (stand-in): {command} is not played here", file=sys.stderr)
        return 1
    for name in names:
        unit = unit_dir / name
        if command != "stop" and not unit.is_file():
            print(f"Failed to {command} {name}: Unit {name} not found.", file=sys.stderr)
            return 5
        if command == "enable":
            _exec_start(unit)
        elif command == "is-active":
            print("active" if _pid(run_dir, name) is not None else "inactive")
            return 0 if _pid(run_dir, name) is not None else 3
        elif command == "stop":
            _stop(run_dir, name)
        else:
            if command == "restart":
                _stop(run_dir, name)
            if _pid(run_dir, name) is not None:
                continue
            log = (run_dir / f"{name}.log").open("ab")
            process = subprocess.Popen(
                _exec_start(unit),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
            (run_dir / f"{name}.pid").write_text(str(process.pid))
    return 0
