"""ConsoleService methods for SLA on business hours (server/domain/sla_admin.py, sla_report.py,
docs/sla.md): the admin's calendars and policies, and the compliance report."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any, Literal

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.business_calendar import calendar_form
from sonde.server.domain.sla_admin import MAX_CALENDAR_JSON, StoredCalendar, StoredPolicy
from sonde.server.domain.sla_report import Compliance, GroupFigures
from sonde.server.domain.ticket_model import TicketPriority
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]
_ON_RISK: dict[str, console_pb2.SlaOnRisk.ValueType] = {
    "notify": console_pb2.SLA_ON_RISK_NOTIFY,
    "escalate": console_pb2.SLA_ON_RISK_ESCALATE,
}


def calendar_message(stored: StoredCalendar) -> console_pb2.SlaCalendar:
    form = calendar_form(stored.calendar)
    hours = form["hours"]
    holidays = form["holidays"]
    message = console_pb2.SlaCalendar(
        name=stored.name,
        time_zone=stored.calendar.time_zone,
        hours=dict(hours) if isinstance(hours, dict) else {},
        holidays=list(holidays) if isinstance(holidays, list) else [],
        updated_by=stored.updated_by,
    )
    message.updated_at.FromDatetime(stored.updated_at)
    return message


def policy_message(policy: StoredPolicy) -> console_pb2.SlaPolicy:
    message = console_pb2.SlaPolicy(
        id=policy.id,
        name=policy.name,
        contract=policy.contract,
        priority=mapping.ticket_priority(policy.priority),
        response_within_s=int(policy.response_within.total_seconds()),
        resolve_within_s=int(policy.resolve_within.total_seconds()),
        calendar=policy.calendar,
        at_risk_share=policy.at_risk_share,
        on_risk=_ON_RISK[policy.on_risk],
        created_by=policy.created_by,
    )
    message.created_at.FromDatetime(policy.created_at)
    if policy.retired_at is not None:
        message.retired_at.FromDatetime(policy.retired_at)
    return message


def _compliance(tally: Compliance) -> console_pb2.SlaCompliance:
    return console_pb2.SlaCompliance(met=tally.met, breached=tally.breached, pending=tally.pending)


def _figures(name: str, figures: GroupFigures) -> console_pb2.SlaFigures:
    return console_pb2.SlaFigures(
        name=name, response=_compliance(figures.response), resolve=_compliance(figures.resolve)
    )


def _on_risk(number: int) -> Literal["notify", "escalate"]:
    return "escalate" if number == console_pb2.SLA_ON_RISK_ESCALATE else "notify"


class SlaMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def SetSlaCalendar(
        self, request: console_pb2.SetSlaCalendarRequest, context: Context
    ) -> console_pb2.SetSlaCalendarResponse:
        principal = current_principal()
        if len(request.definition_json) > MAX_CALENDAR_JSON:
            raise InvalidArgument(f"the calendar is over {MAX_CALENDAR_JSON} bytes")
        try:
            form = json.loads(request.definition_json or "{}")
        except json.JSONDecodeError as error:
            raise InvalidArgument(f"the calendar is not JSON: {error}") from error
        if not isinstance(form, dict):
            raise InvalidArgument("the calendar is a table: time_zone, hours, holidays")
        stored = await self._s.sla_admin.set_calendar(principal, request.name, form)
        return console_pb2.SetSlaCalendarResponse(calendar=calendar_message(stored))

    @translate_errors
    async def ListSlaCalendars(
        self, request: console_pb2.ListSlaCalendarsRequest, context: Context
    ) -> console_pb2.ListSlaCalendarsResponse:
        current_principal()
        calendars = await self._s.sla_admin.calendars()
        return console_pb2.ListSlaCalendarsResponse(
            calendars=[calendar_message(stored) for stored in calendars]
        )

    @translate_errors
    async def SetSlaPolicy(
        self, request: console_pb2.SetSlaPolicyRequest, context: Context
    ) -> console_pb2.SetSlaPolicyResponse:
        principal = current_principal()
        priority = mapping.priority_from_proto(request.priority)
        if priority is None:
            raise InvalidArgument("say the priority the policy is for: --priority p1..p4")
        policy = await self._s.sla_admin.set_policy(
            principal,
            request.name,
            contract=request.contract,
            priority=TicketPriority(priority),
            response_within=timedelta(seconds=request.response_within_s),
            resolve_within=timedelta(seconds=request.resolve_within_s),
            calendar=request.calendar,
            at_risk_share=request.at_risk_share or 0.75,
            on_risk=_on_risk(request.on_risk),
        )
        return console_pb2.SetSlaPolicyResponse(policy=policy_message(policy))

    @translate_errors
    async def RetireSlaPolicy(
        self, request: console_pb2.RetireSlaPolicyRequest, context: Context
    ) -> console_pb2.RetireSlaPolicyResponse:
        retired = await self._s.sla_admin.retire_policy(current_principal(), request.name)
        return console_pb2.RetireSlaPolicyResponse(policy=policy_message(retired))

    @translate_errors
    async def ListSlaPolicies(
        self, request: console_pb2.ListSlaPoliciesRequest, context: Context
    ) -> console_pb2.ListSlaPoliciesResponse:
        current_principal()
        policies = await self._s.sla_admin.policies(include_retired=request.include_retired)
        return console_pb2.ListSlaPoliciesResponse(
            policies=[policy_message(policy) for policy in policies]
        )

    @translate_errors
    async def ReportSla(
        self, request: console_pb2.ReportSlaRequest, context: Context
    ) -> console_pb2.ReportSlaResponse:
        current_principal()
        if not request.HasField("from") or not request.HasField("to"):
            raise InvalidArgument("say the period: --from and --to")
        report = await self._s.sla_reports.report(
            getattr(request, "from").ToDatetime(tzinfo=UTC),
            request.to.ToDatetime(tzinfo=UTC),
        )
        breaches = []
        for breach in report.breaches:
            message = console_pb2.SlaBreach(
                ticket_id=breach.ticket_id,
                title=breach.title,
                contract=breach.contract,
                priority=mapping.ticket_priority(TicketPriority(breach.priority)),
                clock=breach.clock,
                late_s=max(breach.late_s, 0),
                technician=breach.technician,
                policy=breach.policy,
                category=breach.category,
            )
            message.due_at.FromDatetime(breach.due_at)
            if breach.done_at is not None:
                message.done_at.FromDatetime(breach.done_at)
            breaches.append(message)
        return console_pb2.ReportSlaResponse(
            overall=_figures("overall", report.overall),
            by_contract=[_figures(name, f) for name, f in report.by_contract.items()],
            by_technician=[_figures(name, f) for name, f in report.by_technician.items()],
            by_category=[_figures(name, f) for name, f in report.by_category.items()],
            breaches=breaches,
        )
