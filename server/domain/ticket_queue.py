"""The queues: each level's open tickets, SLA at risk first (`sonde queue`).

A ticket's SLA state is the worse of its two clocks: the first answer (until it has come) and
the resolution. A clock is breached past its due time and at risk past its stored at-risk
instant (its policy's share of the target, in business hours: sla_terms.py). A ticket waiting
on the requester has its resolve clock paused (its due time moves later by the wait when it
ends), so it reads `paused` unless a clock was breached already. The order: breached, then at
risk, then ok and paused, each by the next due time, then priority, then number.

The queue holds the open tickets (new, in progress, waiting) of a level, or of both, or only
the caller's (`--mine`). At most MAX_QUEUE are read and ordered; past that the count of the
rest is told, since a queue that long is a staffing matter, not a list to read. Only the
columns of the clocks are read for every one; the whole row only for the page returned.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.sla_terms import AT_RISK_SHARE
from sonde.server.domain.ticket_model import TicketLevel, TicketRecord, TicketStatus
from sonde.server.domain.ticket_queries import TICKET_COLUMNS, ticket_from_row
from sonde.server.errors import InvalidArgument
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, tickets

MAX_QUEUE = 5000
MAX_LIMIT = 1000
_OPEN = (TicketStatus.NEW.value, TicketStatus.IN_PROGRESS.value, TicketStatus.WAITING.value)


class SlaState(enum.IntEnum):
    """Worse is larger: a ticket's state is the max of its clocks'."""

    OK = 1
    PAUSED = 2
    AT_RISK = 3
    BREACHED = 4


@dataclass(frozen=True)
class QueuedTicket:
    ticket: TicketRecord
    sla: SlaState
    due_at: datetime  # the next due time of a clock still running
    share_used: float  # of the time it had to resolve


@dataclass(frozen=True)
class Queue:
    tickets: list[QueuedTicket]
    more: int


def _clock_state(
    opened: datetime, due: datetime, risk_at: datetime | None, now: datetime
) -> tuple[SlaState, float]:
    """A clock's state from its stored instants (the at-risk one counted in business hours
    when a policy applies); a ticket from before they were stored is at risk after
    AT_RISK_SHARE of its wall-clock span. The share is of the wall clock."""
    span = (due - opened).total_seconds()
    used = (now - opened).total_seconds() / span if span > 0 else 1.0
    if now > due:
        return SlaState.BREACHED, used
    at_risk = now >= risk_at if risk_at is not None else used >= AT_RISK_SHARE
    return (SlaState.AT_RISK if at_risk else SlaState.OK), used


@dataclass(frozen=True)
class _Clocks:
    """What a ticket's standing is worked out from: a queue reads only these for every
    open ticket, and the whole row of the ones it returns."""

    id: int
    priority: str
    status: str
    created_at: datetime
    response_due_at: datetime
    first_response_at: datetime | None
    resolve_due_at: datetime
    response_risk_at: datetime | None
    resolve_risk_at: datetime | None


def _standing(clocks: _Clocks, now: datetime) -> tuple[SlaState, datetime, float]:
    states = []
    dues = []
    if clocks.first_response_at is None:
        state, _ = _clock_state(
            clocks.created_at, clocks.response_due_at, clocks.response_risk_at, now
        )
        states.append(state)
        dues.append(clocks.response_due_at)
    resolve_state, share = _clock_state(
        clocks.created_at, clocks.resolve_due_at, clocks.resolve_risk_at, now
    )
    if clocks.status == TicketStatus.WAITING.value and resolve_state is not SlaState.BREACHED:
        resolve_state = SlaState.PAUSED
    states.append(resolve_state)
    dues.append(clocks.resolve_due_at)
    return max(states), min(dues), share


# Breached, then at risk, then the rest alike: a paused ticket is no more urgent than an ok one.
_RANK = {SlaState.BREACHED: 0, SlaState.AT_RISK: 1, SlaState.OK: 2, SlaState.PAUSED: 2}


_CLOCK_COLUMNS = (
    tickets.c.id,
    tickets.c.priority,
    tickets.c.status,
    tickets.c.created_at,
    tickets.c.response_due_at,
    tickets.c.first_response_at,
    tickets.c.resolve_due_at,
    tickets.c.response_risk_at,
    tickets.c.resolve_risk_at,
)


class TicketQueue:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def list(
        self, *, level: TicketLevel | None = None, assignee: str | None = None, limit: int = 100
    ) -> Queue:
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
        query = select(*_CLOCK_COLUMNS).where(tickets.c.status.in_(_OPEN))
        if level is not None:
            query = query.where(tickets.c.level == level.value)
        if assignee is not None:
            query = query.where(tickets.c.assignee == assignee)
        counted = select(func.count()).select_from(query.subquery())
        # The soonest due first, so that a queue past MAX_QUEUE keeps the urgent ones.
        query = query.order_by(tickets.c.resolve_due_at, tickets.c.id).limit(MAX_QUEUE)
        now = self._clock()

        def unit(connection: Connection) -> Queue:
            clocks = [_Clocks(*row) for row in connection.execute(query)]
            total = len(clocks)
            if total == MAX_QUEUE:
                total = int(connection.execute(counted).scalar_one())
            standings = {c.id: _standing(c, now) for c in clocks}
            # Breached, then at risk, then the rest by the next due time, priority, number.
            first = sorted(
                clocks,
                key=lambda c: (_RANK[standings[c.id][0]], standings[c.id][1], c.priority, c.id),
            )[:limit]
            rows = connection.execute(
                select(*TICKET_COLUMNS)
                .outerjoin(agents, agents.c.id == tickets.c.agent_id)
                .where(tickets.c.id.in_([c.id for c in first]))
            )
            records = {record.id: record for record in map(ticket_from_row, rows)}
            ordered = [
                QueuedTicket(records[c.id], *standings[c.id]) for c in first if c.id in records
            ]
            return Queue(ordered, max(total - len(ordered), 0))

        return await self._db.read(unit)
