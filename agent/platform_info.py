"""What the agent says about the machine it runs on (Hello): cheap, read once."""

from __future__ import annotations

import platform
import shutil
import socket
import sys
from dataclasses import dataclass

# Script interpreters a remediation could use, in the order the catalog prefers them.
_INTERPRETERS = {
    "windows": ("powershell", "pwsh"),
    "linux": ("sh", "bash", "pwsh"),
    "darwin": ("sh", "bash", "zsh", "pwsh"),
}


def platform_name() -> str:
    """sys.platform in the wire's words: linux, windows or darwin."""
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("linux"):
        return "linux"
    return sys.platform


@dataclass(frozen=True)
class MachineDescription:
    hostname: str
    platform: str
    os_name: str
    os_version: str
    interpreters: tuple[str, ...]


def _os_name_and_version(name: str) -> tuple[str, str]:
    if name == "linux":
        try:
            release = platform.freedesktop_os_release()
        except OSError:
            return "Linux", platform.release()
        return release.get("NAME", "Linux"), release.get("VERSION_ID", platform.release())
    if name == "darwin":
        return "macOS", platform.mac_ver()[0]
    if name == "windows":
        return f"Windows {platform.release()}", platform.version()
    return platform.system(), platform.release()


def describe_machine() -> MachineDescription:
    name = platform_name()
    os_name, os_version = _os_name_and_version(name)
    found = tuple(i for i in _INTERPRETERS.get(name, ("sh",)) if shutil.which(i))
    return MachineDescription(socket.gethostname(), name, os_name, os_version, found)
