"""Host keys, the SSH side of trust: fingerprints, the keys a host offers, and the policy.

The server trusts a host key only when a technician confirmed its fingerprint out of band
(`sonde hosts trust HOST --fingerprint SHA256:...`, stored by server/domain/trusted_hosts.py).
A connection loads only the keys trusted for its host and port; an unknown key is refused
(RejectPolicy semantics, never AutoAdd) and a key that differs from the trusted one is refused
as changed (HostKeyChanged), which the caller audits with both fingerprints.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import paramiko

from sonde.server.remote.shell import RemoteError, RemoteErrorKind

# The host key types asked for, best first: one connection each when reading what a host offers.
OFFERED_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")
# A host without a key of the type asked fails that handshake: expected, so not logged.
_PROBE_LOG = "sonde.server.remote.offered_keys"
logging.getLogger(_PROBE_LOG).setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class HostKey:
    """A public host key as OpenSSH writes it: its type, its base64 blob, its fingerprint."""

    key_type: str  # paramiko's get_name(): ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    key_base64: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(base64.b64decode(self.key_base64))

    def as_paramiko(self) -> paramiko.PKey:
        return paramiko.PKey.from_type_string(self.key_type, base64.b64decode(self.key_base64))

    @classmethod
    def of(cls, key: paramiko.PKey) -> HostKey:
        return cls(key.get_name(), key.get_base64())


@dataclass(frozen=True)
class TrustedHostKey:
    host: str
    port: int
    key: HostKey
    trusted_by: str
    trusted_at: datetime

    @property
    def address(self) -> str:
        return host_address(self.host, self.port)


def fingerprint_of(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint (`ssh-keygen -lf`): SHA256: and unpadded base64."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def host_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def known_hosts_name(host: str, port: int) -> str:
    """The name paramiko looks a host up by: the bare host on 22, [host]:port elsewhere."""
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyRefused(RemoteError):
    """A host key the server does not trust: unknown, or changed since it was trusted."""

    def __init__(
        self, message: str, *, offered: HostKey, trusted: TrustedHostKey | None = None
    ) -> None:
        super().__init__(RemoteErrorKind.HOST_KEY, message)
        self.offered = offered
        self.trusted = trusted


def unknown_key(host: str, port: int, offered: HostKey) -> HostKeyRefused:
    address = host_address(host, port)
    return HostKeyRefused(
        f"the host key of {address} is not trusted: the server connects only to hosts a "
        f"technician has trusted. It offered {offered.key_type} {offered.fingerprint}; if that "
        "is what the machine itself shows (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on its "
        f"console), run sonde hosts trust {address} --fingerprint {offered.fingerprint}",
        offered=offered,
    )


def changed_key(trusted: TrustedHostKey, offered: HostKey) -> HostKeyRefused:
    return HostKeyRefused(
        f"the host key of {trusted.address} changed since it was trusted on "
        f"{trusted.trusted_at:%Y-%m-%d %H:%M} UTC by {trusted.trusted_by} "
        f"(trusted {trusted.key.fingerprint}, offered now {offered.key_type} "
        f"{offered.fingerprint}): the connection was refused. If the machine was reinstalled, "
        "check the new fingerprint on its console, then run "
        f"sonde hosts forget {trusted.address} and sonde hosts trust {trusted.address} "
        f"--fingerprint SHA256:...; otherwise treat it as someone in the middle",
        offered=offered,
        trusted=trusted,
    )


class RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """paramiko's RejectPolicy, raising the refusal that says what to do."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        host, _, port = hostname.removeprefix("[").partition("]:")
        raise unknown_key(host, int(port or 22), HostKey.of(key))


def offered_host_keys(
    host: str, port: int, *, timeout_s: float = 10.0, key_types: Sequence[str] = OFFERED_KEY_TYPES
) -> list[HostKey]:
    """The host keys `host` offers, one handshake per type and no login (blocking).

    RemoteError (unreachable, timeout, protocol) when no handshake completes.
    """
    found: list[HostKey] = []
    last: RemoteError | None = None
    for key_type in key_types:
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except TimeoutError as error:
            raise RemoteError(
                RemoteErrorKind.TIMEOUT,
                f"{host_address(host, port)} did not answer within {timeout_s:g} s: {error}",
            ) from error
        except OSError as error:
            raise RemoteError(
                RemoteErrorKind.UNREACHABLE,
                f"could not reach {host_address(host, port)}: {error}; check the address, that "
                "sshd runs there and that the firewall lets the server through",
            ) from error
        transport = paramiko.Transport(sock)
        transport.set_log_channel(_PROBE_LOG)
        try:
            transport.banner_timeout = timeout_s
            transport.get_security_options().key_types = (key_type,)
            transport.start_client(timeout=timeout_s)
            found.append(HostKey.of(transport.get_remote_server_key()))
        except (paramiko.SSHException, EOFError, OSError) as error:
            # The host has no key of this type (the handshake fails) or hung up: try the next.
            last = RemoteError(
                RemoteErrorKind.PROTOCOL,
                f"{host_address(host, port)} completed no SSH handshake: {error or 'no reason'}",
            )
        finally:
            transport.close()
    if not found and last is not None:
        raise last
    return found
