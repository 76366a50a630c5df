"""Running an OS command for a collector: argv only (never a shell), stdin closed, time-bounded."""

from __future__ import annotations

import subprocess

from sonde.agent.collectors.errors import CollectorUnavailable


def run_command(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `argv`; a missing program or a timeout makes the collector unavailable, saying why."""
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise CollectorUnavailable(f"{argv[0]} could not run: {error}") from error


def command_output(argv: list[str], timeout: float) -> str:
    return run_command(argv, timeout).stdout
