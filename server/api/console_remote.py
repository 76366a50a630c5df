"""ConsoleService methods for agentless reach: the trusted SSH host keys
(server/domain/trusted_hosts.py), the WinRM host settings (server/domain/winrm_hosts.py) and
a diagnostic the server collects by logging in (server/domain/agentless.py)."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.winrm_hosts import (
    DEFAULT_OPERATION_TIMEOUT_S,
    WinRMChoices,
    WinRMHostSettings,
)
from sonde.server.errors import InvalidArgument
from sonde.server.remote.addresses import BadAddress, remote_target
from sonde.server.remote.host_keys import TrustedHostKey
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.remote.winrm import WinRMAuth
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def winrm_host(settings: WinRMHostSettings) -> console_pb2.WinRMHostSettings:
    message = console_pb2.WinRMHostSettings(
        host=settings.host,
        port=settings.port,
        https=settings.https,
        auth=settings.auth.value,
        ca_file=settings.ca_file,
        allow_basic=settings.allow_basic,
        allow_unencrypted=settings.allow_unencrypted,
        operation_timeout_s=settings.operation_timeout_s,
        set_by=settings.set_by,
    )
    message.set_at.FromDatetime(settings.set_at)
    return message


def trusted_host(key: TrustedHostKey) -> console_pb2.TrustedHost:
    message = console_pb2.TrustedHost(
        host=key.host,
        port=key.port,
        key_type=key.key.key_type,
        fingerprint=key.key.fingerprint,
        trusted_by=key.trusted_by,
    )
    message.trusted_at.FromDatetime(key.trusted_at)
    return message


class RemoteMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def TrustHost(
        self, request: console_pb2.TrustHostRequest, context: Context
    ) -> console_pb2.TrustHostResponse:
        trusted = await self._s.trusted_hosts.trust(
            current_principal(), request.address, request.fingerprint
        )
        return console_pb2.TrustHostResponse(host=trusted_host(trusted))

    @translate_errors
    async def ListHosts(
        self, request: console_pb2.ListHostsRequest, context: Context
    ) -> console_pb2.ListHostsResponse:
        current_principal()
        found = await self._s.trusted_hosts.list()
        winrm = await self._s.winrm_hosts.list()
        return console_pb2.ListHostsResponse(
            hosts=[trusted_host(key) for key in found],
            winrm=[winrm_host(settings) for settings in winrm],
        )

    @translate_errors
    async def ForgetHost(
        self, request: console_pb2.ForgetHostRequest, context: Context
    ) -> console_pb2.ForgetHostResponse:
        gone = await self._s.trusted_hosts.forget(current_principal(), request.address)
        return console_pb2.ForgetHostResponse(
            forgotten=[trusted_host(key) for key in gone.keys],
            forgotten_winrm=[winrm_host(settings) for settings in gone.winrm],
        )

    @translate_errors
    async def SetWinRMHost(
        self, request: console_pb2.SetWinRMHostRequest, context: Context
    ) -> console_pb2.SetWinRMHostResponse:
        choices = WinRMChoices(
            https=not request.http,
            auth=request.auth or WinRMAuth.NTLM.value,
            ca_file=request.ca_file,
            allow_basic=request.allow_basic,
            allow_unencrypted=request.allow_unencrypted,
            operation_timeout_s=request.operation_timeout_s or DEFAULT_OPERATION_TIMEOUT_S,
        )
        stored = await self._s.winrm_hosts.set(current_principal(), request.address, choices)
        return console_pb2.SetWinRMHostResponse(host=winrm_host(stored))

    @translate_errors
    async def RunAgentlessDiagnostics(
        self, request: console_pb2.RunAgentlessDiagnosticsRequest, context: Context
    ) -> console_pb2.RunAgentlessDiagnosticsResponse:
        principal = current_principal()
        if request.ticket_id < 0:
            raise InvalidArgument(f"ticket id must be a positive number, got {request.ticket_id}")
        target = await self._agentless_target(request)
        done = await self._s.agentless.run(
            principal,
            target,
            ticket_id=request.ticket_id or None,
            credential_name=request.credential,
            shell_only=request.shell_only,
            one_time_password=request.one_time_password,
        )
        return console_pb2.RunAgentlessDiagnosticsResponse(
            snapshot=mapping.stored_snapshot(done.stored),
            command=mapping.command(done.command),
            note=done.note,
        )

    async def _agentless_target(
        self, request: console_pb2.RunAgentlessDiagnosticsRequest
    ) -> RemoteTarget:
        """`ssh` alone (the first clients), or a transport and its address."""
        transport = request.transport
        if request.ssh and (request.address or transport):
            raise InvalidArgument("give either ssh or a transport and its address, not both")
        if request.ssh or transport == console_pb2.REMOTE_TRANSPORT_SSH:
            try:
                return remote_target(request.ssh or request.address, Transport.SSH)
            except BadAddress as bad:
                raise InvalidArgument(str(bad)) from None
        if transport == console_pb2.REMOTE_TRANSPORT_WINRM:
            return await self._s.winrm_hosts.target_for(request.address)
        raise InvalidArgument("name the machine to reach: --ssh USER@HOST or --winrm USER@HOST")
