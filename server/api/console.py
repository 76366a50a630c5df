"""ConsoleService: what technicians and admins do. Each method translates and hands off.

The auth interceptor has already checked the token and the method's permission; each method
reads the caller, calls the domain and maps the result. The domain writes the audit row of a
change (or of its refusal) in the change's own transaction; servicers write none.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

import sonde
from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.console_audit import AuditMethods
from sonde.server.api.console_catalog import CatalogMethods
from sonde.server.api.console_commands import CommandMethods
from sonde.server.api.console_credentials import CredentialMethods
from sonde.server.api.console_deploy import DeployMethods
from sonde.server.api.console_fixes import FixMethods
from sonde.server.api.console_fleet import FleetMethods
from sonde.server.api.console_helpdesk import HelpdeskMethods
from sonde.server.api.console_kb import KnowledgeBaseMethods
from sonde.server.api.console_monitoring import MonitoringMethods
from sonde.server.api.console_proposals import ProposalMethods
from sonde.server.api.console_remote import RemoteMethods
from sonde.server.api.console_runs import RunMethods, timeline_event
from sonde.server.api.console_sla import SlaMethods
from sonde.server.api.console_users import UserMethods
from sonde.server.api.console_webhooks import WebhookMethods
from sonde.server.api.errors import translate_errors
from sonde.server.domain.agent_tickets import agent_tickets
from sonde.server.domain.clock import utc_now
from sonde.server.domain.snapshot_history import previous_snapshot_id
from sonde.server.domain.ticket_model import TicketChannel, TicketKind, TicketPriority
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2, console_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_TOKEN_TTL_S = 3600


def _positive_id(value: int, what: str) -> int:
    if value <= 0:
        raise InvalidArgument(f"{what} id must be a positive number, got {value}")
    return value


def _optional_id(value: int, what: str) -> int | None:
    if value < 0:
        raise InvalidArgument(f"{what} id must be a positive number (or 0 for none), got {value}")
    return value or None


class ConsoleServicer(
    HelpdeskMethods,
    SlaMethods,
    MonitoringMethods,
    KnowledgeBaseMethods,
    CommandMethods,
    UserMethods,
    AuditMethods,
    FleetMethods,
    CatalogMethods,
    ProposalMethods,
    RunMethods,
    FixMethods,
    CredentialMethods,
    RemoteMethods,
    DeployMethods,
    WebhookMethods,
    console_pb2_grpc.ConsoleServiceServicer,
):
    def __init__(self, services: ServerServices) -> None:
        self._s = services

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
            online_only=request.online_only,
            include_revoked=request.include_revoked,
            include_removed=request.include_removed,
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
        its_tickets = await agent_tickets(self._s.db, agent.id)
        response = console_pb2.GetAgentResponse(
            agent=mapping.agent(agent),
            open_tickets=mapping.tickets(open_tickets),
            recent_tickets=mapping.tickets(its_tickets.recent),
            ticket_count=its_tickets.total,
        )
        if last is not None:
            response.last_snapshot.CopyFrom(mapping.snapshot_summary(last))
        return response

    @translate_errors
    async def RevokeAgent(
        self, request: console_pb2.RevokeAgentRequest, context: Context
    ) -> console_pb2.RevokeAgentResponse:
        principal = current_principal()
        revoked = await self._s.agents.revoke(principal, request.agent, request.reason, utc_now())
        return console_pb2.RevokeAgentResponse(agent=mapping.agent(revoked))

    # -- diagnostics -----------------------------------------------------------------------

    @translate_errors
    async def GetSnapshot(
        self, request: console_pb2.GetSnapshotRequest, context: Context
    ) -> console_pb2.GetSnapshotResponse:
        current_principal()
        snapshot_id = _positive_id(request.id, "the snapshot")
        stored = await self._s.diagnostics.get_snapshot(snapshot_id)
        previous = await previous_snapshot_id(self._s.db, snapshot_id)
        return console_pb2.GetSnapshotResponse(
            snapshot=mapping.stored_snapshot(stored), previous_id=previous or 0
        )

    # -- tickets ---------------------------------------------------------------------------

    @translate_errors
    async def OpenTicket(
        self, request: console_pb2.OpenTicketRequest, context: Context
    ) -> console_pb2.OpenTicketResponse:
        ticket = await self._s.tickets.open(
            current_principal(),
            title=request.title,
            description=request.description,
            channel=mapping.channel_from_proto(request.channel) or TicketChannel.PHONE,
            requester=request.requester,
            priority=mapping.priority_from_proto(request.priority) or TicketPriority.P3,
            agent=request.agent or None,
            assignee=request.assignee or None,
            snapshot_id=_optional_id(request.snapshot_id, "the snapshot"),
            kind=mapping.kind_from_proto(request.kind) or TicketKind.INCIDENT,
            category=request.category or None,
            contract=request.contract,
        )
        return console_pb2.OpenTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ListTickets(
        self, request: console_pb2.ListTicketsRequest, context: Context
    ) -> console_pb2.ListTicketsResponse:
        current_principal()
        statuses = [mapping.status_from_proto(number) for number in request.statuses]
        found = await self._s.tickets.page(
            statuses=[status for status in statuses if status is not None],
            level=mapping.level_from_proto(request.level),
            assignee=request.assignee or None,
            agent_id=(await self._s.agents.resolve(request.agent)).id if request.agent else None,
            include_closed=request.include_closed,
            limit=request.limit or 100,
            offset=request.offset,
        )
        return console_pb2.ListTicketsResponse(
            tickets=mapping.tickets(found.tickets), more=found.more
        )

    @translate_errors
    async def GetTicket(
        self, request: console_pb2.GetTicketRequest, context: Context
    ) -> console_pb2.GetTicketResponse:
        current_principal()
        ticket, timeline = await self._s.tickets.get(_positive_id(request.id, "the ticket"))
        runs = await self._s.script_runs.by_ids(e.command_id for e in timeline if e.command_id)
        return console_pb2.GetTicketResponse(
            ticket=mapping.ticket(ticket),
            timeline=[timeline_event(event, runs) for event in timeline],
        )

    @translate_errors
    async def CommentTicket(
        self, request: console_pb2.CommentTicketRequest, context: Context
    ) -> console_pb2.CommentTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
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
        ticket = await self._s.tickets.assign(principal, ticket_id, request.assignee or None)
        return console_pb2.AssignTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def EscalateTicket(
        self, request: console_pb2.EscalateTicketRequest, context: Context
    ) -> console_pb2.EscalateTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        escalation = await self._s.tickets.escalate(
            principal,
            ticket_id,
            request.reason,
            request.assignee or None,
            keep_assignee=request.keep_assignee,
        )
        return console_pb2.EscalateTicketResponse(
            ticket=mapping.ticket(escalation.ticket),
            previous_assignee=escalation.previous_assignee or "",
        )

    @translate_errors
    async def ResolveTicket(
        self, request: console_pb2.ResolveTicketRequest, context: Context
    ) -> console_pb2.ResolveTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        outcome = mapping.outcome_from_proto(request.outcome)
        if outcome is None:
            raise InvalidArgument(
                "say how it was resolved (the outcome): fixed, workaround, no-fault-found, "
                "user-guidance, done, hardware-replaced, third-party, duplicate or cancelled"
            )
        ticket = await self._s.tickets.resolve(
            principal,
            ticket_id,
            request.resolution,
            outcome=outcome,
            time_spent=timedelta(seconds=request.time_spent_s),
        )
        return console_pb2.ResolveTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def CloseTicket(
        self, request: console_pb2.CloseTicketRequest, context: Context
    ) -> console_pb2.CloseTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        ticket = await self._s.tickets.close(
            principal,
            ticket_id,
            request.note,
            outcome=mapping.outcome_from_proto(request.outcome),
        )
        return console_pb2.CloseTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ReopenTicket(
        self, request: console_pb2.ReopenTicketRequest, context: Context
    ) -> console_pb2.ReopenTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        ticket = await self._s.tickets.reopen(principal, ticket_id, request.reason)
        return console_pb2.ReopenTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def WaitTicket(
        self, request: console_pb2.WaitTicketRequest, context: Context
    ) -> console_pb2.WaitTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        ticket = await self._s.tickets.wait(principal, ticket_id, request.reason)
        return console_pb2.WaitTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ResumeTicket(
        self, request: console_pb2.ResumeTicketRequest, context: Context
    ) -> console_pb2.ResumeTicketResponse:
        principal = current_principal()
        ticket_id = _positive_id(request.id, "the ticket")
        resumed = await self._s.tickets.resume(principal, ticket_id, request.note)
        return console_pb2.ResumeTicketResponse(
            ticket=mapping.ticket(resumed.ticket), waited_s=int(resumed.waited.total_seconds())
        )

    # -- users and enrollment (admin only: the interceptor enforces it) ---------------------

    @translate_errors
    async def CreateEnrollmentToken(
        self, request: console_pb2.CreateEnrollmentTokenRequest, context: Context
    ) -> console_pb2.CreateEnrollmentTokenResponse:
        uses, ttl_s = request.uses or 1, request.ttl_s or DEFAULT_TOKEN_TTL_S
        issued = await self._s.enrollment.issue(
            current_principal(), uses=uses, ttl=timedelta(seconds=ttl_s)
        )
        response = console_pb2.CreateEnrollmentTokenResponse(
            enrollment=issued.enrollment, token_id=issued.token_id, uses=issued.uses
        )
        response.expires_at.FromDatetime(issued.expires_at)
        return response
