"""Reading tickets inside a transaction: rows to records, timelines, the checks that look up."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sonde.server.domain.diagnostics import load_findings, load_summaries
from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketEventRecord,
    TicketLevel,
    TicketPriority,
    TicketRecord,
    TicketStatus,
)
from sonde.server.errors import NotFound
from sonde.server.storage.tables import agents, snapshots, ticket_events, tickets, users
from sonde.server.storage.types import AnyRow

TICKET_COLUMNS = (*tickets.c, agents.c.hostname.label("agent_hostname"))


def ticket_from_row(row: AnyRow) -> TicketRecord:
    values = dict(row._mapping)
    values["channel"] = TicketChannel(values["channel"])
    values["priority"] = TicketPriority(values["priority"])
    values["level"] = TicketLevel(values["level"])
    values["status"] = TicketStatus(values["status"])
    return TicketRecord(**{name: values[name] for name in TicketRecord.__dataclass_fields__})


def _status_or_none(value: str | None) -> TicketStatus | None:
    return None if value is None else TicketStatus(value)


async def user_role(session: AsyncSession, name: str) -> Role:
    role = (await session.execute(select(users.c.role).where(users.c.name == name))).scalar()
    if role is None:
        raise NotFound(f"no user named {name[:40]!r}")
    return Role.parse(str(role))


async def snapshot_agent(session: AsyncSession, snapshot_id: int | None) -> str | None:
    if snapshot_id is None:
        return None
    agent_id = (
        await session.execute(select(snapshots.c.agent_id).where(snapshots.c.id == snapshot_id))
    ).scalar()
    if agent_id is None:
        raise NotFound(f"no snapshot with id {snapshot_id}")
    return str(agent_id)


async def load_ticket(session: AsyncSession, ticket_id: int, *, lock: bool = False) -> TicketRecord:
    query = (
        select(*TICKET_COLUMNS)
        .outerjoin(agents, agents.c.id == tickets.c.agent_id)
        .where(tickets.c.id == ticket_id)
    )
    if lock:
        query = query.with_for_update(of=tickets)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no ticket {ticket_id}")
    return ticket_from_row(row)


async def load_timeline(session: AsyncSession, ticket_id: int) -> list[TicketEventRecord]:
    rows = (
        await session.execute(
            select(ticket_events)
            .where(ticket_events.c.ticket_id == ticket_id)
            .order_by(ticket_events.c.id)
        )
    ).all()
    linked = [int(row.snapshot_id) for row in rows if row.snapshot_id is not None]
    summaries = await load_summaries(session, linked)
    found = await load_findings(session, linked)
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
            snapshot_id=row.snapshot_id,
            snapshot=summaries.get(row.snapshot_id) if row.snapshot_id else None,
            findings=tuple(found.get(row.snapshot_id, ())) if row.snapshot_id else (),
        )
        for row in rows
    ]
