"""How the server opens a shell on a machine without an agent, for a run: the credential
named (or the store's match for the target), then SSH only to a host key a technician
trusted, or WinRM as the host's stored settings say. A host key refused comes out as
HostKeyRefused, every other failure as RemoteError or the store's SondeError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sonde.server.domain.trusted_hosts import TrustedHosts
from sonde.server.domain.winrm_hosts import WinRMHosts
from sonde.server.remote.credentials import Credential, CredentialSource
from sonde.server.remote.host_keys import TrustedHostKey
from sonde.server.remote.shell import RemoteShell, RemoteTarget, Transport
from sonde.server.remote.ssh import SshShell
from sonde.server.remote.winrm import WinRMHost, WinRMShell

OpenSsh = Callable[[RemoteTarget, Credential, Sequence[TrustedHostKey]], Awaitable[RemoteShell]]
OpenWinRM = Callable[[WinRMHost, Credential], Awaitable[RemoteShell]]


async def open_ssh(
    target: RemoteTarget, credential: Credential, trusted: Sequence[TrustedHostKey]
) -> RemoteShell:
    return await SshShell.open(target, credential, trusted)


async def open_winrm(host: WinRMHost, credential: Credential) -> WinRMShell:
    return await WinRMShell.open(host, credential)


class ReachedShells:
    def __init__(
        self,
        hosts: TrustedHosts,
        winrm_hosts: WinRMHosts,
        credentials: CredentialSource,
        *,
        open_ssh: OpenSsh = open_ssh,
        open_winrm: OpenWinRM = open_winrm,
    ) -> None:
        self._hosts = hosts
        self._winrm_hosts = winrm_hosts
        self._credentials = credentials
        self._open_ssh = open_ssh
        self._open_winrm = open_winrm

    async def open(self, target: RemoteTarget, credential_name: str = "") -> RemoteShell:
        credential = await self._credentials.for_target(target, credential_name)
        return await self.open_with(target, credential)

    async def open_with(self, target: RemoteTarget, credential: Credential) -> RemoteShell:
        """The transport's shell with this credential: SSH to a trusted host key only,
        WinRM with the host's stored settings."""
        if target.transport is Transport.WINRM:
            return await self._open_winrm(await self._winrm_hosts.settings_for(target), credential)
        trusted = await self._hosts.for_address(target.host, target.port)
        return await self._open_ssh(target, credential, trusted)
