"""A Windows host for push install tests: the WinRS endpoint (real HTTP, WS-Management) with
programs for the two deploy scripts, reading only what crossed the wire.

preflight.ps1 is answered with this host's facts (admin or not, architecture, free space on
C:, the agent's version in the registry) and, given a package URL, whether a TCP connection to
it opens (a real connect, unless the host is set behind a firewall). fetch.ps1 does what it
says, for real: an HTTPS GET of the URL with the certificate pinned by the SHA-256 of its DER,
the length announced and the file's SHA-256 checked, the file kept only when both match.
install.ps1 plays msiexec: the MSI must have arrived (through the receiver with its hash
matched, or fetched) at the path the script was given; the ENROLLMENT
value is the one the run document's environment carried. The "service" it installs is a real
Linux sonde-agent process that enrolls with that value and keeps its stream open, so the
server's online check is real. What it cannot show: Windows Installer itself, the service
control manager, the MSI's ACLs or its log (docs/windows-package.md's Wine and real-Windows
tests cover the package).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from sonde.server.remote.msi_fetch import FETCH_PS
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
    reaches_server: bool = True  # False: a firewall between it and the package listener
    # A machine in the middle: this host's connections to the package listener go here.
    diverted_to: tuple[str, int] | None = None
    fetches: list[str] = field(default_factory=list)  # the URLs fetch.ps1 was given
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
                "reaches_server": self._reaches(_argument(run, "-PackageUrl")),
            }
            return WinRSReply(stdout=json.dumps(facts).encode())
        if script == BOM + FETCH_PS:
            return self._fetch(run)
        if script == BOM + INSTALL_PS:
            return self._msiexec(run)
        return WinRSReply(stderr=b"an unknown script", exit_code=1)

    def _reaches(self, url: str) -> bool:
        if not url or not self.reaches_server:
            return False
        try:
            socket.create_connection(self._route(url), 3).close()
        except OSError:
            return False
        return True

    def _route(self, url: str) -> tuple[str, int]:
        where = urllib.parse.urlsplit(url)
        return self.diverted_to or (where.hostname or "", where.port or 443)

    def _fetch(self, run: LaunchedRun) -> WinRSReply:
        """fetch.ps1: the GET with the certificate pinned, the length and the hash checked."""
        url, pin = _argument(run, "-Url"), _argument(run, "-Pin").upper()
        sha256, path = _argument(run, "-Sha256").lower(), _argument(run, "-Msi")
        size = int(_argument(run, "-Size"))
        self.fetches.append(url)
        where = urllib.parse.urlsplit(url)
        host, port = self._route(url)
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # as the script: the pin decides, not a CA
        connection = http.client.HTTPSConnection(host, port, context=tls, timeout=30)
        try:
            connection.connect()
            assert isinstance(connection.sock, ssl.SSLSocket)
            shown = connection.sock.getpeercert(binary_form=True) or b""
            if hashlib.sha256(shown).hexdigest().upper() != pin:
                said = f"the server at {url} did not show the pinned certificate"
                return WinRSReply(stderr=said.encode(), exit_code=3)
            connection.request("GET", where.path)
            response = connection.getresponse()
            if response.status != 200:
                said = f"cannot fetch {url}: ({response.status}) {response.reason}"
                return WinRSReply(stderr=said.encode(), exit_code=4)
            if response.length != size:
                said = f"the server announced {response.length} bytes, not {size}"
                return WinRSReply(stderr=said.encode(), exit_code=5)
            data = response.read(size + 1)
        except OSError as error:
            return WinRSReply(stderr=f"cannot fetch {url}: {error}".encode(), exit_code=4)
        finally:
            connection.close()
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            said = f"the file fetched has SHA-256 {found.upper()}, not {sha256}: deleted"
            return WinRSReply(stderr=said.encode(), exit_code=2)
        self.files[path] = data
        return WinRSReply(exit_code=0)

    def _msiexec(self, run: LaunchedRun) -> WinRSReply:
        path = _argument(run, "-Msi")
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


def _argument(run: LaunchedRun, name: str) -> str:
    """The value after `name` on the script's command line, "" without it."""
    return run.argv[run.argv.index(name) + 1] if name in run.argv else ""


def start_windows_host(folder: Path, user: str, password: str) -> WindowsHost:
    folder.mkdir(parents=True, exist_ok=True)
    endpoint = WinRSEndpoint(user, password).start()
    host = WindowsHost(endpoint, folder)
    serve_transport(endpoint, host.program, host.files)
    return host
