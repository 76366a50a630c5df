"""How a user-session run is watched once started (user_session_run.supervise), with real
processes on Linux started as Windows starts them there: output into two files the SYSTEM
side reads as they grow. The process and its tree are real; what stands in for the Win32
handles is a Popen and its process group (on Windows, user_session.UserProcess and the
run's Job Object, which only the real-Windows test shows). Output streams while the script
runs and is capped, the exit code comes back, the timeout and a cancel end the whole tree,
and what the script leaves running is ended with it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from sonde.agent.remediation.output import OutputChunk, OutputStream
from sonde.agent.remediation.runner import RunLimits
from sonde.agent.remediation.user_session_run import supervise

LIMITS = RunLimits(chunk_interval_s=0.0)


class StartedScript:
    """A real bash script, stdout and stderr to new files, in a process group of its own."""

    def __init__(self, folder: Path, body: str) -> None:
        self.stdout, self.stderr = folder / "stdout.txt", folder / "stderr.txt"
        script = folder / "script.sh"
        script.write_text(body)
        with self.stdout.open("xb") as out, self.stderr.open("xb") as err:
            self.popen = subprocess.Popen(
                ["bash", str(script)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        self.popen.kill()

    def close(self) -> None:
        self.popen.wait(5)


class ProcessGroup:
    """Ends the script's whole group, as the Job Object ends its whole tree."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.terminated = 0

    def terminate(self, exit_code: int = 1) -> None:
        self.terminated += 1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        self.terminate()


def _gone(pid: int, within_s: float = 5.0) -> bool:
    """Ended (or a zombie nobody reaped yet) within `within_s`: SIGKILL is not instant."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


async def test_output_streams_while_it_runs_and_the_exit_code_comes_back(tmp_path: Path) -> None:
    go_on = tmp_path / "go-on"
    script = StartedScript(
        tmp_path,
        f'echo first\nwhile [ ! -e "{go_on}" ]; do sleep 0.05; done\n'
        "echo second\necho oops >&2\nexit 3\n",
    )
    chunks: list[OutputChunk] = []

    async def on_output(chunk: OutputChunk) -> None:
        chunks.append(chunk)
        go_on.touch()  # the script goes on only once its first line has been streamed

    outcome = await supervise(
        script,
        ProcessGroup(script.pid),
        script.stdout,
        script.stderr,
        limits=LIMITS,
        timeout_s=20,
        on_output=on_output,
    )
    assert (outcome.exit_code, outcome.timed_out, outcome.cancelled) == (3, False, False)
    assert (outcome.stdout, outcome.stderr) == (b"first\nsecond\n", b"oops\n")
    assert chunks[0].data == b"first\n"  # sent before the script could print the rest
    streamed = b"".join(c.data for c in chunks if c.stream is OutputStream.STDOUT)
    assert streamed == b"first\nsecond\n"
    assert next(c.offset for c in chunks if c.stream is OutputStream.STDOUT) == 0


async def test_the_timeout_ends_the_script_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = StartedScript(tmp_path, f'sleep 60 &\necho $! > "{pids}"\nsleep 60\n')
    tree = ProcessGroup(script.pid)
    started = time.monotonic()
    outcome = await supervise(
        script, tree, script.stdout, script.stderr, limits=LIMITS, timeout_s=1.0
    )
    assert outcome.timed_out
    assert not outcome.cancelled
    assert outcome.exit_code == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert _gone(int(pids.read_text()))


async def test_a_cancel_ends_it_at_once(tmp_path: Path) -> None:
    script = StartedScript(tmp_path, "echo waiting\nsleep 60\n")
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, cancel.set)
    outcome = await supervise(
        script,
        ProcessGroup(script.pid),
        script.stdout,
        script.stderr,
        limits=LIMITS,
        timeout_s=30,
        cancel=cancel,
    )
    assert outcome.cancelled
    assert not outcome.timed_out
    assert outcome.stdout == b"waiting\n"
    assert outcome.duration_s < 5


async def test_output_is_capped_and_counted_and_a_child_left_behind_is_ended(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    script = StartedScript(
        tmp_path,
        f'sleep 60 &\necho $! > "{pids}"\nhead -c 3145728 /dev/zero | tr "\\0" x\nexit 0\n',
    )
    tree = ProcessGroup(script.pid)
    outcome = await supervise(
        script,
        tree,
        script.stdout,
        script.stderr,
        limits=RunLimits(output_cap_bytes=1024 * 1024),
        timeout_s=30,
    )
    assert outcome.exit_code == 0
    assert outcome.stdout_truncated
    assert (len(outcome.stdout), outcome.stdout_size) == (1024 * 1024, 3 * 1024 * 1024)
    assert tree.terminated >= 1
    assert _gone(int(pids.read_text()))
