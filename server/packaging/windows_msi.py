"""Build the Windows agent's MSI on Linux: lay out, compile with wixl, lock, sign.

wixl writes no ACLs and no SecureCustomProperties of ours, so two steps follow it with
msibuild (msitools): MsiLockPermissionsEx rows that give the state folder and the agent's
registry key to SYSTEM and Administrators only (SDDL, protected from inheritance; Windows
Installer 5.0, so Windows 7 / Server 2008 R2 and later), and ENROLLMENT added to
SecureCustomProperties so that it reaches the elevated part of the install. The MSI is
written beside --out and renamed over it only when complete.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sonde.server.packaging.windows_layout import (
    Runtime,
    agent_requirements,
    check_runtime,
    fetch_wheels,
    lay_out,
    runtime_python_version,
    sha256_of,
)
from sonde.server.packaging.windows_wxs import (
    ENROLLMENT_PROPERTY,
    ENROLLMENT_REGISTRY_ROW,
    PRODUCT_NAME,
    SETTINGS_REGISTRY_ROW,
    STATE_FOLDER_DIRECTORY,
    MsiSource,
    PackageRefused,
    msi_version,
    product_wxs,
)

# SYSTEM (SY) and Administrators (BA) full control, inherited by what is made inside,
# nothing inherited from above (P): Users cannot list, read or write.
STATE_FOLDER_SDDL = "D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
REGISTRY_KEY_SDDL = "D:PAI(A;CI;KA;;;SY)(A;CI;KA;;;BA)"
_LOCKS = (
    ("StateFolderAcl", STATE_FOLDER_DIRECTORY, "CreateFolder", STATE_FOLDER_SDDL),
    ("EnrollmentKeyAcl", ENROLLMENT_REGISTRY_ROW, "Registry", REGISTRY_KEY_SDDL),
    ("SettingsKeyAcl", SETTINGS_REGISTRY_ROW, "Registry", REGISTRY_KEY_SDDL),
)
_PROPERTY_NAME = re.compile(r"[A-Z_][A-Z0-9_.]*")
_TOOLS = {
    "wixl": "apt-get install wixl",
    "msibuild": "apt-get install msitools",
    "msiinfo": "apt-get install msitools",
}


@dataclass(frozen=True)
class Signing:
    """A code-signing certificate (PEM) and its key, for osslsigncode."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class WindowsBuild:
    """What `sonde-server package windows` was asked to build."""

    runtime: Runtime
    out: Path
    version: str
    wheels: Path | None = None
    service_program: Path | None = None
    signing: Signing | None = None


@dataclass(frozen=True)
class BuiltMsi:
    """The MSI written, and what an admin deploying it needs to know."""

    path: Path
    sha256: str
    size: int
    version: str
    product_code: str
    files: int
    signed: bool


def _require_tools(signing: Signing | None) -> None:
    needed = dict(_TOOLS)
    if signing is not None:
        needed["osslsigncode"] = "apt-get install osslsigncode"
    missing = [f"{tool} ({how})" for tool, how in needed.items() if shutil.which(tool) is None]
    if missing:
        raise PackageRefused(f"cannot build the MSI without {', '.join(missing)}")


def _run(step: str, command: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "WARNING" not in line]
        raise PackageRefused(f"{step} failed: {(lines or ['no output'])[-1].strip()}")
    return done.stdout


def _lock_table(folder: Path) -> Path:
    idt = folder / "MsiLockPermissionsEx.idt"
    rows = [
        "MsiLockPermissionsEx\tLockObject\tTable\tSDDLText\tCondition",
        "s72\ts72\ts32\ts0\tS255",
        "MsiLockPermissionsEx\tMsiLockPermissionsEx",
        *(f"{ident}\t{obj}\t{table}\t{sddl}\t" for ident, obj, table, sddl in _LOCKS),
    ]
    idt.write_text("\r\n".join(rows) + "\r\n", encoding="ascii")
    return idt


def read_property(msi: Path, name: str) -> str | None:
    """One row of the MSI's Property table (msiinfo export)."""
    for line in _run("msiinfo", ["msiinfo", "export", str(msi), "Property"]).splitlines():
        key, sep, value = line.partition("\t")
        if sep and key == name:
            return value
    return None


def _secure_properties(msi: Path) -> None:
    current = read_property(msi, "SecureCustomProperties") or ""
    names = [name for name in current.split(";") if name] + [ENROLLMENT_PROPERTY]
    if not all(_PROPERTY_NAME.fullmatch(name) for name in names):
        raise PackageRefused(f"wixl wrote SecureCustomProperties {current!r}: not property names")
    query = (
        f"UPDATE `Property` SET `Value` = '{';'.join(names)}' "  # noqa: S608 (names checked)
        "WHERE `Property` = 'SecureCustomProperties'"
    )
    _run("msibuild (SecureCustomProperties)", ["msibuild", str(msi), "-q", query])


def _sign(signing: Signing, unsigned: Path, signed: Path) -> None:
    for path in (signing.certificate, signing.key):
        if not path.is_file():
            raise PackageRefused(f"--sign: {path}: no such file")
    _run(
        "osslsigncode sign",
        [
            "osslsigncode", "sign", "-certs", str(signing.certificate), "-key", str(signing.key),
            "-n", PRODUCT_NAME, "-h", "sha256", "-in", str(unsigned), "-out", str(signed),
        ],
    )  # fmt: skip


def build_windows_msi(build: WindowsBuild, progress: Callable[[str], None]) -> BuiltMsi:
    """Build the MSI the request describes; each step is announced on `progress`."""
    version = msi_version(build.version)
    _require_tools(build.signing)
    progress(f"checking the runtime {build.runtime.zip_path.name}")
    check_runtime(build.runtime)
    with tempfile.TemporaryDirectory(prefix="sonde-msi-") as work:
        folder = Path(work)
        if build.wheels is not None:
            wheels = sorted(build.wheels.glob("*.whl"))
        else:
            progress("fetching the agent's win_amd64 wheels")
            python_version = runtime_python_version(build.runtime)
            wheels = fetch_wheels(folder / "wheels", python_version, agent_requirements())
        progress(f"laying out the runtime, {len(wheels)} wheels and the agent")
        tree = folder / "tree"
        service = lay_out(tree, build.runtime, wheels, build.service_program)
        source = MsiSource(version=version, install_tree=tree, service=service)
        wxs = folder / "agent.wxs"
        wxs.write_text(product_wxs(source), encoding="utf-8")
        files = sum(1 for path in tree.rglob("*") if path.is_file())
        progress(f"compiling the MSI with wixl ({files} files)")
        unsigned = folder / "unsigned.msi"
        _run("wixl", ["wixl", "-a", "x64", "-o", str(unsigned), str(wxs)], cwd=tree)
        _run("msibuild (ACLs)", ["msibuild", str(unsigned), "-i", str(_lock_table(folder))])
        _secure_properties(unsigned)
        product_code = read_property(unsigned, "ProductCode") or ""
        final = unsigned
        if build.signing is not None:
            progress("signing with osslsigncode")
            final = folder / "signed.msi"
            _sign(build.signing, unsigned, final)
        build.out.parent.mkdir(parents=True, exist_ok=True)
        partial = build.out.with_name(build.out.name + ".partial")
        shutil.copyfile(final, partial)
        os.replace(partial, build.out)
    return BuiltMsi(
        path=build.out,
        sha256=sha256_of(build.out),
        size=build.out.stat().st_size,
        version=version,
        product_code=product_code,
        files=files,
        signed=build.signing is not None,
    )
