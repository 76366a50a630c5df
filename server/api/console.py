"""ConsoleService: what technicians and admins do. Each method translates and hands off.

The auth interceptor has already checked the token and the method's permission; each method
reads the caller, calls the domain, records an audit row when it changes or runs something,
and maps the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc

import sonde
from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.audit import DetailValue
from sonde.server.domain.clock import utc_now
from sonde.server.domain.roles import Principal
from sonde.server.domain.ticket_model import TicketChannel, TicketPriority
from sonde.server.errors import InvalidArgument, SondeError
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2, console_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_DIAGNOSTIC_TIMEOUT_S = 30
MAX_DIAGNOSTIC_TIMEOUT_S = 600
DEFAULT_TOKEN_TTL_S = 3600


@dataclass
class AuditEntry:
    """What the audit row will say; a method fills in what it learns (the resolved agent...)."""

    agent_id: str | None = None
    ticket_id: int | None = None
    detail: dict[str, DetailValue] = field(default_factory=dict)


def _positive_id(value: int, what: str) -> int:
    if value <= 0:
        raise InvalidArgument(f"{what} id must be a positive number, got {value}")
    return value


def _optional_id(value: int, what: str) -> int | None:
    if value < 0:
        raise InvalidArgument(f"{what} id must be a positive number (or 0 for none), got {value}")
    return value or None


class ConsoleServicer(console_pb2_grpc.ConsoleServiceServicer):
    def __init__(self, services: ServerServices) -> None:
        self._s = services

    @contextlib.asynccontextmanager
    async def _audited(
        self, principal: Principal, action: str, *, ticket_id: int | None = None
    ) -> AsyncIterator[AuditEntry]:
        """Record the action with its outcome: ok, or what was refused and why."""
        entry = AuditEntry(ticket_id=ticket_id)
        try:
            yield entry
        except SondeError as error:
            result = f"refused: {type(error).__name__}: {error}"
            await self._record(principal, action, entry, result)
            raise
        except Exception:
            await self._record(principal, action, entry, "failed: internal error")
            raise
        await self._record(principal, action, entry, "ok")

    async def _record(
        self, principal: Principal, action: str, entry: AuditEntry, result: str
    ) -> None:
        await self._s.audit.record(
            principal.name,
            action,
            agent_id=entry.agent_id,
            ticket_id=entry.ticket_id,
            detail=entry.detail,
            result=result,
        )

    # -- who am I, agents ------------------------------------------------------------------

    @translate_errors
    async def WhoAmI(
        self, request: console_pb2.WhoAmIRequest, context: Context
    ) -> console_pb2.WhoAmIResponse:
        me = await self._s.users.get(current_principal().name)
        return console_pb2.WhoAmIResponse(user=mapping.user(me), server_version=sonde.__version__)

    @translate_errors
    async def ListAgents(
        self, request: console_pb2.ListAgentsRequest, context: Context
    ) -> console_pb2.ListAgentsResponse:
        current_principal()
        found = await self._s.agents.list(
            online_only=request.online_only, include_revoked=request.include_revoked
        )
        return console_pb2.ListAgentsResponse(agents=[mapping.agent(a) for a in found])

    @translate_errors
    async def GetAgent(
        self, request: console_pb2.GetAgentRequest, context: Context
    ) -> console_pb2.GetAgentResponse:
        current_principal()
        agent = await self._s.agents.resolve(request.agent)
        last = await self._s.diagnostics.last_snapshot(agent.id)
        open_tickets = await self._s.tickets.list(agent_id=agent.id)
        response = console_pb2.GetAgentResponse(
            agent=mapping.agent(agent), open_tickets=mapping.tickets(open_tickets)
        )
        if last is not None:
            response.last_snapshot.CopyFrom(mapping.snapshot_summary(last))
        return response

    @translate_errors
    async def RevokeAgent(
        self, request: console_pb2.RevokeAgentRequest, context: Context
    ) -> console_pb2.RevokeAgentResponse:
        principal = current_principal()
        async with self._audited(principal, "agent.revoke") as entry:
            agent = await self._s.agents.resolve(request.agent)
            entry.agent_id = agent.id
            revoked = await self._s.agents.revoke(agent.id, request.reason, utc_now())
            await self._s.dispatcher.disconnect(agent.id, request.reason or "revoked by an admin")
        return console_pb2.RevokeAgentResponse(agent=mapping.agent(revoked))

    # -- diagnostics -----------------------------------------------------------------------

    @translate_errors
    async def RunDiagnostics(
        self, request: console_pb2.RunDiagnosticsRequest, context: Context
    ) -> console_pb2.RunDiagnosticsResponse:
        principal = current_principal()
        ticket_id = _optional_id(request.ticket_id, "the ticket")
        timeout_s = request.timeout_s or DEFAULT_DIAGNOSTIC_TIMEOUT_S
        if timeout_s > MAX_DIAGNOSTIC_TIMEOUT_S:
            raise InvalidArgument(f"timeout_s must be at most {MAX_DIAGNOSTIC_TIMEOUT_S}")
        async with self._audited(principal, "diagnostics.run", ticket_id=ticket_id) as entry:
            agent = await self._s.agents.resolve(request.agent)
            entry.agent_id = agent.id
            if ticket_id is not None:
                await self._s.tickets.ticket(ticket_id)  # NOT_FOUND before reaching the agent
            snapshot_id = await self._s.dispatcher.run_diagnostics(
                agent.id, ticket_id=ticket_id, requested_by=principal.name, timeout_s=timeout_s
            )
            entry.detail["snapshot_id"] = snapshot_id
        stored = await self._s.diagnostics.get_snapshot(snapshot_id)
        return console_pb2.RunDiagnosticsResponse(snapshot=mapping.stored_snapshot(stored))

    @translate_errors
    async def GetSnapshot(
        self, request: console_pb2.GetSnapshotRequest, context: Context
    ) -> console_pb2.GetSnapshotResponse:
        current_principal()
        stored = await self._s.diagnostics.get_snapshot(_positive_id(request.id, "the snapshot"))
        return console_pb2.GetSnapshotResponse(snapshot=mapping.stored_snapshot(stored))

    # -- tickets ---------------------------------------------------------------------------

    @translate_errors
    async def OpenTicket(
        self, request: console_pb2.OpenTicketRequest, context: Context
    ) -> console_pb2.OpenTicketResponse:
        principal = current_principal()
        async with self._audited(principal, "ticket.open") as entry:
            agent_id = (await self._s.agents.resolve(request.agent)).id if request.agent else None
            entry.agent_id = agent_id
            ticket = await self._s.tickets.open(
                principal,
                title=request.title,
                description=request.description,
                channel=mapping.channel_from_proto(request.channel) or TicketChannel.PHONE,
                requester=request.requester,
                priority=mapping.priority_from_proto(request.priority) or TicketPriority.P3,
                agent_id=agent_id,
                assignee=request.assignee or None,
                snapshot_id=_optional_id(request.snapshot_id, "the snapshot"),
            )
            entry.ticket_id, entry.agent_id = ticket.id, ticket.agent_id
        return console_pb2.OpenTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ListTickets(
        self, request: console_pb2.ListTicketsRequest, context: Context
    ) -> console_pb2.ListTicketsResponse:
        current_principal()
        statuses = [mapping.status_from_proto(number) for number in request.statuses]
        found = await self._s.tickets.list(
            statuses=[status for status in statuses if status is not None],
            level=mapping.level_from_proto(request.level),
            assignee=request.assignee or None,
            agent_id=(await self._s.agents.resolve(request.agent)).id if request.agent else None,
            include_closed=request.include_closed,
            limit=request.limit or 100,
        )
        return console_pb2.ListTicketsResponse(tickets=mapping.tickets(found))

    @translate_errors
    async def GetTicket(
        self, request: console_pb2.GetTicketRequest, context: Context
    ) -> console_pb2.GetTicketResponse:
        current_principal()
        ticket, timeline = await self._s.tickets.get(_positive_id(request.id, "the ticket"))
        return console_pb2.GetTicketResponse(
            ticket=mapping.ticket(ticket), timeline=[mapping.ticket_event(e) for e in timeline]
        )

    @translate_errors
    async def CommentTicket(
        self, request: console_pb2.CommentTicketRequest, context: Context
    ) -> console_pb2.CommentTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        async with self._audited(principal, "ticket.comment", ticket_id=ticket_id):
            ticket, event = await self._s.tickets.comment(principal, ticket_id, request.body)
        return console_pb2.CommentTicketResponse(
            ticket=mapping.ticket(ticket), event=mapping.ticket_event(event)
        )

    @translate_errors
    async def AssignTicket(
        self, request: console_pb2.AssignTicketRequest, context: Context
    ) -> console_pb2.AssignTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        assignee = request.assignee or principal.name
        async with self._audited(principal, "ticket.assign", ticket_id=ticket_id) as entry:
            entry.detail["assignee"] = assignee
            ticket = await self._s.tickets.assign(principal, ticket_id, assignee)
        return console_pb2.AssignTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def EscalateTicket(
        self, request: console_pb2.EscalateTicketRequest, context: Context
    ) -> console_pb2.EscalateTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        async with self._audited(principal, "ticket.escalate", ticket_id=ticket_id) as entry:
            entry.detail["assignee"] = request.assignee or None
            ticket = await self._s.tickets.escalate(
                principal, ticket_id, request.reason, request.assignee or None
            )
        return console_pb2.EscalateTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ResolveTicket(
        self, request: console_pb2.ResolveTicketRequest, context: Context
    ) -> console_pb2.ResolveTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        async with self._audited(principal, "ticket.resolve", ticket_id=ticket_id):
            ticket = await self._s.tickets.resolve(principal, ticket_id, request.resolution)
        return console_pb2.ResolveTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def CloseTicket(
        self, request: console_pb2.CloseTicketRequest, context: Context
    ) -> console_pb2.CloseTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        async with self._audited(principal, "ticket.close", ticket_id=ticket_id):
            ticket = await self._s.tickets.close(principal, ticket_id, request.note)
        return console_pb2.CloseTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ReopenTicket(
        self, request: console_pb2.ReopenTicketRequest, context: Context
    ) -> console_pb2.ReopenTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        async with self._audited(principal, "ticket.reopen", ticket_id=ticket_id):
            ticket = await self._s.tickets.reopen(principal, ticket_id, request.reason)
        return console_pb2.ReopenTicketResponse(ticket=mapping.ticket(ticket))

    # -- users and enrollment (admin only: the interceptor enforces it) ---------------------

    @translate_errors
    async def CreateUser(
        self, request: console_pb2.CreateUserRequest, context: Context
    ) -> console_pb2.CreateUserResponse:
        principal = current_principal()
        async with self._audited(principal, "user.create") as entry:
            entry.detail |= {"name": request.name[:64], "role": request.role}
            role = mapping.role_from_proto(request.role)
            if role is None:
                raise InvalidArgument("a role is required: l1, l2 or admin")
            created, api_token = await self._s.users.add(
                request.name, role, created_by=principal.name
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
    async def CreateEnrollmentToken(
        self, request: console_pb2.CreateEnrollmentTokenRequest, context: Context
    ) -> console_pb2.CreateEnrollmentTokenResponse:
        principal = current_principal()
        uses, ttl_s = request.uses or 1, request.ttl_s or DEFAULT_TOKEN_TTL_S
        async with self._audited(principal, "enrollment_token.create") as entry:
            entry.detail |= {"uses": uses, "ttl_s": ttl_s}
            issued = await self._s.enrollment.issue(
                uses=uses, ttl=timedelta(seconds=ttl_s), created_by=principal.name
            )
            entry.detail["token_id"] = issued.token_id
        response = console_pb2.CreateEnrollmentTokenResponse(
            enrollment=issued.enrollment, token_id=issued.token_id, uses=issued.uses
        )
        response.expires_at.FromDatetime(issued.expires_at)
        return response
