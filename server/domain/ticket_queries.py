"""Reading tickets inside a unit of work: rows to records, timelines, the checks that look up.

Statements are built once, with bind parameters, so each call reuses their compiled form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from sonde.server.domain.diagnostics import findings_of, summaries_of
from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketEventRecord,
    TicketKind,
    TicketLevel,
    TicketOutcome,
    TicketPriority,
    TicketRecord,
    TicketStatus,
)
from sonde.server.errors import NotFound
from sonde.server.storage.tables import agents, snapshots, ticket_events, tickets, users
from sonde.server.storage.types import AnyRow

TICKET_COLUMNS = (
    *tickets.c,
    agents.c.hostname.label("agent_hostname"),
    agents.c.removed_at.is_not(None).label("agent_removed"),
)
_COLUMN_NAMES = tuple(column.name for column in TICKET_COLUMNS)
_RECORD_FIELDS = tuple(TicketRecord.__dataclass_fields__)

_TICKET = (
    select(*TICKET_COLUMNS)
    .outerjoin(agents, agents.c.id == tickets.c.agent_id)
    .where(tickets.c.id == bindparam("ticket_id"))
)
_TICKET_LOCKED = _TICKET.with_for_update(of=tickets)
_USER_ROLE = select(users.c.role).where(users.c.name == bindparam("name"))
_SNAPSHOT_AGENT = select(snapshots.c.agent_id).where(snapshots.c.id == bindparam("snapshot_id"))
_TIMELINE = (
    select(ticket_events)
    .where(ticket_events.c.ticket_id == bindparam("ticket_id"))
    .order_by(ticket_events.c.id)
)


def ticket_from_values(values: Sequence[Any]) -> TicketRecord:
    """A ticket from the values of TICKET_COLUMNS, in that order."""
    named = dict(zip(_COLUMN_NAMES, values, strict=True))
    named["channel"] = TicketChannel(named["channel"])
    named["priority"] = TicketPriority(named["priority"])
    named["level"] = TicketLevel(named["level"])
    named["status"] = TicketStatus(named["status"])
    named["agent_removed"] = bool(named["agent_removed"])  # NULL: no machine, or a subquery's
    named["kind"] = TicketKind(named["kind"])
    named["outcome"] = TicketOutcome(named["outcome"]) if named["outcome"] else None
    return TicketRecord(**{name: named[name] for name in _RECORD_FIELDS})


def ticket_from_row(row: AnyRow) -> TicketRecord:
    return ticket_from_values(tuple(row))


def _status_or_none(value: str | None) -> TicketStatus | None:
    return None if value is None else TicketStatus(value)


def user_role(connection: Connection, name: str) -> Role:
    role = connection.execute(_USER_ROLE, {"name": name}).scalar()
    if role is None:
        raise NotFound(f"no user named {name[:40]!r}")
    return Role.parse(str(role))


def snapshot_agent(connection: Connection, snapshot_id: int | None) -> str | None:
    if snapshot_id is None:
        return None
    agent_id = connection.execute(_SNAPSHOT_AGENT, {"snapshot_id": snapshot_id}).scalar()
    if agent_id is None:
        raise NotFound(f"no snapshot with id {snapshot_id}")
    return str(agent_id)


def is_ticket_id(ticket_id: int) -> bool:
    """Whether `ticket_id` can be a ticket's (ids are positive 64-bit integers): an agent's
    uint64 beyond them would fail the database's bind, not find nothing."""
    return 0 < ticket_id < 2**63


def load_ticket(connection: Connection, ticket_id: int, *, lock: bool = False) -> TicketRecord:
    """The ticket (NotFound when there is none); `lock` holds its row until commit."""
    if not is_ticket_id(ticket_id):
        raise NotFound(f"no ticket {ticket_id}")
    statement = _TICKET_LOCKED if lock else _TICKET
    row = connection.execute(statement, {"ticket_id": ticket_id}).first()
    if row is None:
        raise NotFound(f"no ticket {ticket_id}")
    return ticket_from_row(row)


_HANDS_OVER = frozenset(
    {TicketEventKind.OPENED.value, TicketEventKind.ASSIGNED.value, TicketEventKind.ESCALATED.value}
)


def _previous_assignees(rows: Sequence[AnyRow]) -> dict[int, str]:
    """Who had the ticket before each assignment or escalation: only these events set the
    assignee (an escalation without one leaves the ticket to the L2 queue)."""
    previous: dict[int, str] = {}
    holder: str | None = None
    for row in rows:
        if row.kind not in _HANDS_OVER:
            continue
        if holder is not None and row.kind != TicketEventKind.OPENED.value:
            previous[int(row.id)] = holder
        holder = row.assignee
    return previous


def load_timeline(connection: Connection, ticket_id: int) -> list[TicketEventRecord]:
    rows = connection.execute(_TIMELINE, {"ticket_id": ticket_id}).all()
    linked = [int(row.snapshot_id) for row in rows if row.snapshot_id is not None]
    summaries = summaries_of(connection, linked)
    found = findings_of(connection, linked)
    previous = _previous_assignees(rows)
    return [
        TicketEventRecord(
            id=int(row.id),
            ticket_id=ticket_id,
            kind=TicketEventKind(row.kind),
            actor=row.actor,
            at=row.at,
            body=row.body,
            from_status=_status_or_none(row.from_status),
            to_status=_status_or_none(row.to_status),
            assignee=row.assignee,
            previous_assignee=previous.get(int(row.id)),
            snapshot_id=row.snapshot_id,
            snapshot=summaries.get(row.snapshot_id) if row.snapshot_id else None,
            findings=tuple(found.get(row.snapshot_id, ())) if row.snapshot_id else (),
            command_id=row.command_id,
        )
        for row in rows
    ]
