"""What only a real Windows host shows about the agent MSI, run there when configured:
the ACLs (MsiLockPermissionsEx, which Wine's msi ignores), the enrollment string kept out of
the verbose log (MsiHiddenProperties, which Wine ignores), and the install, start and
uninstall with the real runtime and pywin32's pythonservice.exe.

Run on a Windows machine, as an administrator, with the MSI built on Linux:
    set SONDE_WINDOWS_MSI=C:\\path\\sonde-agent.msi
    python -m pytest tests/integration/packaging/test_windows_msi_real_windows.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MSI_ENV = "SONDE_WINDOWS_MSI"
CANARY = "sonde-enroll-1.canary-that-must-not-reach-the-log"
STATE = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Sonde" / "agent"

pytestmark = pytest.mark.skipif(
    sys.platform != "win32" or not os.environ.get(MSI_ENV),
    reason=f"needs a Windows host and {MSI_ENV}=PATH of an MSI from `sonde-server package windows`",
)


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def _powershell(script: str) -> str:
    done = _run("powershell", "-NoProfile", "-NonInteractive", "-Command", script)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _acl_identities(path: str) -> set[str]:
    out = _powershell(f"(Get-Acl '{path}').Access | ForEach-Object {{ $_.IdentityReference }}")
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_install_hides_the_string_locks_the_state_and_uninstalls(tmp_path: Path) -> None:
    msi = os.environ[MSI_ENV]
    log = tmp_path / "install.log"
    done = _run("msiexec", "/i", msi, "/qn", "/norestart", "/l*v", str(log), f"ENROLLMENT={CANARY}")
    assert done.returncode in (0, 3010), done
    try:
        text = log.read_text(encoding="utf-16", errors="replace")
        assert CANARY not in text
        allowed = {"NT AUTHORITY\\SYSTEM", "BUILTIN\\Administrators"}
        assert _acl_identities(str(STATE)) == allowed
        assert _acl_identities(r"HKLM:\SOFTWARE\Sonde\Agent") == allowed
        state = _powershell("(Get-Service SondeAgent).Status")
        assert state in {"Running", "StartPending"}
    finally:
        removed = _run("msiexec", "/x", msi, "/qn", "/norestart")
        assert removed.returncode in (0, 3010), removed
    assert _run("sc", "query", "SondeAgent").returncode != 0
