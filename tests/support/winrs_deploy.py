"""A Windows host for push install tests: the WinRS endpoint (real HTTP, WS-Management) with
programs for the two deploy scripts, reading only what crossed the wire.

preflight.ps1 is answered with this host's facts (admin or not, architecture, free space on
C:, the agent's version in the registry). install.ps1 plays msiexec: the MSI must have arrived
through the receiver with its hash matched, at the path the script was given; the ENROLLMENT
value is the one the run document's environment carried. The "service" it installs is a real
Linux sonde-agent process that enrolls with that value and keeps its stream open, so the
server's online check is real. What it cannot show: Windows Installer itself, the service
control manager, the MSI's ACLs or its log (docs/windows-package.md's Wine and real-Windows
tests cover the package).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sonde.server.remote.windows_install import INSTALL_PS, PREFLIGHT_PS
from tests.support.winrs_endpoint import WinRSEndpoint, WinRSReply
from tests.support.winrs_programs import LaunchedRun, serve_transport

BOM = b"\xef\xbb\xbf"
# The service's first start: enroll with the value on stdin, then run (docs/agent.md).
_SERVICE = (
    "import os, pathlib, sys\n"
    "from sonde.agent.enroll import enroll\n"
    "enroll(sys.stdin.read().strip(), pathlib.Path(sys.argv[1]))\n"
    "os.execv(sys.executable, [sys.executable, '-c', "
    "'import sys; from sonde.agent.cli import main; "
    'sys.exit(main(["run", "--state", sys.argv[1]]))\', sys.argv[1]])\n'
)


@dataclass
class WindowsHost:
    """One endpoint and what this machine is: its facts can be changed between runs."""

    endpoint: WinRSEndpoint
    folder: Path
    admin: bool = True
    free_bytes: int = 40 * 2**30
    installed: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    installs: list[str] = field(default_factory=list)  # the ENROLLMENT values msiexec got
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    __test__ = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.endpoint.port}"

    def program(self, run: LaunchedRun) -> WinRSReply:
        if "-File" not in run.argv:
            return WinRSReply(stderr=f"unknown command {run.argv[:1]}".encode(), exit_code=1)
        script = run.file_after("-File")
        if script == BOM + PREFLIGHT_PS:
            facts = {
                "admin": self.admin,
                "os": "Microsoft Windows 11 Pro",
                "build": "22631",
                "arch": "AMD64",
                "free_bytes": self.free_bytes,
                "installed": self.installed,
                "service": bool(self.installed),
                "msiexec_busy": False,
            }
            return WinRSReply(stdout=json.dumps(facts).encode())
        if script == BOM + INSTALL_PS:
            return self._msiexec(run)
        return WinRSReply(stderr=b"an unknown script", exit_code=1)

    def _msiexec(self, run: LaunchedRun) -> WinRSReply:
        path = run.argv[run.argv.index("-Msi") + 1]
        msi = self.files.get(path)
        if msi is None:
            return WinRSReply(exit_code=1619)  # the package could not be opened
        enrollment = run.environment.get("SONDE_ENROLLMENT", "")
        self.installs.append(enrollment)
        state = self.folder / "ProgramData" / "Sonde"
        state.parent.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "service.log").open("ab")
        service = subprocess.Popen(
            [sys.executable, "-c", _SERVICE, str(state)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        assert service.stdin is not None
        service.stdin.write(enrollment.encode())
        service.stdin.close()
        self.processes.append(service)
        name = Path(path.replace("\\", "/")).name
        self.installed = name.removeprefix("sonde-agent-").removesuffix(".msi")
        return WinRSReply(exit_code=0)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.endpoint.stop()


def start_windows_host(folder: Path, user: str, password: str) -> WindowsHost:
    folder.mkdir(parents=True, exist_ok=True)
    endpoint = WinRSEndpoint(user, password).start()
    host = WindowsHost(endpoint, folder)
    serve_transport(endpoint, host.program, host.files)
    return host
