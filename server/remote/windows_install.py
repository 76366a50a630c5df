"""A push install on a Windows machine over WinRM: preflight, the MSI streamed with its hash
checked, msiexec with the enrollment string kept off every logged command line.

Both scripts are fixed files of the run (winrm_powershell.run_document), started with -File:
no value of a caller is parsed as PowerShell. The enrollment string travels in the run
document's environment (on stdin, never in the WinRS command line), and install.ps1 hands it
to msiexec as the ENROLLMENT property, which the MSI lists in MsiHiddenProperties so that its
log leaves it out (docs/windows-package.md). The service enrolls at its first start, so the
agent is found by the token it enrolled with.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sonde.server.remote import winrm_powershell as ps
from sonde.server.remote.linux_preflight import PreflightFailed
from sonde.server.remote.msi_fetch import PackageOffer, fetch_failure, fetch_on_host
from sonde.server.remote.shell import RemoteShell
from sonde.server.remote.winrm import WinRMShell

MSI_FOLDER = "C:\\Windows\\Temp"
_MSI_NAME = re.compile(r"sonde-agent-(?P<version>[0-9][0-9A-Za-z.+-]{0,40})\.msi")
# msiexec's exit codes (WINDOWS.md 1.4): success, or what an admin does about it.
_MSI_EXIT = {
    1603: "a fatal error during installation (see C:\\Windows\\Temp\\sonde-install.log)",
    1618: "another installation is running: retry when it ends",
    1619: "the package could not be opened",
    1625: "the installation is blocked by policy",
}

PREFLIGHT_PS = b"""\
param([string]$PackageUrl = '')
$ErrorActionPreference = 'Stop'
$me = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
$admin = $me.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
$os = Get-CimInstance Win32_OperatingSystem
$disk = Get-CimInstance Win32_LogicalDisk -Filter "DeviceID='C:'"
$service = Get-Service -Name SondeAgent -ErrorAction SilentlyContinue
$installed = ''
$key = 'HKLM:\\SOFTWARE\\Sonde\\Agent'
if (Test-Path $key) { $installed = [string](Get-ItemProperty $key).Version }
$busy = $null -ne (Get-Process -Name msiexec -ErrorAction SilentlyContinue |
    Where-Object { $_.SessionId -eq 0 } | Select-Object -First 1)
$reaches = $false
if ($PackageUrl) {
    $uri = [Uri]$PackageUrl
    $client = New-Object Net.Sockets.TcpClient
    try { $reaches = $client.ConnectAsync($uri.Host, $uri.Port).Wait(3000) } catch { }
    finally { $client.Dispose() }
}
[Console]::Out.Write((@{
    admin = $admin; os = [string]$os.Caption; build = [string]$os.BuildNumber
    arch = $env:PROCESSOR_ARCHITECTURE; free_bytes = [int64]$disk.FreeSpace
    installed = $installed; service = $null -ne $service; msiexec_busy = $busy
    reaches_server = $reaches
} | ConvertTo-Json -Compress))
"""

INSTALL_PS = b"""\
param([string]$Msi)
$ErrorActionPreference = 'Stop'
$log = 'C:\\Windows\\Temp\\sonde-install.log'
$arguments = @('/i', "`"$Msi`"", '/qn', '/norestart', '/l*v', $log,
    "ENROLLMENT=`"$env:SONDE_ENROLLMENT`"")
$done = Start-Process -FilePath msiexec.exe -ArgumentList $arguments -Wait -PassThru
Remove-Item -LiteralPath $Msi -Force -ErrorAction SilentlyContinue
exit $done.ExitCode
"""


@dataclass(frozen=True)
class AgentMsi:
    """The MSI `sonde-server package windows` built; its version from its file name."""

    filename: str
    data: bytes
    version: str

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def load_msi(path: Path) -> AgentMsi:
    match = _MSI_NAME.fullmatch(path.name)
    if match is None or not path.is_file():
        raise ValueError(
            f"{path} is not the agent's MSI: sonde-server package windows writes "
            "sonde-agent-VERSION.msi"
        )
    return AgentMsi(path.name, path.read_bytes(), match["version"])


@dataclass(frozen=True)
class WindowsHost:
    installed_version: str
    free_bytes: int
    reaches_server: bool = False  # a connection to the package listener opened


def check_windows_host(
    text: bytes, *, label: str, min_free_bytes: int, msi_size: int
) -> WindowsHost:
    """Preflight's JSON as facts, or PreflightFailed for the first check that fails."""
    try:
        found = json.loads(text.decode("utf-8", "replace"))
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise PreflightFailed("login", f"{label} did not answer the preflight script")
    if found.get("admin") is not True:
        raise PreflightFailed(
            "admin",
            f"{label}: the login is not in the Administrators group (a local admin other "
            "than the built-in one also needs LocalAccountTokenFilterPolicy=1)",
        )
    if found.get("arch") != "AMD64":
        arch = str(found.get("arch", ""))[:20] or "unknown"
        raise PreflightFailed("architecture", f"{label} is {arch}; the agent's MSI is x64")
    free = found.get("free_bytes")
    needed = max(min_free_bytes, 3 * msi_size)
    if not isinstance(free, int) or free < needed:
        shown = f"{free // 2**20} MiB" if isinstance(free, int) else "an unknown amount"
        raise PreflightFailed(
            "free space", f"{label} has {shown} free on C:; it needs {needed // 2**20} MiB"
        )
    if found.get("msiexec_busy") is True:
        raise PreflightFailed("msiexec", f"{label} is running another installation")
    installed = found.get("installed")
    return WindowsHost(
        str(installed)[:64] if isinstance(installed, str) else "",
        free,
        found.get("reaches_server") is True,
    )


async def preflight_windows(
    shell: RemoteShell, *, min_free_bytes: int, msi_size: int, package_url: str = ""
) -> WindowsHost:
    """The host's facts; with package_url, whether it reaches the server's package listener."""
    assert isinstance(shell, WinRMShell)
    arguments = ["-PackageUrl", package_url] if package_url else []
    ran = await shell.run_document(
        ps.script_document("preflight.ps1", PREFLIGHT_PS, arguments),
        timeout_s=60,
        max_output=16 * 1024,
    )
    return check_windows_host(
        ran.stdout, label=shell.target.label, min_free_bytes=min_free_bytes, msi_size=msi_size
    )


Stage = Callable[[str], Awaitable[None]]


async def install_windows(
    shell: RemoteShell,
    msi: AgentMsi,
    *,
    enrollment: str,
    stage: Stage,
    fetch_from: PackageOffer | None = None,
) -> None:
    """The MSI fetched by the host from `fetch_from`, or streamed (its SHA-256 checked on the
    host either way), installed silently with the enrollment string; InstallFailed saying
    what went wrong, msiexec's exit code in words."""
    from sonde.server.remote.linux_install import InstallFailed

    assert isinstance(shell, WinRMShell)
    await stage("install")
    path = f"{MSI_FOLDER}\\{msi.filename}"
    if fetch_from is None:
        await shell.upload(msi.data, path, timeout_s=600)
    else:
        fetched = await fetch_on_host(
            shell, fetch_from, sha256=msi.sha256, size=len(msi.data), path=path
        )
        if fetched.exit_code != 0:
            raise InstallFailed("install", fetch_failure(fetched, shell.target.label))
    await stage("start")
    argv: list[ps.Argument] = [
        ps.EXECUTABLE,
        *ps.OPTIONS,
        "-File",
        ps.FileArgument("install.ps1"),
        "-Msi",
        path,
    ]
    document = ps.run_document(
        argv,
        files=[ps.RunFile("install.ps1", b"\xef\xbb\xbf" + INSTALL_PS)],
        environment={"SONDE_ENROLLMENT": enrollment},
    )
    done = await shell.run_document(document, timeout_s=600)
    if done.exit_code not in {0, 3010}:
        why = _MSI_EXIT.get(done.exit_code, f"exit code {done.exit_code}")
        raise InstallFailed("start", f"msiexec on {shell.target.label} failed: {why}")
