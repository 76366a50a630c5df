"""ConsoleService methods for the credentials agentless reach logs in with: add, list, remove
(server/domain/remote_credentials.py). A secret goes in with AddCredential; no answer holds one."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.remote_credentials import CredentialInfo, CredentialKind
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]

_KINDS = {
    CredentialKind.SSH_PASSWORD: console_pb2.CREDENTIAL_KIND_SSH_PASSWORD,
    CredentialKind.SSH_PRIVATE_KEY: console_pb2.CREDENTIAL_KIND_SSH_PRIVATE_KEY,
    CredentialKind.WINRM_PASSWORD: console_pb2.CREDENTIAL_KIND_WINRM_PASSWORD,
}
_FROM_PROTO = {value: kind for kind, value in _KINDS.items()}


def credential_kind(value: console_pb2.CredentialKind.ValueType) -> CredentialKind:
    if value not in _FROM_PROTO:
        raise InvalidArgument(
            "a credential's kind is required: ssh_password, ssh_private_key or winrm_password"
        )
    return _FROM_PROTO[value]


def remote_credential(info: CredentialInfo) -> console_pb2.RemoteCredential:
    message = console_pb2.RemoteCredential(
        name=info.name,
        kind=_KINDS[info.kind],
        user=info.user,
        hosts=list(info.hosts),
        note=info.note,
        key_fingerprint=info.key_fingerprint,
        added_by=info.added_by,
    )
    message.added_at.FromDatetime(info.added_at)
    return message


class CredentialMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def AddCredential(
        self, request: console_pb2.AddCredentialRequest, context: Context
    ) -> console_pb2.AddCredentialResponse:
        added = await self._s.credentials.add(
            current_principal(),
            request.name,
            kind=credential_kind(request.kind),
            user=request.user,
            hosts=list(request.hosts),
            secret=request.secret,
            passphrase=request.passphrase,
            note=request.note,
        )
        return console_pb2.AddCredentialResponse(credential=remote_credential(added))

    @translate_errors
    async def ListCredentials(
        self, request: console_pb2.ListCredentialsRequest, context: Context
    ) -> console_pb2.ListCredentialsResponse:
        current_principal()
        found = await self._s.credentials.list()
        return console_pb2.ListCredentialsResponse(
            credentials=[remote_credential(info) for info in found]
        )

    @translate_errors
    async def RemoveCredential(
        self, request: console_pb2.RemoveCredentialRequest, context: Context
    ) -> console_pb2.RemoveCredentialResponse:
        removed = await self._s.credentials.remove(current_principal(), request.name)
        return console_pb2.RemoveCredentialResponse(credential=remote_credential(removed))
