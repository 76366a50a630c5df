"""Waiting on the requester: when a ticket began to wait, what it was before, and the SLA pause;
and whether a diagnostic may land on a ticket's timeline (require_ticket_of).

A wait is the last timeline event that moved the ticket to waiting (WAITING, or a
STATUS_CHANGED of old); resume returns the ticket to the status that event moved it from.
Any way out of waiting (resume, resolve, close) ends the pause: the resolve due time moves
later by the time spent waiting (sla_terms.resolve_clock_after_wait), in business hours when
a policy applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from sonde.server.domain.sla_terms import resolve_clock_after_wait
from sonde.server.domain.ticket_model import TicketRecord, TicketStatus
from sonde.server.errors import Conflict, InvalidArgument
from sonde.server.storage.tables import ticket_events

_LAST_WAIT = (
    select(ticket_events.c.at, ticket_events.c.from_status)
    .where(
        ticket_events.c.ticket_id == bindparam("ticket_id"),
        ticket_events.c.to_status == TicketStatus.WAITING.value,
    )
    .order_by(ticket_events.c.id.desc())
    .limit(1)
)


@dataclass(frozen=True)
class Wait:
    since: datetime
    was: TicketStatus  # the status it returns to on resume


def current_wait(connection: Connection, ticket: TicketRecord) -> Wait | None:
    """The ticket's wait, when it is waiting."""
    if ticket.status is not TicketStatus.WAITING:
        return None
    row = connection.execute(_LAST_WAIT, {"ticket_id": ticket.id}).first()
    if row is None:  # no event says since when: nothing to pause
        return None
    was = TicketStatus(row.from_status) if row.from_status else TicketStatus.WAITING
    if not was.is_open or was is TicketStatus.WAITING:
        was = TicketStatus.IN_PROGRESS if ticket.assignee else TicketStatus.NEW
    return Wait(since=row.at, was=was)


def end_of_wait(
    connection: Connection, wait: Wait | None, ticket: TicketRecord, now: datetime
) -> dict[str, Any]:
    """The ticket's changes when its wait ends now: the resolve clock, paused meanwhile."""
    if wait is None:
        return {}
    return resolve_clock_after_wait(connection, ticket, wait.since, now)


def waited(wait: Wait | None, now: datetime) -> timedelta:
    return max(now - wait.since, timedelta(0)) if wait is not None else timedelta(0)


def require_ticket_of(ticket: TicketRecord, agent_id: str, hostname: str) -> None:
    """A diagnostic may land on the ticket's timeline: refused, as a comment is, when it is
    closed, and when the ticket is about another machine."""
    if ticket.status is TicketStatus.CLOSED:
        raise Conflict(f"ticket {ticket.id} is closed: reopen it first")
    if ticket.agent_id is not None and ticket.agent_id != agent_id:
        about = f"{ticket.agent_hostname or ''} ({ticket.agent_id})".lstrip()
        raise InvalidArgument(
            f"ticket {ticket.id} is about {about}, not {hostname} ({agent_id}): "
            "run the diagnostic on the ticket's machine, or link it to a ticket about this one"
        )
