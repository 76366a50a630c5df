"""Preflight of a Linux machine before a push install touches it: one read-only sh script.

It prints `name=value` lines (who logs in, whether sudo works without a password, the OS and
architecture, python3 and its venv module, free space where the agent goes, systemctl, the
agent already installed and its version); check_linux_host turns them into the first check
that fails, with what to do about it. Nothing is written on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

from sonde.server.remote.shell import RemoteShell
from sonde.server.remote.wheelhouse import Wheelhouse

# $1 prefix, $2 state folder, $3 unit folder. Every probe's failure is a value, not an exit.
PREFLIGHT = r"""
echo "uid=$(id -u)"
if sudo -n true >/dev/null 2>&1; then echo sudo=yes; else echo sudo=no; fi
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
if command -v python3 >/dev/null 2>&1; then
  echo "python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
  if python3 -c 'import venv' >/dev/null 2>&1; then echo venv=yes; else echo venv=no; fi
else
  echo python=
fi
where="$1"
while [ ! -d "$where" ]; do where=$(dirname -- "$where"); done
echo "free_kib=$(df -Pk -- "$where" 2>/dev/null | awk 'NR==2 {print $4}')"
if command -v systemctl >/dev/null 2>&1; then echo systemctl=yes; else echo systemctl=no; fi
if [ -x "$1/bin/sonde-agent" ]; then
  echo "installed=$("$1/bin/sonde-agent" --version 2>/dev/null | awk '{print $2}')"
else
  echo installed=
fi
if [ -f "$2/agent.json" ]; then echo enrolled=yes; else echo enrolled=no; fi
"""

SUPPORTED_OS = "Linux"
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class LinuxHost:
    """What preflight found; `sudo` says commands that change things need `sudo -n`."""

    root: bool
    sudo: bool
    os: str
    arch: str
    python: str  # "3.11", "" when there is no python3
    free_bytes: int
    installed_version: str  # "" when no agent is installed at the prefix
    enrolled: bool  # the state folder holds an enrollment

    @property
    def as_admin(self) -> list[str]:
        """The argv prefix that runs a command as root."""
        return [] if self.root else ["sudo", "-n", "--"]


class PreflightFailed(Exception):
    """A check failed; `check` names it (admin, os, python, ...), the message says why."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


def _values(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isidentifier() and name not in found:
            found[name] = value.strip()[:64]
    return found


def check_linux_host(
    found: dict[str, str], wheelhouse: Wheelhouse, *, label: str, min_free_bytes: int
) -> LinuxHost:
    """The facts, or PreflightFailed for the first check that fails."""
    uid = found.get("uid", "")
    root, sudo = uid == "0", found.get("sudo") == "yes"
    if not uid.isdigit():
        raise PreflightFailed("login", f"{label} did not run the preflight script (no user id)")
    if not root and not sudo:
        raise PreflightFailed(
            "admin",
            f"{label}: the login is user id {uid}, not root, and `sudo -n` asks for a "
            "password; log in as root or allow this user sudo without a password",
        )
    os_name, arch = found.get("os", ""), found.get("arch", "")
    if os_name != SUPPORTED_OS:
        raise PreflightFailed("os", f"{label} runs {os_name or 'an unknown OS'}, not Linux")
    if arch not in wheelhouse.architectures:
        have = ", ".join(sorted(wheelhouse.architectures)) or "none"
        raise PreflightFailed(
            "architecture",
            f"{label} is {arch or 'of an unknown architecture'}; the wheelhouse has wheels "
            f"for {have}",
        )
    python = found.get("python", "")
    parts = python.split(".")
    if not python or not all(part.isdigit() for part in parts) or len(parts) != 2:
        raise PreflightFailed(
            "python",
            f"{label} has no python3 on the PATH; install Python "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later (and its venv module)",
        )
    version = (int(parts[0]), int(parts[1]))
    if version < MIN_PYTHON:
        raise PreflightFailed(
            "python",
            f"{label} has python3 {python}; the agent needs "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later",
        )
    tags = wheelhouse.python_tags
    if tags and f"cp{version[0]}{version[1]}" not in tags:
        raise PreflightFailed(
            "python",
            f"{label} has python3 {python}; the wheelhouse's binary wheels are for "
            f"{', '.join(sorted(tags))}: add wheels for cp{version[0]}{version[1]}",
        )
    if found.get("venv") != "yes":
        raise PreflightFailed(
            "python",
            f"{label}: python3 {python} has no venv module (Debian, Ubuntu: apt-get install "
            f"python3-venv)",
        )
    free = found.get("free_kib", "")
    free_bytes = int(free) * 1024 if free.isdigit() else -1
    if free_bytes < min_free_bytes:
        shown = f"{free_bytes // 2**20} MiB" if free_bytes >= 0 else "an unknown amount"
        raise PreflightFailed(
            "free space",
            f"{label} has {shown} free where the agent goes; it needs "
            f"{min_free_bytes // 2**20} MiB",
        )
    if found.get("systemctl") != "yes":
        raise PreflightFailed(
            "systemd", f"{label} has no systemctl; the agent is installed as a systemd unit"
        )
    return LinuxHost(
        root=root,
        sudo=sudo,
        os=os_name,
        arch=arch,
        python=python,
        free_bytes=free_bytes,
        installed_version=found.get("installed", ""),
        enrolled=found.get("enrolled") == "yes",
    )


async def preflight_linux(
    shell: RemoteShell,
    wheelhouse: Wheelhouse,
    *,
    prefix: str,
    state_dir: str,
    unit_dir: str,
    min_free_bytes: int,
    timeout_s: float = 30.0,
) -> LinuxHost:
    ran = await shell.run(
        ["sh", "-c", PREFLIGHT, "sh", prefix, state_dir, unit_dir],
        timeout_s=timeout_s,
        max_output=16 * 1024,
    )
    found = _values(ran.stdout.decode("utf-8", "replace"))
    return check_linux_host(
        found, wheelhouse, label=shell.target.label, min_free_bytes=min_free_bytes
    )
