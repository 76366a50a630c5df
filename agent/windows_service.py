"""The agent as a Windows service, hosted by pywin32's pythonservice.exe.

The MSI installs the service SondeAgent (LocalSystem, automatic start) whose PythonClass
value names AgentService below. At each start the service:

1. enrolls once with the enrollment string the MSI wrote from its ENROLLMENT property to
   HKLM\\SOFTWARE\\Sonde\\Agent, value Enrollment (a key only SYSTEM and Administrators can
   read), and deletes the value once it is used up: enrolled, or refused by the server.
   An unreachable server keeps it for the next start, as `sonde-agent enroll` keeps its key.
2. runs `python.exe -m sonde.agent.cli run` as a child and starts it again when it ends,
   with the agent's backoff, unless it ended with an exit code that a restart cannot fix
   (refused, revoked, damaged state: the systemd unit's RestartPreventExitStatus).
3. on Stop, ends the child (TerminateProcess on Windows: the agent's journal makes that
   safe, as kill -9 is on Linux) and reports stopped.

Everything but the pywin32 class is plain Python, tested on Linux.
"""

from __future__ import annotations

import enum
import logging
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sonde.agent import exit_codes
from sonde.agent.backoff import Backoff
from sonde.agent.paths import default_state_dir
from sonde.agent.state import is_enrolled

SERVICE_NAME = "SondeAgent"
ENROLLMENT_KEY = r"SOFTWARE\Sonde\Agent"
ENROLLMENT_VALUE = "Enrollment"
# Exit codes of `sonde-agent run` that a restart cannot fix.
NO_RESTART = frozenset({exit_codes.REFUSED, exit_codes.REVOKED, exit_codes.DAMAGED_STATE})
# How long the agent has to end after it is asked to before it is killed.
STOP_GRACE_S = 10.0

log = logging.getLogger("sonde-agent.service")


class EnrollmentSource(Protocol):
    """Where the install left the enrollment string: the registry on Windows."""

    def read(self) -> str | None: ...

    def clear(self) -> None: ...


class FirstStart(enum.Enum):
    """What the start found: whether the agent can run, and why not."""

    ALREADY_ENROLLED = "already enrolled"
    ENROLLED_NOW = "enrolled with the install's enrollment string"
    NOT_ENROLLED = "not enrolled and no enrollment string was given"
    REFUSED = "the enrollment string was refused"
    UNREACHABLE = "the server could not be reached to enroll"


@dataclass(frozen=True)
class StartDecision:
    outcome: FirstStart
    detail: str = ""

    @property
    def can_run(self) -> bool:
        return self.outcome in {FirstStart.ALREADY_ENROLLED, FirstStart.ENROLLED_NOW}


def enroll_at_first_start(state_dir: Path, source: EnrollmentSource) -> StartDecision:
    """Enroll with the install's string when the state folder holds no enrollment yet.

    The string never outlives its use: an enrolled machine deletes any string left (a
    reinstall's), an enrollment or a refusal deletes it; only an unreachable server, which
    may yet answer, keeps it for the next start.
    """
    token = (source.read() or "").strip()
    if is_enrolled(state_dir):
        if token:
            source.clear()
        return StartDecision(FirstStart.ALREADY_ENROLLED)
    if not token:
        return StartDecision(
            FirstStart.NOT_ENROLLED,
            "install again with ENROLLMENT=<string from `sonde-server token create`>, or run "
            f"`sonde-agent enroll STRING --state {state_dir}` as an administrator",
        )
    # Only enrollment needs cryptography: loaded here, in the service, never in the agent.
    from sonde.agent.enroll import EnrollmentError, ReplyLost, enroll

    try:
        state = enroll(token, state_dir)
    except EnrollmentError as error:
        # enroll() words a lost reply again (`from None`): the ReplyLost is its context.
        if isinstance(error, ReplyLost) or isinstance(error.__context__, ReplyLost):
            return StartDecision(FirstStart.UNREACHABLE, str(error))
        source.clear()
        return StartDecision(FirstStart.REFUSED, str(error))
    source.clear()
    return StartDecision(FirstStart.ENROLLED_NOW, f"agent {state.agent_id}")


def agent_command(state_dir: Path, python: Path | None = None) -> list[str]:
    """`python.exe -m sonde.agent.cli run --state DIR`: under pythonservice.exe,
    sys.executable is the service host, so the interpreter is the python.exe beside it."""
    if python is None:
        host = Path(sys.executable)
        python = host.with_name("python.exe") if sys.platform == "win32" else host
    return [str(python), "-m", "sonde.agent.cli", "run", "--state", str(state_dir)]


class AgentSupervisor:
    """Run the agent as a child until stopped, starting it again when a restart can help."""

    def __init__(
        self,
        command: Sequence[str],
        stop: threading.Event,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self._command = list(command)
        self._stop = stop
        self._backoff = backoff or Backoff()
        self.starts = 0

    def run(self) -> int:
        """Supervise; the agent's last exit code, or 0 when stopped."""
        while not self._stop.is_set():
            child = subprocess.Popen(self._command, stdin=subprocess.DEVNULL)
            self.starts += 1
            while child.poll() is None:
                if self._stop.wait(0.2):
                    self._end(child)
                    return exit_codes.OK
            code = child.returncode
            if code in NO_RESTART:
                log.error("the agent stopped with exit code %d: not restarting it", code)
                return code
            delay = self._backoff.next_delay()
            log.warning("the agent stopped with exit code %d: again in %.1f s", code, delay)
            if self._stop.wait(delay):
                break
        return exit_codes.OK

    @staticmethod
    def _end(child: subprocess.Popen[bytes]) -> None:
        child.terminate()
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve(stop: threading.Event, source: EnrollmentSource, state_dir: Path | None = None) -> int:
    """The service's body: enroll if asked to, then supervise the agent until stopped."""
    folder = state_dir or default_state_dir()
    decision = enroll_at_first_start(folder, source)
    log.info("start: %s %s", decision.outcome.value, decision.detail)
    if not decision.can_run:
        return exit_codes.REFUSED if decision.outcome != FirstStart.UNREACHABLE else 1
    return AgentSupervisor(agent_command(folder), stop).run()


if sys.platform == "win32":  # pragma: no cover - pywin32 runs only on Windows
    import winreg

    class RegistryEnrollment:
        """HKLM\\SOFTWARE\\Sonde\\Agent, value Enrollment (64-bit view). Windows only."""

        def read(self) -> str | None:
            try:
                with winreg.OpenKey(
                    winreg.HKEY_LOCAL_MACHINE,
                    ENROLLMENT_KEY,
                    0,
                    winreg.KEY_QUERY_VALUE | winreg.KEY_WOW64_64KEY,
                ) as key:
                    value, kind = winreg.QueryValueEx(key, ENROLLMENT_VALUE)
            except FileNotFoundError:
                return None
            return value if kind == winreg.REG_SZ and isinstance(value, str) else None

        def clear(self) -> None:
            try:
                with winreg.OpenKey(
                    winreg.HKEY_LOCAL_MACHINE,
                    ENROLLMENT_KEY,
                    0,
                    winreg.KEY_SET_VALUE | winreg.KEY_WOW64_64KEY,
                ) as key:
                    winreg.DeleteValue(key, ENROLLMENT_VALUE)
            except FileNotFoundError:
                pass

    import servicemanager  # type: ignore[import-not-found]
    import win32service  # type: ignore[import-not-found]
    import win32serviceutil  # type: ignore[import-not-found]

    class AgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = "Sonde Agent"

        def __init__(self, args: Sequence[str]) -> None:
            super().__init__(args)
            self._stop = threading.Event()

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self._stop.set()

        def SvcDoRun(self) -> None:
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting")
            code = serve(self._stop, RegistryEnrollment())
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: stopped (exit code {code})")
