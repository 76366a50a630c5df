"""What the agent says about the machine it runs on (Hello): cheap, read once.

Neither `platform` nor `shutil` on Linux (elsewhere they are imported where used): the
long-running agent describes the machine on every reconnect and should not keep those
modules (with shutil's bz2 and lzma) resident for it.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from typing import NamedTuple

_OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
# os-release(5): KEY=value, the value optionally quoted, with shell-style escapes
# (the same rules as platform.freedesktop_os_release).
_OS_RELEASE_LINE = re.compile(r"^(?P<name>[a-zA-Z0-9_]+)=(?P<quote>[\"']?)(?P<value>.*)(?P=quote)$")
_OS_RELEASE_ESCAPE = re.compile(r"\\([\\\$\"\'`])")

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


class MachineDescription(NamedTuple):
    hostname: str
    platform: str
    os_name: str
    os_version: str
    interpreters: tuple[str, ...]


def read_os_release(paths: tuple[str, ...] = _OS_RELEASE_FILES) -> dict[str, str]:
    """The fields of /etc/os-release (or /usr/lib/os-release); OSError when neither reads."""
    error: OSError | None = None
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except OSError as failed:
            error = failed
            continue
        fields: dict[str, str] = {}
        for line in lines:
            match = _OS_RELEASE_LINE.match(line.strip())
            if match is not None:
                fields[match["name"]] = _OS_RELEASE_ESCAPE.sub(r"\1", match["value"])
        return fields
    assert error is not None
    raise error


def _os_name_and_version(name: str) -> tuple[str, str]:
    if name == "linux":
        kernel = os.uname().release  # what platform.release() says on Linux
        try:
            release = read_os_release()
        except OSError:
            return "Linux", kernel
        return release.get("NAME", "Linux"), release.get("VERSION_ID", kernel)
    import platform

    if name == "darwin":
        return "macOS", platform.mac_ver()[0]
    if name == "windows":
        return f"Windows {platform.release()}", platform.version()
    return platform.system(), platform.release()


def find_program(name: str) -> str | None:
    """The full path of a program on PATH, as shutil.which finds it."""
    if sys.platform == "win32":
        # PATHEXT and the current folder make Windows' rules worth shutil's own code.
        import shutil

        return shutil.which(name)
    search = os.environ.get("PATH", os.defpath)
    if not search:
        return None
    for folder in search.split(os.pathsep):
        candidate = os.path.join(folder or os.curdir, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def describe_machine() -> MachineDescription:
    name = platform_name()
    os_name, os_version = _os_name_and_version(name)
    found = tuple(i for i in _INTERPRETERS.get(name, ("sh",)) if find_program(i))
    return MachineDescription(socket.gethostname(), name, os_name, os_version, found)
