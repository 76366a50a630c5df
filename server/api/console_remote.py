"""ConsoleService methods for agentless reach over SSH: the trusted host keys
(server/domain/trusted_hosts.py) and a diagnostic the server collects by logging in
(server/domain/agentless.py)."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.errors import InvalidArgument
from sonde.server.remote.addresses import BadAddress, remote_target
from sonde.server.remote.host_keys import TrustedHostKey
from sonde.server.remote.shell import Transport
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


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
        return console_pb2.ListHostsResponse(hosts=[trusted_host(key) for key in found])

    @translate_errors
    async def ForgetHost(
        self, request: console_pb2.ForgetHostRequest, context: Context
    ) -> console_pb2.ForgetHostResponse:
        gone = await self._s.trusted_hosts.forget(current_principal(), request.address)
        return console_pb2.ForgetHostResponse(forgotten=[trusted_host(key) for key in gone])

    @translate_errors
    async def RunAgentlessDiagnostics(
        self, request: console_pb2.RunAgentlessDiagnosticsRequest, context: Context
    ) -> console_pb2.RunAgentlessDiagnosticsResponse:
        principal = current_principal()
        if request.ticket_id < 0:
            raise InvalidArgument(f"ticket id must be a positive number, got {request.ticket_id}")
        try:
            target = remote_target(request.ssh, Transport.SSH)
        except BadAddress as bad:
            raise InvalidArgument(str(bad)) from None
        done = await self._s.agentless.run(
            principal,
            target,
            ticket_id=request.ticket_id or None,
            credential_name=request.credential,
            shell_only=request.shell_only,
        )
        return console_pb2.RunAgentlessDiagnosticsResponse(
            snapshot=mapping.stored_snapshot(done.stored),
            command=mapping.command(done.command),
            note=done.note,
        )
