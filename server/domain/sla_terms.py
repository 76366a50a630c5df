"""A ticket's SLA terms: the stored policy that applies to it and the instants its clocks fall
due and turn at risk, at open, on a change of priority or contract, and when a wait ends.

A ticket takes the live policy of its contract and priority, else the default one (contract
""), else none: then the wall-clock targets of sla.py, at risk after AT_RISK_SHARE of them. The
ticket keeps the policy it was given (its id) even when an admin later retires or replaces it;
its calendar is read when a wait ends, so a calendar edited meanwhile applies from then on.
Waiting on the requester pauses the resolve clock only (docs/sla.md).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from sonde.server.domain import sla
from sonde.server.domain.business_calendar import (
    BusinessCalendar,
    add_business_time,
    business_time_between,
    parse_calendar,
)
from sonde.server.domain.sla_policy import SlaPolicy
from sonde.server.domain.ticket_model import TicketPriority, TicketRecord, TicketStatus
from sonde.server.errors import InvalidArgument
from sonde.server.storage.tables import business_calendars, sla_policies, ticket_events

AT_RISK_SHARE = 0.75  # of a wall-clock target, for tickets no policy covers


@dataclass(frozen=True)
class SlaTerms:
    """A stored policy and its calendar."""

    policy_id: int
    policy: SlaPolicy
    calendar: BusinessCalendar


@dataclass(frozen=True)
class TicketClocks:
    response_due_at: datetime
    resolve_due_at: datetime
    response_risk_at: datetime
    resolve_risk_at: datetime
    sla_policy_id: int | None

    def columns(self) -> dict[str, Any]:
        return {
            "response_due_at": self.response_due_at,
            "resolve_due_at": self.resolve_due_at,
            "response_risk_at": self.response_risk_at,
            "resolve_risk_at": self.resolve_risk_at,
            "sla_policy_id": self.sla_policy_id,
        }


_POLICY_COLUMNS = (
    sla_policies.c.id,
    sla_policies.c.name,
    sla_policies.c.contract,
    sla_policies.c.priority,
    sla_policies.c.response_within_s,
    sla_policies.c.resolve_within_s,
    sla_policies.c.calendar,
    sla_policies.c.at_risk_share,
    sla_policies.c.on_risk,
    business_calendars.c.definition,
)
_POLICY_JOIN = sla_policies.join(
    business_calendars, business_calendars.c.name == sla_policies.c.calendar
)
_LIVE_FOR = (
    select(*_POLICY_COLUMNS)
    .select_from(_POLICY_JOIN)
    .where(
        sla_policies.c.retired_at.is_(None),
        sla_policies.c.priority == bindparam("priority"),
        sla_policies.c.contract.in_([bindparam("contract"), ""]),
    )
)
_BY_ID = (
    select(*_POLICY_COLUMNS)
    .select_from(_POLICY_JOIN)
    .where(sla_policies.c.id == bindparam("policy_id"))
)


_CONTRACT_NAMED = (
    select(sla_policies.c.contract)
    .where(sla_policies.c.retired_at.is_(None), sla_policies.c.contract == bindparam("contract"))
    .limit(1)
)
_CONTRACTS = (
    select(sla_policies.c.contract)
    .where(sla_policies.c.retired_at.is_(None), sla_policies.c.contract != "")
    .distinct()
    .order_by(sla_policies.c.contract)
    .limit(20)
)


def known_contract(connection: Connection, contract: str) -> str:
    """The contract a ticket names: "" (the default policies), or one a live policy names, so
    that a typo is refused rather than silently given the default targets."""
    contract = contract.strip()
    if not contract:
        return ""
    if connection.execute(_CONTRACT_NAMED, {"contract": contract}).first() is not None:
        return contract
    known = [str(name) for name in connection.execute(_CONTRACTS).scalars()]
    listed = ", ".join(known) if known else "none yet (`sonde sla policy set --contract`)"
    raise InvalidArgument(
        f"no SLA policy names the contract {contract[:64]!r}; contracts: {listed}"
    )


def calendar_of(definition: str) -> BusinessCalendar:
    """A stored calendar (the JSON of calendar_form)."""
    form = json.loads(definition)
    if not isinstance(form, dict):
        raise ValueError("a stored calendar is a JSON object")
    return parse_calendar(form)


def terms_from_row(row: Any) -> SlaTerms:
    on_risk: Literal["notify", "escalate"] = "escalate" if row.on_risk == "escalate" else "notify"
    policy = SlaPolicy(
        name=row.name,
        contract=row.contract or None,
        priority=TicketPriority(row.priority),
        response_within=timedelta(seconds=row.response_within_s),
        resolve_within=timedelta(seconds=row.resolve_within_s),
        calendar=row.calendar,
        at_risk_share=float(row.at_risk_share),
        on_risk=on_risk,
    )
    return SlaTerms(int(row.id), policy, calendar_of(row.definition))


def terms_for(connection: Connection, contract: str, priority: TicketPriority) -> SlaTerms | None:
    """The live policy for the contract and priority, else the default one, else None."""
    rows = connection.execute(_LIVE_FOR, {"priority": priority.value, "contract": contract}).all()
    own = [row for row in rows if row.contract == contract and contract]
    chosen = own or [row for row in rows if row.contract == ""]
    return terms_from_row(chosen[0]) if chosen else None


def terms_of(connection: Connection, ticket: TicketRecord) -> SlaTerms | None:
    """The policy the ticket was given (retired since or not)."""
    if ticket.sla_policy_id is None:
        return None
    row = connection.execute(_BY_ID, {"policy_id": ticket.sla_policy_id}).first()
    return terms_from_row(row) if row is not None else None


def clocks_from(terms: SlaTerms | None, priority: TicketPriority, opened: datetime) -> TicketClocks:
    """Due and at-risk instants counted from `opened`, before any wait."""
    if terms is None:
        due = sla.due_times(priority, opened)
        return TicketClocks(
            response_due_at=due.response_due_at,
            resolve_due_at=due.resolve_due_at,
            response_risk_at=opened + (due.response_due_at - opened) * AT_RISK_SHARE,
            resolve_risk_at=opened + (due.resolve_due_at - opened) * AT_RISK_SHARE,
            sla_policy_id=None,
        )
    policy, calendar = terms.policy, terms.calendar
    share = policy.at_risk_share
    return TicketClocks(
        response_due_at=add_business_time(calendar, opened, policy.response_within),
        resolve_due_at=add_business_time(calendar, opened, policy.resolve_within),
        response_risk_at=add_business_time(calendar, opened, policy.response_within * share),
        resolve_risk_at=add_business_time(calendar, opened, policy.resolve_within * share),
        sla_policy_id=terms.policy_id,
    )


def _resumed(terms: SlaTerms | None, instant: datetime, since: datetime, now: datetime) -> datetime:
    """Where an instant of the resolve clock lands once a wait from `since` ends at `now`: the
    time it still had when the wait began is counted again from now. One already past when the
    wait began stays."""
    if instant <= since:
        return instant
    if terms is None:
        return sla.paused_due(instant, since, now)
    left = business_time_between(terms.calendar, since, instant)
    return add_business_time(terms.calendar, max(now, since), left)


def resolve_clock_after_wait(
    connection: Connection, ticket: TicketRecord, since: datetime, now: datetime
) -> dict[str, Any]:
    """The ticket's changes when its wait on the requester, begun at `since`, ends at `now`."""
    terms = terms_of(connection, ticket)
    changes: dict[str, Any] = {"resolve_due_at": _resumed(terms, ticket.resolve_due_at, since, now)}
    if ticket.resolve_risk_at is not None:
        changes["resolve_risk_at"] = _resumed(terms, ticket.resolve_risk_at, since, now)
    return changes


_WAITS = (
    select(ticket_events.c.at, ticket_events.c.from_status, ticket_events.c.to_status)
    .where(ticket_events.c.ticket_id == bindparam("ticket_id"))
    .where(
        (ticket_events.c.to_status == TicketStatus.WAITING.value)
        | (ticket_events.c.from_status == TicketStatus.WAITING.value)
    )
    .order_by(ticket_events.c.id)
)


def ended_waits(connection: Connection, ticket_id: int) -> list[tuple[datetime, datetime]]:
    """The waits on the requester the ticket's timeline shows ended, in order."""
    waits: list[tuple[datetime, datetime]] = []
    since: datetime | None = None
    for row in connection.execute(_WAITS, {"ticket_id": ticket_id}):
        if row.to_status == TicketStatus.WAITING.value:
            since = since or row.at
        elif since is not None:
            waits.append((since, row.at))
            since = None
    return waits


def clocks_again(
    connection: Connection, ticket: TicketRecord, terms: SlaTerms | None
) -> TicketClocks:
    """The ticket's clocks under `terms` (a new priority or contract), from its opening, with
    the waits it has ended applied as each was when it ended."""
    clocks = clocks_from(terms, ticket.priority, ticket.created_at)
    due, risk = clocks.resolve_due_at, clocks.resolve_risk_at
    for since, ended in ended_waits(connection, ticket.id):
        due, risk = _resumed(terms, due, since, ended), _resumed(terms, risk, since, ended)
    return dataclasses.replace(clocks, resolve_due_at=due, resolve_risk_at=risk)
