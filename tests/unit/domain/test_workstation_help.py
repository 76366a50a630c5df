"""Tickets asked from the workstation, on SQLite and PostgreSQL: five an hour per agent, also
when they arrive at once, and the hour slides."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.ticket_model import TicketChannel
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.workstation_help import HelpAsked, WorkstationHelp
from sonde.server.errors import ResourceExhausted
from sonde.server.storage.db import Database
from sonde.server.storage.tables import tickets
from tests.unit.domain.builders import Clock, enrolled_agent


def asked(agent_id: str, clock: Clock, words: str = "the printer jams") -> HelpAsked:
    return HelpAsked(agent_id, words, "alice", None, (), clock())


async def workstation_tickets(db: Database, agent_id: str) -> int:
    return int(
        await db.read(
            lambda c: c.execute(
                select(func.count())
                .select_from(tickets)
                .where(tickets.c.agent_id == agent_id)
                .where(tickets.c.channel == TicketChannel.WORKSTATION.value)
            ).scalar_one()
        )
    )


async def test_five_an_hour_even_at_once_then_the_hour_slides(db: Database) -> None:
    clock = Clock()
    writes = AuditedWrites(db, clock)
    help_desk = WorkstationHelp(Tickets(db, clock, writes=writes), writes)
    agent = await enrolled_agent(db)
    outcomes = await asyncio.gather(
        *(help_desk.open(asked(agent.id, clock)) for _ in range(8)), return_exceptions=True
    )
    opened = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, ResourceExhausted)]
    assert (len(opened), len(refused)) == (5, 3)
    assert all(t.requester == "alice" and t.agent_id == agent.id for t in opened)
    assert refused[0].retry_after_ms == 3600 * 1000
    assert await workstation_tickets(db, agent.id) == 5

    clock.advance(minutes=59)
    with pytest.raises(ResourceExhausted, match="try again in 1 min"):
        await help_desk.open(asked(agent.id, clock))
    clock.advance(minutes=1, seconds=1)
    assert (await help_desk.open(asked(agent.id, clock))).channel is TicketChannel.WORKSTATION
    assert await workstation_tickets(db, agent.id) == 6
