"""Run one catalog script on this machine, safely: the library behind the RunScript command.

What the caller has already done: verified the catalog signature and the dispatch envelope,
checked the agent's policy, and checked the values with Manifest.check_values. The runner
checks the values once more (it never runs a value the schema refuses), then:

1. writes the script to a fresh private folder (mkdtemp: 0700, a random name; files created
   O_EXCL|O_NOFOLLOW, 0600), which is also the script's working folder and is removed
   afterwards;
2. starts the manifest's interpreter on it, never a shell string: stdin is /dev/null, the
   environment is built from scratch (environment.py), the values travel as data
   (SONDE_PARAM_<NAME> on POSIX; for PowerShell a parameter file and a fixed prologue,
   powershell.py), in a new session and process group (POSIX) or a Job Object (Windows);
3. reads stdout and stderr as they come, each kept up to the cap and counted beyond it, and
   streams what it keeps to on_output while the script runs (output.py);
4. at the timeout, or when `cancel` is set, stops the whole tree: SIGTERM, then SIGKILL
   after a short grace (process_tree.py; the Job Object on Windows). When the script ends
   by itself, whatever it left running is stopped the same way: a run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sonde.agent.remediation import powershell
from sonde.agent.remediation.environment import (
    MINIMAL_PATH,
    as_text,
    script_environment,
    windows_environment,
)
from sonde.agent.remediation.output import (
    OutputCallback,
    OutputCapture,
    OutputStream,
    stream_output_safely,
)
from sonde.agent.remediation.process_tree import ProcessTree
from sonde.catalog.manifest import (
    DRY_RUN,
    MAX_TIMEOUT_S,
    Interpreter,
    Manifest,
    ParameterValue,
    Platform,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_CREATE_NEW |= getattr(os, "O_BINARY", 0)
_PIPES_CLOSE_S = 2.0  # after the tree is stopped: a pipe still open is held by a lost process


class ScriptCannotRun(Exception):
    """Nothing was started: says why (an interpreter missing, a value the schema refuses)."""


@dataclass(frozen=True)
class RunLimits:
    timeout_s: float | None = None  # None: the manifest's timeout_s
    output_cap_bytes: int = MIB  # each of stdout and stderr
    chunk_bytes: int = 16 * 1024
    chunk_interval_s: float = 0.05  # at most one chunk per stream this often while it runs
    kill_grace_s: float = 1.0  # between SIGTERM and SIGKILL
    observe_interval_s: float = 0.1  # how often the script's descendants are recorded
    flush_timeout_s: float = 10.0  # for on_output to take the rest once the script has ended

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s must be above 0 and at most {MAX_TIMEOUT_S} s")
        if self.output_cap_bytes < 0:
            raise ValueError("output_cap_bytes must be 0 or more")
        if self.chunk_bytes < 1:
            raise ValueError("chunk_bytes must be at least 1")
        for name in ("chunk_interval_s", "kill_grace_s", "flush_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        if self.observe_interval_s <= 0:
            raise ValueError("observe_interval_s must be above 0")


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int | None  # POSIX: negative is the signal that ended it
    timed_out: bool
    cancelled: bool
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_size: int  # every byte written, kept or not
    stderr_size: int
    duration_s: float
    stray_processes: int  # processes other than the script itself that the runner stopped

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    @classmethod
    def of(
        cls,
        exit_code: int | None,
        stop: str,
        stdout: OutputCapture,
        stderr: OutputCapture,
        *,
        duration_s: float,
        stray_processes: int,
    ) -> RunOutcome:
        """A run's outcome from how it stopped ("", "timeout" or "cancel") and its captures."""
        return cls(
            exit_code=exit_code,
            timed_out=stop == "timeout",
            cancelled=stop == "cancel",
            stdout=bytes(stdout.kept),
            stderr=bytes(stderr.kept),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            stdout_size=stdout.size,
            stderr_size=stderr.size,
            duration_s=duration_s,
            stray_processes=stray_processes,
        )


def this_platform() -> Platform:
    if sys.platform == "win32":
        return Platform.WINDOWS
    if sys.platform == "darwin":
        return Platform.MACOS
    return Platform.LINUX


def interpreter_command(interpreter: Interpreter) -> list[str]:
    """The interpreter's program and fixed options, found on the minimal PATH (POSIX) or in
    the system folder (Windows PowerShell); ScriptCannotRun if this machine lacks it."""
    if interpreter is Interpreter.POWERSHELL and sys.platform == "win32":
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        return [os.path.join(root, "System32", "WindowsPowerShell", "v1.0", "powershell.exe")]
    names = {
        Interpreter.POWERSHELL: ("pwsh", []),
        Interpreter.BASH: ("bash", ["--noprofile", "--norc"]),
        Interpreter.SH: ("sh", []),
        Interpreter.PYTHON: ("python3", ["-I"]),  # -I: no PYTHON* variables, no user site
    }
    name, options = names[interpreter]
    if sys.platform == "win32" and interpreter is not Interpreter.PYTHON:
        raise ScriptCannotRun(f"{interpreter.value} scripts do not run on Windows")
    found = shutil.which(name, path=MINIMAL_PATH)
    if found is None:
        raise ScriptCannotRun(
            f"{interpreter.value} scripts need {name}, which is not in {MINIMAL_PATH}"
        )
    return [found, *options]


def check_again(manifest: Manifest, values: Mapping[str, ParameterValue]) -> None:
    """Refuse values that are not exactly what Manifest.check_values makes of them."""
    dry_run = values.get(DRY_RUN)
    if not isinstance(dry_run, bool):
        raise ScriptCannotRun(
            f"the values for {manifest.id} lack {DRY_RUN}: pass what Manifest.check_values returns"
        )
    for name, value in values.items():
        if isinstance(value, str) and "\0" in value:
            raise ScriptCannotRun(f"parameter {name}: a NUL character is not allowed")
    given = {name: as_text(value) for name, value in values.items() if name != DRY_RUN}
    try:
        checked = manifest.check_values(given, dry_run=dry_run)
    except ValueError as error:
        raise ScriptCannotRun(str(error)) from None
    if checked != dict(values):
        raise ScriptCannotRun(f"the values for {manifest.id} are not the ones its manifest gives")


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, _CREATE_NEW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def prepare_run(
    folder: Path,
    manifest: Manifest,
    script: bytes,
    values: Mapping[str, ParameterValue],
    program: list[str],
    *,
    mark: str,
    home: Path | None,
) -> tuple[list[str], dict[str, str]]:
    """Write the run's files into `folder`; the command line and environment that run them
    (`program`: the interpreter and its fixed options, from interpreter_command)."""
    script_path = folder / f"{manifest.id}{manifest.interpreter.suffix}"
    system = windows_environment(os.environ) if sys.platform == "win32" else None
    if manifest.interpreter is not Interpreter.POWERSHELL:
        _write_new(script_path, script)
        environment = script_environment(values, mark=mark, home=home, system=system)
        return [*program, str(script_path)], environment
    _write_new(script_path, powershell.script_source(script))
    parameters = folder / "parameters.json"
    prologue = folder / "prologue.ps1"
    _write_new(parameters, powershell.parameter_file(manifest, values))
    _write_new(prologue, powershell.PROLOGUE.encode("ascii"))
    command = powershell.powershell_command(program[0], prologue, parameters, script_path)
    return command, script_environment({}, mark=mark, home=home, system=system)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        log.warning("could not remove the run's folder %s", folder)


class _ScriptProtocol(asyncio.SubprocessProtocol):
    def __init__(self, stdout: OutputCapture, stderr: OutputCapture, more: asyncio.Event):
        self.captures = {1: stdout, 2: stderr}
        self.more = more
        self.exited = asyncio.Event()
        self.closed = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        capture = self.captures.get(fd)
        if capture is not None and isinstance(data, bytes):
            capture.take(data)
            self.more.set()

    def process_exited(self) -> None:
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()  # the process has exited and both pipes are closed


async def run(
    manifest: Manifest,
    script: bytes,
    values: Mapping[str, ParameterValue],
    *,
    limits: RunLimits | None = None,
    on_output: OutputCallback | None = None,
    cancel: asyncio.Event | None = None,
    work_root: Path | None = None,
    home: Path | None = None,
) -> RunOutcome:
    """Run `script` under `manifest` with `values` (from Manifest.check_values).

    ScriptCannotRun before anything starts; otherwise the outcome, whatever the script did.
    `work_root` is where the run's private folder is made (the system's temp folder unless
    given; the agent passes its state folder); `home` is the script's HOME (the agent user's).
    """
    limits = limits or RunLimits()
    if this_platform() not in manifest.platforms:
        names = ", ".join(platform.value for platform in manifest.platforms)
        raise ScriptCannotRun(f"{manifest.id} is for {names}, not {this_platform().value}")
    if manifest.user_session:  # never as the agent's own user (SYSTEM, root)
        raise ScriptCannotRun(
            f"{manifest.id} runs in the logged-on user's session, not as the agent's user: "
            "user_session_run.run_in_user_session runs it"
        )
    program = interpreter_command(manifest.interpreter)
    check_again(manifest, values)
    mark = os.urandom(16).hex()
    folder = Path(tempfile.mkdtemp(prefix="sonde-run-", dir=work_root))
    try:
        argv, environment = prepare_run(
            folder, manifest, script, values, program, mark=mark, home=home
        )
        return await _supervise(
            argv,
            environment,
            folder,
            mark,
            limits=limits,
            timeout_s=limits.timeout_s or manifest.timeout_s,
            on_output=on_output,
            cancel=cancel,
        )
    finally:
        _remove(folder)


class _ScriptProcess:
    """The started script and what holds its tree: a ProcessTree (POSIX) or a job (Windows)."""

    def __init__(
        self, transport: asyncio.SubprocessTransport, protocol: _ScriptProtocol, mark: str
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        exited = protocol.exited
        self.tree = ProcessTree(transport.get_pid(), mark, lambda: not exited.is_set())
        self.job: Any = None
        self.strays = 0  # processes besides the leader stopped so far

    @classmethod
    async def start(
        cls,
        argv: list[str],
        environment: dict[str, str],
        folder: Path,
        protocol: _ScriptProtocol,
        mark: str,
    ) -> _ScriptProcess:
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {"start_new_session": True}
        if sys.platform == "win32":
            from sonde.agent.remediation import windows_job

            flags = windows_job.CREATE_SUSPENDED | windows_job.CREATE_NEW_PROCESS_GROUP
            options = {"creationflags": flags | windows_job.CREATE_NO_WINDOW}
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environment,
                cwd=folder,
                **options,
            )
        except OSError as error:
            raise ScriptCannotRun(f"could not start {argv[0]}: {error.strerror or error}") from None
        started = cls(transport, protocol, mark)
        if sys.platform == "win32":
            try:
                started.job = windows_job.ScriptJob()
                started.job.adopt_and_resume(transport.get_pid())
            except BaseException:
                transport.kill()
                transport.close()
                raise
        return started

    async def observe(self, interval_s: float) -> None:
        """Record the tree's processes until the script ends (POSIX; the job needs none)."""
        if self.job is not None:
            return
        exited = self.protocol.exited
        while not exited.is_set():
            self.tree.observe()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited.wait(), interval_s)

    async def stop(self, grace_s: float) -> None:
        """Stop the script and its tree, and wait for the script's end."""
        if self.job is not None:
            self.job.terminate()
        else:
            self.strays += await self.tree.stop(grace_s)
        await self.protocol.exited.wait()

    async def sweep(self, grace_s: float) -> None:
        """After the script's end: stop what it left running."""
        if self.job is not None:
            self.job.terminate()
        else:
            self.strays += await self.tree.stop(grace_s)

    def kill_now(self) -> None:
        if self.job is not None:
            self.job.terminate()
            return
        self.tree.observe()
        self.tree.scan()
        if sys.platform != "win32":
            self.tree.signal_all(signal.SIGKILL)

    def close(self) -> None:
        self.transport.close()
        if self.job is not None:
            self.job.close()


async def _supervise(
    argv: list[str],
    environment: dict[str, str],
    folder: Path,
    mark: str,
    *,
    limits: RunLimits,
    timeout_s: float,
    on_output: OutputCallback | None,
    cancel: asyncio.Event | None,
) -> RunOutcome:
    loop = asyncio.get_running_loop()
    stdout = OutputCapture(OutputStream.STDOUT, limits.output_cap_bytes)
    stderr = OutputCapture(OutputStream.STDERR, limits.output_cap_bytes)
    more, ended = asyncio.Event(), asyncio.Event()
    protocol = _ScriptProtocol(stdout, stderr, more)
    started = loop.time()
    script = await _ScriptProcess.start(argv, environment, folder, protocol, mark)
    background = [asyncio.create_task(script.observe(limits.observe_interval_s))]
    if on_output is not None:
        streaming = stream_output_safely(
            (stdout, stderr),
            on_output,
            chunk_bytes=limits.chunk_bytes,
            chunk_interval_s=limits.chunk_interval_s,
            more=more,
            ended=ended,
        )
        background.append(asyncio.create_task(streaming))
    try:
        stop = await _wait_for_end(protocol.exited, cancel, timeout_s)
        if stop:
            await script.stop(limits.kill_grace_s)
        await script.sweep(limits.kill_grace_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(protocol.closed.wait(), _PIPES_CLOSE_S)
        ended.set()
        more.set()
        # A receiver that stalls (a stream to the server that no longer moves) does not hold
        # the run: the outcome has the output in any case.
        _, stalled = await asyncio.wait(background, timeout=limits.flush_timeout_s)
        for task in stalled:
            log.warning("a script's output was not all taken within %g s", limits.flush_timeout_s)
            task.cancel()
    except BaseException:  # cancelled from outside: nothing of the run may outlive it
        script.kill_now()
        for task in background:
            task.cancel()
        raise
    finally:
        script.close()
    return RunOutcome.of(
        script.transport.get_returncode(),
        stop,
        stdout,
        stderr,
        duration_s=loop.time() - started,
        stray_processes=script.strays,
    )


async def _wait_for_end(
    exited: asyncio.Event, cancel: asyncio.Event | None, timeout_s: float
) -> Literal["", "timeout", "cancel"]:
    """'' when the script ended by itself, 'timeout' or 'cancel' when it must be stopped."""
    waits = [asyncio.create_task(exited.wait())]
    if cancel is not None:
        waits.append(asyncio.create_task(cancel.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        for task in waits:
            task.cancel()
    if exited.is_set():
        return ""
    if cancel is not None and cancel.is_set():
        return "cancel"
    return "timeout"
