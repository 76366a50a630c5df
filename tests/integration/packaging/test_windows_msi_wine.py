"""The Windows agent MSI installed, started, upgraded and uninstalled under Wine, with the
mingw-w64 stand-in service (the real pythonservice.exe needs a Windows CPython, which is not
available offline). What Wine cannot show, and the test on a real Windows host covers, is in
docs/windows-package.md ("What the tests prove where"): ACLs (Wine's msi does not apply
MsiLockPermissionsEx) and MsiHiddenProperties (Wine logs the property all the same)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import WindowsBuilds
from tests.support.deployment import wait_for

WINE = "/usr/lib/wine/wine64"
WINESERVER = "/usr/lib/wine/wineserver"
# Each Wine command is bounded; the slowest, wineboot on a new prefix, takes about 12 s here.
COMMAND_TIMEOUT_S = 120
TOKEN = "sonde-enroll-1.stand-in-enrollment-string-for-wine"
UNINSTALL_KEY = "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Wine:
    prefix: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Output to files, not pipes: a process the command starts (services.exe, a service)
        # inherits them and may outlive it, and a pipe would then never reach its end.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            done = subprocess.run(
                [WINE, *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())

    def msiexec(self, *args: str) -> int:
        return self.run("msiexec", *args, "/qn").returncode

    def reg(self, key: str) -> dict[str, str] | None:
        """A key's values (name -> data) from `reg query`, None when the key is absent."""
        done = self.run("reg", "query", key)
        if done.returncode != 0:
            return None
        values: dict[str, str] = {}
        for line in done.stdout.splitlines():
            parts = line.split(None, 2)
            if line.startswith("    ") and len(parts) == 3 and parts[1].startswith("REG_"):
                values[parts[0]] = parts[2]
        return values

    def service_state(self) -> str:
        out = self.run("sc", "query", "SondeAgent").stdout
        for line in out.splitlines():
            if "STATE" in line:
                return line.split()[-1]
        return "ABSENT"

    def drive_c(self, *parts: str) -> Path:
        return self.prefix.joinpath("drive_c", *parts)

    def copy_in(self, source: Path) -> str:
        shutil.copyfile(source, self.drive_c(source.name))
        return f"C:\\{source.name}"


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    if not Path(WINE).exists():
        pytest.skip("needs wine (apt-get install wine wine64)")
    prefix = tmp_path_factory.mktemp("wine-prefix")
    env = {
        **os.environ,
        "WINEPREFIX": str(prefix),
        "WINEDEBUG": "-all",
        "WINEDLLOVERRIDES": "mscoree,mshtml=",
        "DISPLAY": "",
    }
    here = Wine(prefix, env)
    # Not into pipes: the processes wineboot starts (services.exe...) may outlive it.
    booted = subprocess.run(
        [WINE, "wineboot", "-i"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert booted.returncode == 0
    subprocess.run([WINESERVER, "-w"], env=env, timeout=COMMAND_TIMEOUT_S, check=True)
    # A Wine process that waits for the test's end: a wineserver left without one exits and
    # takes the running service with it (the next command's would start it again).
    keeper = subprocess.Popen(
        [WINE, "cmd", "/c", "pause"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield here
    finally:
        keeper.kill()
        keeper.wait(COMMAND_TIMEOUT_S)
        subprocess.run([WINESERVER, "-k"], env=env, timeout=COMMAND_TIMEOUT_S, check=False)


def _marker(wine: Wine) -> list[str]:
    path = wine.drive_c("ProgramData", "Sonde", "agent", "standin-service.txt")
    return path.read_text().splitlines() if path.exists() else []


def _seen(wine: Wine, line: str) -> bool:
    return line in _marker(wine)


def _started(wine: Wine) -> bool:
    """`net start`: True once it started the service. Wine's service manager can refuse a
    start while the stopped service's process is still exiting ("Internal error", exit 1,
    seen once in CI just after `net stop`); another start a second later is taken. A start
    that never works still fails, at the wait's end."""
    done = wine.run("net", "start", "SondeAgent")
    return done.returncode == 0 or wine.service_state() == "RUNNING"


def test_install_start_upgrade_and_uninstall_under_wine(
    wine: Wine, windows_builds: WindowsBuilds
) -> None:
    v1 = wine.copy_in(windows_builds.v1.msi)
    v2 = wine.copy_in(windows_builds.v2.msi)
    code_v1 = str(windows_builds.v1.report["product_code"])
    code_v2 = str(windows_builds.v2.report["product_code"])

    # Install: silent, with the enrollment string as the property.
    assert wine.msiexec("/i", v1, f"ENROLLMENT={TOKEN}") == 0
    agent = wine.drive_c("Program Files", "Sonde", "Agent")
    assert (agent / "sonde-service.exe").is_file()
    assert (agent / "python" / "python.exe").is_file()
    assert (agent / "python" / "Lib" / "site-packages" / "sonde" / "agent" / "cli.py").is_file()
    assert wine.drive_c("ProgramData", "Sonde", "agent").is_dir()
    settings = wine.reg("HKLM\\Software\\Sonde\\Agent")
    assert settings is not None
    assert settings["Version"] == "1.0.0"
    assert settings["InstallDir"] == "C:\\Program Files\\Sonde\\Agent\\"
    service = wine.reg("HKLM\\System\\CurrentControlSet\\Services\\SondeAgent")
    assert service is not None
    assert service["Start"] == "0x2"  # automatic
    assert service["Type"] == "0x10"  # own process
    assert service["ObjectName"] == "LocalSystem"
    assert service["ImagePath"] == "C:\\Program Files\\Sonde\\Agent\\sonde-service.exe"

    # Started at install; it took the enrollment string and deleted it from the registry.
    wait_for("the service running", lambda: _seen(wine, "running 1.0.0"), timeout=30)
    assert wine.service_state() == "RUNNING"
    assert f"enrollment {len(TOKEN)}" in _marker(wine)
    after_start = wine.reg("HKLM\\Software\\Sonde\\Agent")
    assert after_start is not None
    assert "Enrollment" not in after_start

    # Stops on request and starts again.
    assert wine.run("net", "stop", "SondeAgent").returncode == 0
    assert _marker(wine)[-1] == "stopped"
    assert wine.service_state() == "STOPPED"
    wait_for("the service started again", lambda: _started(wine), timeout=30, interval=1)
    wait_for("the service running again", lambda: wine.service_state() == "RUNNING", timeout=30)

    # Upgrade in place: the newer MSI replaces the older; the state folder is kept.
    assert wine.msiexec("/i", v2) == 0
    wait_for("version 2 running", lambda: _seen(wine, "running 2.0.0"), timeout=30)
    upgraded = wine.reg("HKLM\\Software\\Sonde\\Agent")
    assert upgraded is not None
    assert upgraded["Version"] == "2.0.0"
    assert wine.reg(f"{UNINSTALL_KEY}\\{code_v1}") is None
    assert wine.reg(f"{UNINSTALL_KEY}\\{code_v2}") is not None
    assert "running 1.0.0" in _marker(wine)  # what the agent wrote before survived
    assert wine.service_state() == "RUNNING"

    # The older MSI cannot replace the newer: 1603, fatal (a Unix exit status keeps 8 bits).
    assert wine.msiexec("/i", v1) == 1603 & 0xFF
    kept = wine.reg("HKLM\\Software\\Sonde\\Agent")
    assert kept is not None
    assert kept["Version"] == "2.0.0"

    # Uninstall: the service stopped and removed, the program and the registry gone.
    assert wine.msiexec("/x", code_v2) == 0
    assert _marker(wine)[-1] == "stopped"
    assert wine.service_state() == "ABSENT"
    assert wine.reg("HKLM\\System\\CurrentControlSet\\Services\\SondeAgent") is None
    assert wine.reg("HKLM\\Software\\Sonde\\Agent") is None
    assert wine.reg(f"{UNINSTALL_KEY}\\{code_v2}") is None
    assert not wine.drive_c("Program Files", "Sonde").exists()
    # Only what the agent itself wrote stays (its state, by design: docs/windows-package.md).
    state = wine.drive_c("ProgramData", "Sonde", "agent")
    assert sorted(p.name for p in state.iterdir()) == ["standin-service.txt"]
