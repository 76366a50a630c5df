"""The one seam through which agentless reach gets a secret: a Credential for a target.

The server resolves it (its credential store, encrypted at rest, in production); remote code
never reads a secret from the command line, and the technician's machine never holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sonde.server.remote.shell import RemoteTarget


@dataclass(frozen=True)
class Credential:
    """How to log in as `user`: a private key (OpenSSH or PEM text), a password, or both."""

    user: str
    private_key: bytes = field(default=b"", repr=False)
    passphrase: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    name: str = ""  # the store's name for it, shown in messages; never the secret

    @property
    def described(self) -> str:
        how = "key" if self.private_key else "password" if self.password else "nothing"
        return f"{self.name or 'credential'} ({how} for {self.user})"


class CredentialSource(Protocol):
    """Where the server takes credentials from; `name` picks one when several fit."""

    async def for_target(self, target: RemoteTarget, name: str = "") -> Credential: ...


@dataclass(frozen=True)
class FixedCredential:
    """One credential for every target: a test's key file, a benchmark's, a one-off tool."""

    credential: Credential

    async def for_target(self, target: RemoteTarget, name: str = "") -> Credential:
        return self.credential
