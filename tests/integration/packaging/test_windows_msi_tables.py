"""The Windows agent MSI built by `sonde-server package windows`, read back with msitools:
files, service install and control, registry, properties, upgrade, ACLs and signature; and
the build's refusals (a runtime that is not the one named, an archive that escapes, a
version Windows Installer cannot compare)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sonde.server.packaging.windows_msi import REGISTRY_KEY_SDDL, STATE_FOLDER_SDDL
from sonde.server.packaging.windows_wxs import UPGRADE_CODE
from tests.integration.packaging.conftest import WindowsBuilds
from tests.integration.packaging.windows_inputs import sha256, table
from tests.support.deployment import run


def _files(msi: Path) -> set[str]:
    out = subprocess.run(["msiextract", "-l", str(msi)], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _properties(msi: Path) -> dict[str, str]:
    return {row[0]: row[1] for row in table(msi, "Property")}


def test_the_files_are_the_runtime_the_wheels_and_the_agent(windows_builds: WindowsBuilds) -> None:
    files = _files(windows_builds.pythonservice.msi)
    top = "Sonde/Agent/python/"
    site = top + "Lib/site-packages/"
    for name in ("python.exe", "pythonw.exe", "python311.dll", "python311.zip", "python311._pth"):
        assert top + name in files
    # pywin32's service host and its DLLs beside python311.dll.
    for name in ("pythonservice.exe", "pywintypes311.dll", "pythoncom311.dll"):
        assert top + name in files
    assert site + "helpdesk_dep/__init__.py" in files
    assert site + "helpdesk_dep_extra.py" in files  # from the wheel's .data/purelib
    assert not any("scripts" in name and "helpdesk" in name for name in files)
    assert site + "sonde/agent/cli.py" in files
    assert site + "sonde/agent/windows_service.py" in files
    assert site + "sonde/v1/agent_pb2.py" in files
    assert not any(name.startswith(site + "sonde/server/") for name in files)
    assert not any("__pycache__" in name for name in files)
    assert windows_builds.pythonservice.report["files"] == len(files)


def test_the_runtime_path_file_opens_site_packages(
    windows_builds: WindowsBuilds, tmp_path: Path
) -> None:
    subprocess.run(
        ["msiextract", "-C", str(tmp_path), str(windows_builds.v1.msi)],
        check=True,
        capture_output=True,
    )
    pth = (tmp_path / "Sonde" / "Agent" / "python" / "python311._pth").read_text()
    assert pth.split() == ["python311.zip", ".", "Lib\\site-packages", "import", "site"]


def test_the_service_is_installed_started_stopped_and_removed(
    windows_builds: WindowsBuilds,
) -> None:
    for built in (windows_builds.v1, windows_builds.pythonservice):
        [service] = table(built.msi, "ServiceInstall")
        # own process (16), automatic start (2), normal error control (1), as LocalSystem.
        assert service[1:6] == ["SondeAgent", "Sonde Agent", "16", "2", "1"]
        assert service[8] == "LocalSystem"
        [control] = table(built.msi, "ServiceControl")
        # start at install (1), stop at install and uninstall (2 + 32), delete at uninstall
        # (128); wait for each.
        assert control[1:3] == ["SondeAgent", "163"]
        assert control[4] == "1"
        assert control[5] == service[11]  # the component of the service program
    sequence = {
        row[0]: int(row[2]) for row in table(windows_builds.v1.msi, "InstallExecuteSequence")
    }
    assert sequence["StopServices"] < sequence["DeleteServices"] < sequence["InstallFiles"]
    assert sequence["InstallFiles"] < sequence["InstallServices"] < sequence["StartServices"]


def test_the_registry_holds_the_version_the_enrollment_and_the_service_class(
    windows_builds: WindowsBuilds,
) -> None:
    rows = {(row[2], row[3]): row[4] for row in table(windows_builds.pythonservice.msi, "Registry")}
    assert rows[("SOFTWARE\\Sonde\\Agent\\", "Version")] == "1.0.0"
    assert rows[("SOFTWARE\\Sonde\\Agent\\", "InstallDir")] == "[INSTALLDIR]"
    assert rows[("SOFTWARE\\Sonde\\Agent\\", "Enrollment")] == "[ENROLLMENT]"
    class_key = "SYSTEM\\CurrentControlSet\\Services\\SondeAgent\\PythonClass"
    assert rows[(class_key, "")] == "sonde.agent.windows_service.AgentService"
    # A service program of one's own has no PythonClass.
    assert not any("PythonClass" in row[2] for row in table(windows_builds.v1.msi, "Registry"))


def test_the_enrollment_property_is_hidden_and_secure(windows_builds: WindowsBuilds) -> None:
    properties = _properties(windows_builds.v1.msi)
    assert properties["MsiHiddenProperties"] == "ENROLLMENT"
    assert "ENROLLMENT" in properties["SecureCustomProperties"].split(";")
    assert properties["ALLUSERS"] == "1"
    assert "ENROLLMENT" not in properties  # no default value: nothing secret in the file


def test_the_state_folder_and_the_key_are_for_system_and_administrators_only(
    windows_builds: WindowsBuilds,
) -> None:
    locks = {
        (row[1], row[2]): row[3] for row in table(windows_builds.v1.msi, "MsiLockPermissionsEx")
    }
    assert locks[("STATEDIR", "CreateFolder")] == STATE_FOLDER_SDDL
    assert locks[("EnrollmentValue", "Registry")] == REGISTRY_KEY_SDDL
    assert locks[("AgentVersionValue", "Registry")] == REGISTRY_KEY_SDDL
    for sddl in (STATE_FOLDER_SDDL, REGISTRY_KEY_SDDL):
        # Protected (P): nothing inherited from ProgramData or HKLM\SOFTWARE, so no Users ACE.
        assert sddl.startswith("D:PAI")
        assert {ace.split(";")[-1] for ace in sddl[5:].strip("()").split(")(")} == {"SY", "BA"}
    [state] = [row for row in table(windows_builds.v1.msi, "Directory") if row[0] == "STATEDIR"]
    assert state[2] == "agent"
    assert any(row[0] == "STATEDIR" for row in table(windows_builds.v1.msi, "CreateFolder"))


def test_a_newer_version_upgrades_the_older_in_place(windows_builds: WindowsBuilds) -> None:
    v1, v2 = windows_builds.v1, windows_builds.v2
    p1, p2 = _properties(v1.msi), _properties(v2.msi)
    assert p1["UpgradeCode"] == p2["UpgradeCode"] == "{" + UPGRADE_CODE + "}"
    assert p1["ProductCode"] != p2["ProductCode"]
    assert (p1["ProductVersion"], p2["ProductVersion"]) == ("1.0.0", "2.0.0")
    assert v2.report["product_code"] == p2["ProductCode"]
    upgrades = {row[6]: row for row in table(v2.msi, "Upgrade")}
    assert upgrades["WIX_UPGRADE_DETECTED"][2] == "2.0.0"  # older versions are replaced
    assert upgrades["WIX_DOWNGRADE_DETECTED"][1] == "2.0.0"  # a newer one refuses this
    sequence = {row[0]: int(row[2]) for row in table(v2.msi, "InstallExecuteSequence")}
    assert sequence["InstallValidate"] < sequence["RemoveExistingProducts"]
    # The same file keeps the same component GUID from one version to the next.
    c1 = {row[0]: row[1] for row in table(v1.msi, "Component")}
    c2 = {row[0]: row[1] for row in table(v2.msi, "Component")}
    assert c1 == c2


def test_the_build_says_what_it_does_and_reports_json(windows_builds: WindowsBuilds) -> None:
    report = windows_builds.v1.report
    assert report["sha256"] == sha256(windows_builds.v1.msi)
    assert report["size"] == windows_builds.v1.msi.stat().st_size
    assert report["signed"] is False
    progress = windows_builds.v1.progress
    for step in ("checking the runtime", "laying out", "compiling the MSI with wixl"):
        assert step in progress


def test_a_runtime_other_than_the_one_named_is_refused(
    windows_builds: WindowsBuilds, tmp_path: Path
) -> None:
    out = tmp_path / "agent.msi"
    done = run(
        "sonde-server", "package", "windows", "--python-embed", str(windows_builds.runtime),
        "--sha256", "0" * 64, "--out", str(out), "--wheels", str(windows_builds.wheels),
    )  # fmt: skip
    assert done.returncode == 1
    assert f"has SHA-256 {sha256(windows_builds.runtime)}, not {'0' * 64}" in done.stderr
    assert not out.exists()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "member", ["../escaped.txt", "python/../../escaped.txt", "/etc/escaped", "c:\\escaped"]
)
def test_an_archive_member_that_leaves_its_folder_is_refused(
    windows_builds: WindowsBuilds, tmp_path: Path, member: str
) -> None:
    wheels = tmp_path / "wheels"
    shutil.copytree(windows_builds.wheels, wheels)
    with zipfile.ZipFile(wheels / "hostile-1.0-py3-none-any.whl", "w") as zipped:
        zipped.writestr(member, b"written outside")
    out = tmp_path / "out" / "agent.msi"
    done = run(
        "sonde-server", "package", "windows", "--python-embed", str(windows_builds.runtime),
        "--sha256", sha256(windows_builds.runtime), "--out", str(out), "--wheels", str(wheels),
    )  # fmt: skip
    assert done.returncode == 1
    assert "would be written outside its folder" in done.stderr
    assert not out.exists()
    assert not list(tmp_path.rglob("escaped*"))


@pytest.mark.parametrize("version", ["0.1.0.dev3", "1.2", "256.0.0", "1.0.70000"])
def test_a_version_windows_installer_cannot_compare_is_refused(
    windows_builds: WindowsBuilds, tmp_path: Path, version: str
) -> None:
    done = run(
        "sonde-server", "package", "windows", "--python-embed", str(windows_builds.runtime),
        "--sha256", sha256(windows_builds.runtime), "--out", str(tmp_path / "a.msi"),
        "--wheels", str(windows_builds.wheels), "--version", version,
    )  # fmt: skip
    assert done.returncode == 1
    assert version in done.stderr
    assert "ProductVersion" in done.stderr or "build number" in done.stderr


def _code_signing_certificate(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sonde test code signing")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cs.crt", folder / "cs.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_certificate_given_signs_the_msi(windows_builds: WindowsBuilds, tmp_path: Path) -> None:
    if shutil.which("osslsigncode") is None:
        pytest.skip("needs osslsigncode (apt-get install osslsigncode)")
    cert, key = _code_signing_certificate(tmp_path)
    out = tmp_path / "signed.msi"
    done = run(
        "sonde-server", "package", "windows", "--python-embed", str(windows_builds.runtime),
        "--sha256", sha256(windows_builds.runtime), "--out", str(out),
        "--wheels", str(windows_builds.wheels), "--service-program",
        str(windows_builds.service_v1), "--sign", str(cert), str(key), "--version", "1.0.0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "signing with osslsigncode" in done.stderr
    verify = subprocess.run(
        ["osslsigncode", "verify", "-CAfile", str(cert), "-in", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Signature verification: ok" in verify.stdout, verify.stdout + verify.stderr
    unsigned = subprocess.run(
        ["osslsigncode", "verify", "-CAfile", str(cert), "-in", str(windows_builds.v1.msi)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Signature verification: ok" not in unsigned.stdout
