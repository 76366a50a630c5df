"""A machine's tickets for `sonde agent show`: its newest few, in any status, and its count."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.ticket_model import TicketRecord
from sonde.server.domain.ticket_queries import TICKET_COLUMNS, ticket_from_row
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, tickets

RECENT_TICKETS = 10

_RECENT = (
    select(*TICKET_COLUMNS)
    .outerjoin(agents, agents.c.id == tickets.c.agent_id)
    .where(tickets.c.agent_id == bindparam("agent_id"))
    .order_by(tickets.c.id.desc())
    .limit(RECENT_TICKETS)
)
_COUNT = select(func.count()).where(tickets.c.agent_id == bindparam("agent_id"))


@dataclass(frozen=True)
class AgentTickets:
    recent: list[TicketRecord]  # newest first, at most RECENT_TICKETS
    total: int


async def agent_tickets(db: Database, agent_id: str) -> AgentTickets:
    def unit(connection: Connection) -> AgentTickets:
        recent = [
            ticket_from_row(row) for row in connection.execute(_RECENT, {"agent_id": agent_id})
        ]
        total = len(recent)
        if total == RECENT_TICKETS:
            total = int(connection.execute(_COUNT, {"agent_id": agent_id}).scalar_one())
        return AgentTickets(recent, total)

    return await db.read(unit)
