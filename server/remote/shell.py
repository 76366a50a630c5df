"""One protocol for every agentless transport: a shell on a remote machine the server opened
(SSH with paramiko in ssh.py, WinRM with pywinrm in winrm.py). Agentless diagnostics, catalog
runs and push install are written against it, so each works over either transport.

The libraries are blocking; implementations run them on a worker thread and bound every call
in time. Every failure is a RemoteError whose kind says what a technician can do about it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Transport(enum.StrEnum):
    SSH = "ssh"
    WINRM = "winrm"


@dataclass(frozen=True)
class RemoteTarget:
    """Where to connect: `sonde diag HOST --ssh USER@HOST[:PORT]` or `--winrm USER@HOST`."""

    transport: Transport
    user: str
    host: str
    port: int  # 22 for SSH; 5986 (HTTPS) or 5985 (HTTP) for WinRM

    @property
    def label(self) -> str:
        return f"{self.transport.value}://{self.user}@{self.host}:{self.port}"


class RemoteErrorKind(enum.StrEnum):
    UNREACHABLE = "unreachable"  # no route, refused, DNS: check the address and the firewall
    AUTHENTICATION = "authentication"  # wrong user, password or key
    HOST_KEY = "host_key"  # unknown or changed host key (SSH), bad certificate (WinRM HTTPS)
    TIMEOUT = "timeout"  # the command or the connection took longer than allowed
    PROTOCOL = "protocol"  # the peer answered something this client cannot use


class RemoteError(Exception):
    """A remote operation that failed; `kind` says which way, the message what to do."""

    def __init__(self, kind: RemoteErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: bytes  # up to the caller's cap
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: int = 0


class RemoteShell(Protocol):
    """An open connection to one machine. Commands are argument lists, never one string a
    shell splits: the implementation quotes them for the remote side (POSIX sh or
    PowerShell), and parameters travel as data (environment or stdin), as on the agent."""

    target: RemoteTarget

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        environment: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        max_output: int = 1024 * 1024,
    ) -> CommandResult: ...

    async def upload(self, data: bytes, remote_path: str, *, timeout_s: float = 120.0) -> None:
        """Write `data` to `remote_path` (created or replaced, owner-only) and check its
        SHA-256 on the remote side; RemoteError when it differs."""

    async def close(self) -> None: ...
