"""The folder the Windows MSI installs under Program Files, laid out on Linux.

python\\      the Windows embeddable CPython (an input of the build, checked by SHA-256),
             its ._pth opened to Lib\\site-packages and `import site`, so pywin32's .pth runs
python\\Lib\\site-packages\\   the agent's win_amd64 wheels unpacked, and the sonde package
             (everything but sonde.server: a workstation never gets the server's code)
python\\pythonservice.exe, pywintypes3XX.dll, pythoncom3XX.dll   pywin32's service host
             and the DLLs it loads, beside python3XX.dll (pywin32's post-install copies them
             to System32 instead; we never touch System32)

Archives come from outside (a download, a registry): no member may leave its folder.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

import sonde
from sonde.server.packaging.windows_wxs import PackageRefused, ServiceEntry

PYTHON_FOLDER = "python"
SITE_PACKAGES = PurePosixPath(PYTHON_FOLDER, "Lib", "site-packages")
# pywin32 hosts a Python class as a service; the class the service key's PythonClass names.
SERVICE_CLASS = "sonde.agent.windows_service.AgentService"
PYTHONSERVICE = PurePosixPath(PYTHON_FOLDER, "pythonservice.exe")
# Where a service program given with --service-program is installed.
OWN_SERVICE_PROGRAM = PurePosixPath("sonde-service.exe")

_PTH = re.compile(r"^python(3)(\d{1,2})\._pth$")
_WHEEL_DATA = re.compile(r"^[^/]+\.data/(purelib|platlib)/")


@dataclass(frozen=True)
class Runtime:
    """The embeddable CPython: its zip, the SHA-256 it must have, and its version."""

    zip_path: Path
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_runtime(runtime: Runtime) -> None:
    """Refuse a runtime zip that is missing or is not the one the admin named."""
    expected = runtime.sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise PackageRefused(f"--sha256 {runtime.sha256!r} is not a SHA-256 (64 hex digits)")
    if not runtime.zip_path.is_file():
        raise PackageRefused(f"--python-embed {runtime.zip_path}: no such file")
    actual = sha256_of(runtime.zip_path)
    if actual != expected:
        raise PackageRefused(
            f"--python-embed {runtime.zip_path} has SHA-256 {actual}, not {expected}: "
            "refusing a runtime other than the one named (download it again from python.org "
            "and compare with its published hash)"
        )


def _extract(archive: Path, into: Path, member_path: Callable[[str], str | None]) -> list[str]:
    """Unpack the members member_path keeps, each under `into` or refused; their names."""
    names: list[str] = []
    root = into.resolve()
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            if info.is_dir():
                continue
            relative = member_path(info.filename)
            if relative is None:
                continue
            target = (root / relative).resolve()
            if not target.is_relative_to(root) or "\\" in relative or ":" in relative:
                raise PackageRefused(
                    f"{archive.name}: member {info.filename!r} would be written outside its "
                    "folder: refusing the archive"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            names.append(relative)
    return names


def _python_tag(names: Sequence[str]) -> tuple[str, str]:
    """('311', '3.11') from the runtime's python311._pth."""
    for name in names:
        match = _PTH.match(name)
        if match:
            return match.group(1) + match.group(2), f"{match.group(1)}.{match.group(2)}"
    raise PackageRefused(
        "the --python-embed zip has no python3XX._pth at its top: is it the Windows "
        "embeddable package (python-3.X.Y-embed-amd64.zip)?"
    )


def agent_requirements() -> list[str]:
    """The agent's own dependencies (the distribution's base ones) and pywin32."""
    requires = metadata.requires("sonde-helpdesk") or []
    base = [line for line in requires if "extra ==" not in line]
    return [*base, "pywin32"]


def fetch_wheels(into: Path, python_version: str, requirements: Sequence[str]) -> list[Path]:
    """pip download of win_amd64 wheels for the runtime's Python (binary wheels only)."""
    into.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--platform", "win_amd64", "--implementation", "cp",
        "--python-version", python_version, "--dest", str(into), *requirements,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PackageRefused(
            f"pip could not fetch the win_amd64 wheels ({last}); fetch them where the registry "
            "is reachable and pass the folder with --wheels"
        )
    return sorted(into.glob("*.whl"))


def _wheel_member(name: str) -> str | None:
    data = _WHEEL_DATA.match(name)
    if data:
        return name[data.end() :]
    if re.match(r"^[^/]+\.data/", name):
        return None  # scripts and headers: nothing of them runs in the service
    return name


def _copy_sonde(into: Path) -> None:
    """The sonde package this build runs, without sonde.server and caches."""
    source = Path(sonde.__file__).resolve().parent
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    target = into / "sonde"
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if entry.name in {"server", "__pycache__"}:
            continue
        resolved = entry.resolve()
        if resolved.is_dir():
            shutil.copytree(resolved, target / entry.name, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(resolved, target / entry.name)


def lay_out(
    tree: Path, runtime: Runtime, wheels: Sequence[Path], service_program: Path | None
) -> ServiceEntry:
    """Fill `tree` with what the MSI installs; return the service it runs."""
    check_runtime(runtime)
    python = tree / PYTHON_FOLDER
    names = _extract(runtime.zip_path, python, lambda name: name)
    tag, _ = _python_tag(names)
    (python / f"python{tag}._pth").write_text(
        f"python{tag}.zip\r\n.\r\nLib\\site-packages\r\nimport site\r\n", encoding="ascii"
    )
    site = tree / SITE_PACKAGES
    for wheel in wheels:
        _extract(wheel, site, _wheel_member)
    _copy_sonde(site)
    if service_program is not None:
        shutil.copy2(service_program, tree / OWN_SERVICE_PROGRAM)
        return ServiceEntry(executable=OWN_SERVICE_PROGRAM)
    host = site / "win32" / "pythonservice.exe"
    if not host.is_file():
        raise PackageRefused(
            "no pywin32 among the wheels (its win32/pythonservice.exe hosts the service): "
            "add the pywin32 win_amd64 wheel, or give --service-program"
        )
    shutil.copy2(host, tree / PYTHONSERVICE)
    for dll in sorted((site / "pywin32_system32").glob("*.dll")):
        shutil.copy2(dll, python / dll.name)
    return ServiceEntry(executable=PYTHONSERVICE, python_class=SERVICE_CLASS)


def runtime_python_version(runtime: Runtime) -> str:
    """'3.11' for python-3.11.x-embed-amd64.zip (read from its ._pth)."""
    with zipfile.ZipFile(runtime.zip_path) as zipped:
        return _python_tag(zipped.namelist())[1]
