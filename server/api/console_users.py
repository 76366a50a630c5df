"""ConsoleService methods for technicians' accounts: create, list, disable, enable, re-role,
rotate an API token, log out (server/domain/users.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.roles import Role
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def _token_lifetime(seconds: int) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds else None


def _required_role(value: int) -> Role:
    role = mapping.role_from_proto(value)
    if role is None:
        raise InvalidArgument("a role is required: l1, l2 or admin")
    return role


class UserMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def CreateUser(
        self, request: console_pb2.CreateUserRequest, context: Context
    ) -> console_pb2.CreateUserResponse:
        created, api_token = await self._s.users.add(
            current_principal(),
            request.name,
            mapping.role_from_proto(request.role),
            token_expires_in=_token_lifetime(request.token_expires_in_s),
        )
        return console_pb2.CreateUserResponse(user=mapping.user(created), api_token=api_token)

    @translate_errors
    async def ListUsers(
        self, request: console_pb2.ListUsersRequest, context: Context
    ) -> console_pb2.ListUsersResponse:
        current_principal()
        return console_pb2.ListUsersResponse(
            users=[mapping.user(u) for u in await self._s.users.list()]
        )

    @translate_errors
    async def DisableUser(
        self, request: console_pb2.DisableUserRequest, context: Context
    ) -> console_pb2.DisableUserResponse:
        disabled = await self._s.users.disable(current_principal(), request.name)
        return console_pb2.DisableUserResponse(user=mapping.user(disabled))

    @translate_errors
    async def EnableUser(
        self, request: console_pb2.EnableUserRequest, context: Context
    ) -> console_pb2.EnableUserResponse:
        enabled = await self._s.users.enable(current_principal(), request.name)
        return console_pb2.EnableUserResponse(user=mapping.user(enabled))

    @translate_errors
    async def SetUserRole(
        self, request: console_pb2.SetUserRoleRequest, context: Context
    ) -> console_pb2.SetUserRoleResponse:
        changed = await self._s.users.set_role(
            current_principal(), request.name, _required_role(request.role)
        )
        return console_pb2.SetUserRoleResponse(user=mapping.user(changed))

    @translate_errors
    async def SetUserEmail(
        self, request: console_pb2.SetUserEmailRequest, context: Context
    ) -> console_pb2.SetUserEmailResponse:
        changed = await self._s.users.set_email(current_principal(), request.name, request.email)
        return console_pb2.SetUserEmailResponse(user=mapping.user(changed))

    @translate_errors
    async def RotateUserToken(
        self, request: console_pb2.RotateUserTokenRequest, context: Context
    ) -> console_pb2.RotateUserTokenResponse:
        rotated, api_token = await self._s.users.rotate(
            current_principal(),
            request.name,
            token_expires_in=_token_lifetime(request.token_expires_in_s),
        )
        return console_pb2.RotateUserTokenResponse(user=mapping.user(rotated), api_token=api_token)

    @translate_errors
    async def Logout(
        self, request: console_pb2.LogoutRequest, context: Context
    ) -> console_pb2.LogoutResponse:
        await self._s.users.logout(current_principal())
        return console_pb2.LogoutResponse()
