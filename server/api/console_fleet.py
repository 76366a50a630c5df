"""ConsoleService methods for the fleet's administration: retiring a machine, and listing and
revoking enrollment tokens (server/domain/agents.py, server/domain/enrollment_tokens.py)."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.clock import utc_now
from sonde.server.domain.enrollment_tokens import EnrollmentToken, TokenState
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]

_STATES = {
    TokenState.ACTIVE: console_pb2.ENROLLMENT_TOKEN_STATE_ACTIVE,
    TokenState.USED_UP: console_pb2.ENROLLMENT_TOKEN_STATE_USED_UP,
    TokenState.EXPIRED: console_pb2.ENROLLMENT_TOKEN_STATE_EXPIRED,
    TokenState.REVOKED: console_pb2.ENROLLMENT_TOKEN_STATE_REVOKED,
}


def enrollment_token(token: EnrollmentToken) -> console_pb2.EnrollmentToken:
    message = console_pb2.EnrollmentToken(
        id=token.id,
        created_by=token.created_by,
        uses_granted=token.uses_granted,
        uses_left=max(token.uses_left, 0),
        state=_STATES[token.state],
        revoked_by=token.revoked_by,
    )
    message.created_at.FromDatetime(token.created_at)
    message.expires_at.FromDatetime(token.expires_at)
    if token.revoked_at is not None:
        message.revoked_at.FromDatetime(token.revoked_at)
    return message


class FleetMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def RemoveAgent(
        self, request: console_pb2.RemoveAgentRequest, context: Context
    ) -> console_pb2.RemoveAgentResponse:
        removed = await self._s.agents.remove(
            current_principal(), request.agent, request.reason, utc_now()
        )
        return console_pb2.RemoveAgentResponse(agent=mapping.agent(removed))

    @translate_errors
    async def ListEnrollmentTokens(
        self, request: console_pb2.ListEnrollmentTokensRequest, context: Context
    ) -> console_pb2.ListEnrollmentTokensResponse:
        current_principal()
        found = await self._s.tokens.list(include_inactive=request.include_inactive)
        return console_pb2.ListEnrollmentTokensResponse(
            tokens=[enrollment_token(token) for token in found]
        )

    @translate_errors
    async def RevokeEnrollmentToken(
        self, request: console_pb2.RevokeEnrollmentTokenRequest, context: Context
    ) -> console_pb2.RevokeEnrollmentTokenResponse:
        revoked = await self._s.tokens.revoke(current_principal(), request.token)
        return console_pb2.RevokeEnrollmentTokenResponse(token=enrollment_token(revoked))
