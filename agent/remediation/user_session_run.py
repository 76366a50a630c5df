"""Run one catalog script in a logged-on user's session (Windows): the runner's other path,
for a manifest with `user_session = true`.

The same checks and the same files as runner.run (interpreter_command, check_again,
prepare_run: the script, its parameter file and the fixed prologue in a fresh private
folder), then user_session.start_in_session starts it as the session's user, suspended,
and it is put in a Job Object (windows_job.py) before it runs. Its stdout and stderr go to
two files in the folder, read as they grow (every POLL_S) into the same capped captures
and the same streaming as a SYSTEM run; the timeout and a cancel terminate the job. The
folder, output files included, is removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from sonde.agent.remediation.output import (
    OutputCallback,
    OutputCapture,
    OutputStream,
    stream_output_safely,
)
from sonde.agent.remediation.runner import (
    RunLimits,
    RunOutcome,
    ScriptCannotRun,
    check_again,
    interpreter_command,
    prepare_run,
)
from sonde.agent.remediation.session_choice import ChosenSession
from sonde.catalog.manifest import Manifest, ParameterValue

POLL_S = 0.2
_READ_BYTES = 64 * 1024


class _Tail:
    """The new bytes of one output file, into its capture."""

    def __init__(self, path: Path, capture: OutputCapture) -> None:
        self.path, self.capture, self.offset = path, capture, 0

    def read(self) -> bool:
        """Whether there was anything new."""
        before = self.offset
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read(_READ_BYTES)
                while data:
                    self.offset += len(data)
                    self.capture.take(data)
                    data = handle.read(_READ_BYTES)
        except FileNotFoundError:
            return False
        return self.offset > before


class UserProcessHandle(Protocol):
    """A started script (user_session.UserProcess on Windows)."""

    pid: int

    def wait(self, timeout_s: float) -> int | None: ...

    def terminate(self) -> None: ...

    def close(self) -> None: ...


class TreeHandle(Protocol):
    """What ends the script's whole tree (windows_job.ScriptJob on Windows)."""

    def terminate(self, exit_code: int = 1) -> None: ...

    def close(self) -> None: ...


async def _wait_for_end(
    process: UserProcessHandle,
    tree: TreeHandle,
    tails: Sequence[_Tail],
    *,
    more: asyncio.Event,
    cancel: asyncio.Event | None,
    deadline: float,
) -> tuple[int | None, str]:
    """The exit code and "" (it ended by itself), "timeout" or "cancel" (its tree stopped)."""
    while True:
        exit_code = await asyncio.to_thread(process.wait, POLL_S)
        if any([tail.read() for tail in tails]):
            more.set()
        if exit_code is not None:
            return exit_code, ""
        stop = ""
        if cancel is not None and cancel.is_set():
            stop = "cancel"
        elif time.monotonic() >= deadline:
            stop = "timeout"
        if stop:
            tree.terminate()
            return await asyncio.to_thread(process.wait, 10.0), stop


async def supervise(
    process: UserProcessHandle,
    tree: TreeHandle,
    stdout: Path,
    stderr: Path,
    *,
    limits: RunLimits,
    timeout_s: float,
    on_output: OutputCallback | None = None,
    cancel: asyncio.Event | None = None,
) -> RunOutcome:
    """Watch a started script to its end: its two output files read as they grow into
    capped captures and streamed to on_output, its tree ended at the timeout or a cancel
    and once it has ended (what it left running)."""
    started = time.monotonic()
    captures = (
        OutputCapture(OutputStream.STDOUT, limits.output_cap_bytes),
        OutputCapture(OutputStream.STDERR, limits.output_cap_bytes),
    )
    tails = [_Tail(stdout, captures[0]), _Tail(stderr, captures[1])]
    more, ended = asyncio.Event(), asyncio.Event()
    streaming = None
    if on_output is not None:
        streaming = asyncio.create_task(
            stream_output_safely(
                captures,
                on_output,
                chunk_bytes=limits.chunk_bytes,
                chunk_interval_s=limits.chunk_interval_s,
                more=more,
                ended=ended,
            )
        )
    try:
        exit_code, stop = await _wait_for_end(
            process, tree, tails, more=more, cancel=cancel, deadline=started + timeout_s
        )
    finally:
        tree.terminate()  # what the script left running, or all of it if we were cancelled
    for tail in tails:
        tail.read()
    ended.set()
    more.set()
    if streaming is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(streaming, limits.flush_timeout_s)
    return RunOutcome.of(
        exit_code,
        stop,
        *captures,
        duration_s=time.monotonic() - started,
        stray_processes=0,  # the job ends the tree; it does not count it
    )


async def run_in_user_session(
    manifest: Manifest,
    script: bytes,
    values: Mapping[str, ParameterValue],
    session: ChosenSession,
    *,
    limits: RunLimits | None = None,
    on_output: OutputCallback | None = None,
    cancel: asyncio.Event | None = None,
    work_root: Path | None = None,
) -> RunOutcome:
    """As runner.run, in `session`; ScriptCannotRun before anything starts."""
    if sys.platform != "win32":
        raise ScriptCannotRun(
            f"{manifest.id} runs in the logged-on user's session, which Sonde starts only "
            "on Windows"
        )
    from sonde.agent.remediation import user_session, windows_job

    limits = limits or RunLimits()
    program = interpreter_command(manifest.interpreter)
    check_again(manifest, values)
    folder = Path(tempfile.mkdtemp(prefix="sonde-run-", dir=work_root))
    stdout, stderr = folder / "stdout.txt", folder / "stderr.txt"
    job: TreeHandle | None = None
    process: UserProcessHandle | None = None
    try:
        argv, _ = prepare_run(folder, manifest, script, values, program, mark="", home=None)
        try:
            process = await asyncio.to_thread(
                user_session.start_in_session,
                session.session.session_id,
                argv,
                folder,
                stdout,
                stderr,
            )
            new_job = windows_job.ScriptJob()
            job = new_job
            new_job.adopt_and_resume(process.pid)
        except OSError as error:
            if process is not None:
                process.terminate()  # started suspended: it never ran
            raise ScriptCannotRun(
                f"could not start {manifest.id} in {session.describe()}: {error}"
            ) from None
        return await supervise(
            process,
            job,
            stdout,
            stderr,
            limits=limits,
            timeout_s=limits.timeout_s or manifest.timeout_s,
            on_output=on_output,
            cancel=cancel,
        )
    finally:
        if job is not None:
            job.close()
        if process is not None:
            process.close()
        shutil.rmtree(folder, ignore_errors=True)
