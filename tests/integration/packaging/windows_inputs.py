"""Stand-in inputs of the Windows MSI build, made on Linux for the tests.

The Windows embeddable CPython and pywin32's service host cannot run under the tests' Wine
(no Windows CPython offline), so the tests build with: a runtime zip that has the embeddable
package's shape, a small wheel of our own (purelib in .data, a script that must be left
out), a pywin32-shaped wheel (win32/pythonservice.exe, pywin32_system32/*.dll), and a real
Windows service program compiled with mingw-w64 (tests/support/windows/standin_service.c).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.deployment import run

STANDIN_SOURCE = Path(__file__).parents[2] / "support" / "windows" / "standin_service.c"
MINGW = "x86_64-w64-mingw32-gcc"
TOOLS = ("wixl", "msiinfo", "msibuild", "msiextract")


def require(*tools: str) -> None:
    """Skip, naming the package, where a tool is missing (.ci/run installs them all)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install msitools wixl gcc-mingw-w64)")


def standin_service(folder: Path, version: str) -> Path:
    """The stand-in service program, reporting `version` in its marker file."""
    exe = folder / f"sonde-service-{version}.exe"
    subprocess.run(
        [
            MINGW, "-O2", f'-DSTANDIN_VERSION="{version}"', "-o", str(exe),
            str(STANDIN_SOURCE), "-ladvapi32", "-lshell32",
        ],
        check=True, timeout=60,
    )  # fmt: skip
    return exe


def standin_runtime(folder: Path) -> Path:
    """A zip shaped like python-3.11.x-embed-amd64.zip (its ._pth keeps site off, as shipped)."""
    path = folder / "python-3.11.9-embed-amd64.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("python.exe", b"MZ stand-in python.exe")
        zipped.writestr("pythonw.exe", b"MZ stand-in pythonw.exe")
        zipped.writestr("python311.dll", b"MZ stand-in python311.dll")
        zipped.writestr("python311.zip", b"PK stand-in standard library")
        zipped.writestr("python311._pth", "python311.zip\r\n.\r\n\r\n#import site\r\n")
    return path


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path


def standin_wheels(folder: Path) -> Path:
    """A wheels folder: one pure wheel and one shaped like pywin32's."""
    folder.mkdir(parents=True, exist_ok=True)
    _wheel(
        folder / "helpdesk_dep-1.0-py3-none-any.whl",
        {
            "helpdesk_dep/__init__.py": b"VALUE = 1\n",
            "helpdesk_dep-1.0.dist-info/METADATA": b"Name: helpdesk-dep\nVersion: 1.0\n",
            "helpdesk_dep-1.0.data/purelib/helpdesk_dep_extra.py": b"EXTRA = 1\n",
            "helpdesk_dep-1.0.data/scripts/helpdesk-dep": b"#!python\n",
        },
    )
    _wheel(
        folder / "pywin32-312-cp311-cp311-win_amd64.whl",
        {
            "win32/pythonservice.exe": b"MZ stand-in pythonservice.exe",
            "win32/lib/win32serviceutil.py": b"# stand-in\n",
            "pywin32_system32/pywintypes311.dll": b"MZ stand-in pywintypes311.dll",
            "pywin32_system32/pythoncom311.dll": b"MZ stand-in pythoncom311.dll",
            "pywin32.pth": b"win32\nwin32\\lib\n",
            "pywin32-312.dist-info/METADATA": b"Name: pywin32\nVersion: 312\n",
        },
    )
    return folder


@dataclass(frozen=True)
class Built:
    msi: Path
    report: dict[str, object]
    progress: str


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(
    out: Path, runtime: Path, wheels: Path, version: str, *extra: str, timeout: float = 120
) -> Built:
    """`sonde-server package windows ... --json`, which must succeed."""
    done = run(
        "sonde-server", "package", "windows", "--python-embed", str(runtime),
        "--sha256", sha256(runtime), "--wheels", str(wheels), "--version", version,
        "--out", str(out), "--json", *extra, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Built(msi=out, report=json.loads(done.stdout), progress=done.stderr)


def table(msi: Path, name: str) -> list[list[str]]:
    """The rows of one MSI table (msiinfo export), without its three header lines."""
    out = subprocess.run(
        ["msiinfo", "export", str(msi), name], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("\t") for line in out.splitlines()[3:]]
