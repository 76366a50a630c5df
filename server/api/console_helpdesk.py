"""ConsoleService methods for handling tickets between intake and closure (docs/tickets.md):
their details and the category tree, the queues, taking and handing back, the time spent."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.intervention_report import Figures, Intervention
from sonde.server.domain.requesters import MAX_FOUND, KnownRequester
from sonde.server.domain.ticket_categories import Category
from sonde.server.domain.ticket_model import TicketKind, TicketOutcome
from sonde.server.domain.ticket_queue import QueuedTicket
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def _ticket_id(number: int) -> int:
    if number <= 0:
        raise InvalidArgument(f"the ticket is a positive number, got {number}")
    return number


def category_message(category: Category) -> console_pb2.Category:
    message = console_pb2.Category(
        path=category.path, title=category.title, created_by=category.created_by
    )
    message.created_at.FromDatetime(category.created_at)
    if category.retired_at is not None:
        message.retired_at.FromDatetime(category.retired_at)
    return message


def _queued(entry: QueuedTicket) -> console_pb2.QueuedTicket:
    message = console_pb2.QueuedTicket(
        ticket=mapping.ticket(entry.ticket),
        sla=console_pb2.SlaState.Value(f"SLA_STATE_{entry.sla.name}"),
        share_used=entry.share_used,
    )
    message.due_at.FromDatetime(entry.due_at)
    return message


class HelpdeskMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def SetTicketDetails(
        self, request: console_pb2.SetTicketDetailsRequest, context: Context
    ) -> console_pb2.SetTicketDetailsResponse:
        ticket = await self._s.ticket_handling.set_details(
            current_principal(),
            _ticket_id(request.id),
            kind=mapping.kind_from_proto(request.kind),
            category=request.category or None,
            requester=request.requester or None,
            agent=request.agent or None,
            priority=mapping.priority_from_proto(request.priority),
            contract="" if request.default_contract else (request.contract or None),
        )
        return console_pb2.SetTicketDetailsResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ListQueue(
        self, request: console_pb2.ListQueueRequest, context: Context
    ) -> console_pb2.ListQueueResponse:
        principal = current_principal()
        queue = await self._s.ticket_queue.list(
            level=mapping.level_from_proto(request.level),
            assignee=principal.name if request.mine else None,
            limit=request.limit or 100,
        )
        return console_pb2.ListQueueResponse(
            tickets=[_queued(entry) for entry in queue.tickets], more=queue.more
        )

    @translate_errors
    async def TakeTicket(
        self, request: console_pb2.TakeTicketRequest, context: Context
    ) -> console_pb2.TakeTicketResponse:
        ticket = await self._s.ticket_handling.take(
            current_principal(), _ticket_id(request.id), category=request.category or None
        )
        return console_pb2.TakeTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def HandBackTicket(
        self, request: console_pb2.HandBackTicketRequest, context: Context
    ) -> console_pb2.HandBackTicketResponse:
        ticket = await self._s.ticket_handling.hand_back(
            current_principal(), _ticket_id(request.id), request.note
        )
        return console_pb2.HandBackTicketResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def LogTicketTime(
        self, request: console_pb2.LogTicketTimeRequest, context: Context
    ) -> console_pb2.LogTicketTimeResponse:
        ticket = await self._s.ticket_handling.log_time(
            current_principal(),
            _ticket_id(request.id),
            timedelta(seconds=request.seconds),
            request.on_what,
        )
        return console_pb2.LogTicketTimeResponse(ticket=mapping.ticket(ticket))

    @translate_errors
    async def ListCategories(
        self, request: console_pb2.ListCategoriesRequest, context: Context
    ) -> console_pb2.ListCategoriesResponse:
        current_principal()
        found = await self._s.categories.list(include_retired=request.include_retired)
        return console_pb2.ListCategoriesResponse(
            categories=[category_message(category) for category in found]
        )

    @translate_errors
    async def AddCategory(
        self, request: console_pb2.AddCategoryRequest, context: Context
    ) -> console_pb2.AddCategoryResponse:
        added = await self._s.categories.add(current_principal(), request.path, request.title)
        return console_pb2.AddCategoryResponse(category=category_message(added))

    @translate_errors
    async def RetireCategory(
        self, request: console_pb2.RetireCategoryRequest, context: Context
    ) -> console_pb2.RetireCategoryResponse:
        retired = await self._s.categories.retire(current_principal(), request.path)
        return console_pb2.RetireCategoryResponse(category=category_message(retired))

    @translate_errors
    async def ReportInterventions(
        self, request: console_pb2.ReportInterventionsRequest, context: Context
    ) -> console_pb2.ReportInterventionsResponse:
        current_principal()
        if not request.HasField("from") or not request.HasField("to"):
            raise InvalidArgument("say the period: --from and --to")
        report = await self._s.interventions.report(
            getattr(request, "from").ToDatetime(tzinfo=UTC), request.to.ToDatetime(tzinfo=UTC)
        )
        return console_pb2.ReportInterventionsResponse(
            interventions=[_intervention(row) for row in report.rows],
            by_technician=_figures(report.by_technician),
            by_category=_figures(report.by_category),
        )

    @translate_errors
    async def ListRequesters(
        self, request: console_pb2.ListRequestersRequest, context: Context
    ) -> console_pb2.ListRequestersResponse:
        current_principal()
        found = await self._s.requesters.find(request.prefix, request.limit or MAX_FOUND)
        return console_pb2.ListRequestersResponse(
            requesters=[_known_requester(known) for known in found]
        )


def _known_requester(known: KnownRequester) -> console_pb2.KnownRequester:
    message = console_pb2.KnownRequester(requester=known.requester, tickets=known.tickets)
    message.last_at.FromDatetime(known.last_at)
    for machine in known.machines:
        shown = message.machines.add(
            agent_id=machine.agent_id, hostname=machine.hostname, tickets=machine.tickets
        )
        shown.last_at.FromDatetime(machine.last_at)
    usual = known.usual_machine
    message.usual_agent_id = usual.agent_id if usual is not None else ""
    return message


def _intervention(row: Intervention) -> console_pb2.Intervention:
    message = console_pb2.Intervention(
        ticket_id=row.ticket_id,
        title=row.title,
        machine=row.machine,
        category=row.category,
        kind=mapping.ticket_kind(TicketKind(row.kind)),
        technician=row.technician,
        what_was_done=row.what_was_done,
        runs=list(row.runs),
        time_spent_s=row.time_spent_s,
        outcome=mapping.ticket_outcome(TicketOutcome(row.outcome) if row.outcome else None),
        on_time=row.on_time,
        rating=row.rating,
    )
    message.finished_at.FromDatetime(row.finished_at)
    return message


def _figures(found: dict[str, Figures]) -> list[console_pb2.InterventionFigures]:
    return [
        console_pb2.InterventionFigures(
            name=name,
            interventions=figures.interventions,
            time_spent_s=figures.time_spent_s,
            fixed=figures.fixed,
            on_time=figures.on_time,
            rated=figures.rated,
            rating_sum=figures.rating_sum,
        )
        for name, figures in found.items()
    ]
