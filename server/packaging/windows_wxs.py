"""The WiX source of the Windows agent's MSI, generated from the folder it installs.

wixl (msitools) compiles it; it supports files, folders, registry, ServiceInstall and
ServiceControl, MajorUpgrade and component conditions, and ignores Property/@Hidden and
@Secure, and has no Permission element (docs/windows-package.md, "What wixl cannot do").
So the source stays declarative, and windows_msi.py adds the two things wixl cannot write:
MsiHiddenProperties is set here as a plain property, and the ACLs as MsiLockPermissionsEx
rows after the build.

Every identifier and component GUID is derived from the file's path under the install
folder, so the same file keeps the same component from one version to the next, and the
UpgradeCode never changes: that is what lets a newer MSI replace an older one in place.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from xml.sax.saxutils import quoteattr

# Fixed forever: every Sonde agent MSI ever built carries it, so each upgrades the last.
UPGRADE_CODE = "12D1015A-274C-4E96-9C5E-CDFEB482C7EA"
# The namespace component GUIDs are derived in (uuid5 of the path under the install folder).
_COMPONENT_NAMESPACE = uuid.UUID("4332748a-bfd5-4e91-838c-309eccbba8e6")

SERVICE_NAME = "SondeAgent"
PRODUCT_NAME = "Sonde Agent"
MANUFACTURER = "The Sonde developers"
# HKLM\SOFTWARE\Sonde\Agent: the version, the install folder and, until the service has
# enrolled with it, the enrollment string (a value only SYSTEM and Administrators can read).
REGISTRY_KEY = r"SOFTWARE\Sonde\Agent"
ENROLLMENT_VALUE = "Enrollment"
# The install property an admin sets: ENROLLMENT="sonde1...". Never logged (MsiHiddenProperties).
ENROLLMENT_PROPERTY = "ENROLLMENT"
# The state folder the agent uses on Windows (sonde.agent.paths): C:\ProgramData\Sonde\agent.
STATE_FOLDER = ("Sonde", "agent")

# Identifiers the ACL rows of windows_msi.py refer to.
STATE_FOLDER_COMPONENT = "StateFolder"
STATE_FOLDER_DIRECTORY = "STATEDIR"
ENROLLMENT_REGISTRY_ROW = "EnrollmentValue"
SETTINGS_REGISTRY_ROW = "AgentVersionValue"

_MSI_VERSION = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,5})$")


class PackageRefused(Exception):
    """The package cannot be built as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceEntry:
    """The program the service runs, a path under the install folder, and its settings."""

    executable: PurePosixPath
    # pywin32's pythonservice.exe reads the class to host from the service's PythonClass value.
    python_class: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class MsiSource:
    """What one MSI holds: the version, the folder laid out for Program Files, the service."""

    version: str
    install_tree: Path
    service: ServiceEntry


def msi_version(version: str) -> str:
    """The agent's version as Windows Installer compares it (major.minor.build, numbers only)."""
    match = _MSI_VERSION.match(version)
    if match is None or int(match.group(1)) > 255 or int(match.group(2)) > 255:
        raise PackageRefused(
            f"version {version!r} cannot be an MSI ProductVersion: Windows Installer compares "
            "major.minor.build, numbers up to 255.255.65535 (pass --version X.Y.Z)"
        )
    if int(match.group(3)) > 65535:
        raise PackageRefused(f"version {version!r}: the build number is at most 65535")
    return version


def component_guid(relative: PurePosixPath) -> str:
    """The same file under the install folder always has the same component GUID."""
    return str(uuid.uuid5(_COMPONENT_NAMESPACE, str(relative).lower())).upper()


def _identifier(prefix: str, relative: PurePosixPath) -> str:
    # MSI identifiers: at most 72 characters, letters, digits, '_' and '.'.
    digest = hashlib.sha256(str(relative).lower().encode("utf-8")).hexdigest()[:24]
    return f"{prefix}{digest}"


def _files(tree: Path) -> Iterator[PurePosixPath]:
    for path in sorted(tree.rglob("*")):
        if path.is_symlink():
            raise PackageRefused(f"{path} is a link: the install folder must hold plain files")
        if path.is_file():
            yield PurePosixPath(path.relative_to(tree).as_posix())


def _tree_xml(source: MsiSource, lines: list[str], refs: list[str]) -> None:
    """Directory and Component elements for every file, nested as the folder is."""
    files = list(_files(source.install_tree))
    if source.service.executable not in files:
        raise PackageRefused(
            f"the service program {source.service.executable} is not in the install folder"
        )
    by_folder: dict[PurePosixPath, list[PurePosixPath]] = {}
    for relative in files:
        by_folder.setdefault(relative.parent, []).append(relative)
    folders = sorted(
        {parent for relative in files for parent in relative.parents if parent != relative},
        key=lambda p: p.parts,
    )

    def emit(folder: PurePosixPath, depth: int) -> None:
        pad = "  " * depth
        for relative in by_folder.get(folder, []):
            component = _identifier("c", relative)
            refs.append(component)
            lines.append(
                f"{pad}<Component Id={quoteattr(component)} "
                f'Guid="{component_guid(relative)}" Win64="yes">'
            )
            lines.append(
                f"{pad}  <File Id={quoteattr(_identifier('f', relative))} "
                f"Source={quoteattr(str(relative))} "
                f'Name={quoteattr(relative.name)} KeyPath="yes"/>'
            )
            if relative == source.service.executable:
                lines.extend(_service_xml(source.service, pad + "  "))
            lines.append(f"{pad}</Component>")
        for child in folders:
            if child.parent == folder and child != folder:
                lines.append(
                    f"{pad}<Directory Id={quoteattr(_identifier('d', child))} "
                    f"Name={quoteattr(child.name)}>"
                )
                emit(child, depth + 1)
                lines.append(f"{pad}</Directory>")

    emit(PurePosixPath("."), 6)


def _service_xml(service: ServiceEntry, pad: str) -> list[str]:
    lines = [
        f'{pad}<ServiceInstall Id="AgentService" Name="{SERVICE_NAME}" '
        f'DisplayName="{PRODUCT_NAME}" '
        'Description="Sonde remote diagnostics: keeps this computer\'s link to the helpdesk" '
        'Type="ownProcess" Start="auto" Account="LocalSystem" ErrorControl="normal" '
        f'Arguments={quoteattr(service.arguments)} Vital="yes"/>',
        f'{pad}<ServiceControl Id="AgentServiceControl" Name="{SERVICE_NAME}" '
        'Start="install" Stop="both" Remove="uninstall" Wait="yes"/>',
    ]
    if service.python_class is not None:
        lines.append(
            f'{pad}<RegistryValue Root="HKLM" '
            f'Key="SYSTEM\\CurrentControlSet\\Services\\{SERVICE_NAME}\\PythonClass" '
            f'Type="string" Value={quoteattr(service.python_class)}/>'
        )
    return lines


def product_wxs(source: MsiSource) -> str:
    """The whole .wxs for one version of the agent."""
    version = msi_version(source.version)
    refs: list[str] = []
    tree: list[str] = []
    _tree_xml(source, tree, refs)
    refs += ["AgentSettings", STATE_FOLDER_COMPONENT]
    state = PurePosixPath("ProgramData", *STATE_FOLDER)
    head = f"""<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="{PRODUCT_NAME}" Language="1033" Version="{version}"
           Manufacturer="{MANUFACTURER}" UpgradeCode="{UPGRADE_CODE}">
    <Package InstallerVersion="500" Compressed="yes" InstallScope="perMachine"
             Description="{PRODUCT_NAME} {version}" Comments="Sonde remote diagnostics agent"/>
    <MajorUpgrade DowngradeErrorMessage="A newer {PRODUCT_NAME} is already installed: \
uninstall it first to go back to {version}."/>
    <Media Id="1" Cabinet="agent.cab" EmbedCab="yes"/>
    <Property Id="MsiHiddenProperties" Value="{ENROLLMENT_PROPERTY}"/>
    <Property Id="ARPNOMODIFY" Value="1"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFiles64Folder">
        <Directory Id="SondeProgramFolder" Name="Sonde">
          <Directory Id="INSTALLDIR" Name="Agent">"""
    middle = f"""          </Directory>
        </Directory>
      </Directory>
      <Directory Id="CommonAppDataFolder">
        <Directory Id="SondeDataFolder" Name="{STATE_FOLDER[0]}">
          <Directory Id="{STATE_FOLDER_DIRECTORY}" Name="{STATE_FOLDER[1]}">
            <Component Id="{STATE_FOLDER_COMPONENT}" Guid="{component_guid(state)}" Win64="yes">
              <CreateFolder/>
            </Component>
          </Directory>
        </Directory>
      </Directory>
      <Component Id="AgentSettings" Guid="{component_guid(PurePosixPath("registry/settings"))}"
                 Win64="yes">
        <RegistryKey Root="HKLM" Key="{REGISTRY_KEY}">
          <RegistryValue Id="{SETTINGS_REGISTRY_ROW}" Name="Version" Type="string"
                         Value="{version}" KeyPath="yes"/>
          <RegistryValue Id="InstallDirValue" Name="InstallDir" Type="string"
                         Value="[INSTALLDIR]"/>
          <RegistryValue Id="{ENROLLMENT_REGISTRY_ROW}" Name="{ENROLLMENT_VALUE}" Type="string"
                         Value="[{ENROLLMENT_PROPERTY}]"/>
        </RegistryKey>
      </Component>
    </Directory>
    <Feature Id="Agent" Title="{PRODUCT_NAME}" Level="1">"""
    features = [f"      <ComponentRef Id={quoteattr(ref)}/>" for ref in refs]
    tail = "    </Feature>\n  </Product>\n</Wix>\n"
    return "\n".join([head, *tree, middle, *features, tail])
