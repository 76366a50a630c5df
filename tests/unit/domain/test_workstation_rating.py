"""Satisfaction asked on the workstation, on SQLite and PostgreSQL: only the ticket's own local
user on its own machine rates it, once, while the question lives; a reopened ticket waits for
its next resolve; other channels are not asked there; two answers at once store one."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.intervention_report import InterventionReports
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.satisfaction import RATING_LIFETIME
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketOutcome,
    TicketRecord,
)
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.workstation_help import HelpAsked, WorkstationHelp
from sonde.server.domain.workstation_rating import WorkstationRatings
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, satisfaction
from tests.unit.domain.builders import Clock, enrolled_agent, technician


class Desk:
    def __init__(self, db: Database, ann: Principal) -> None:
        self.clock = Clock()
        writes = AuditedWrites(db, self.clock)
        self.db = db
        self.ann = ann
        self.tickets = Tickets(db, self.clock, writes=writes)
        self.help = WorkstationHelp(self.tickets, writes)
        self.ratings = WorkstationRatings(db, writes, self.clock)

    async def asked_for_help(self, agent_id: str, user: str = "alice") -> TicketRecord:
        return await self.help.open(
            HelpAsked(agent_id, "the printer jams", user, None, (), self.clock())
        )

    async def resolve(self, ticket_id: int) -> None:
        await self.tickets.resolve(
            self.ann,
            ticket_id,
            "Cleared the print queue\nand restarted the spooler",
            outcome=TicketOutcome.FIXED,
            time_spent=timedelta(minutes=10),
        )


@pytest.fixture
async def desk(db: Database) -> Desk:
    return Desk(db, await technician(db, "ann", Role.L1))


async def test_only_its_own_user_on_its_own_machine_rates_it_once(desk: Desk) -> None:
    pc = await enrolled_agent(desk.db, "pc-042")
    other = await enrolled_agent(desk.db, "pc-043")
    ticket = await desk.asked_for_help(pc.id)
    assert await desk.ratings.waiting(pc.id, "alice") == []  # not resolved yet
    await desk.resolve(ticket.id)

    [waiting] = await desk.ratings.waiting(pc.id, "alice")
    assert (waiting.ticket_id, waiting.title) == (ticket.id, "the printer jams")
    assert waiting.resolution.startswith("Cleared the print queue")
    assert waiting.resolved_at == desk.clock()
    assert await desk.ratings.waiting(pc.id, "bob") == []
    assert await desk.ratings.waiting(other.id, "alice") == []

    # Another user of the machine, or the same name on another machine: one refusal for both.
    for agent_id, user in ((pc.id, "bob"), (other.id, "alice")):
        with pytest.raises(NotFound, match=f"ticket #{ticket.id} is not a request of yours"):
            await desk.ratings.answer(agent_id, user, ticket.id, 5, "")
    with pytest.raises(NotFound):
        await desk.ratings.answer(pc.id, "alice", ticket.id + 1000, 5, "")
    with pytest.raises(InvalidArgument, match="from 1 \\(bad\\) to 5"):
        await desk.ratings.answer(pc.id, "alice", ticket.id, 6, "")
    with pytest.raises(InvalidArgument, match="U\\+0007"):
        await desk.ratings.answer(pc.id, "alice", ticket.id, 4, "quick\a")
    with pytest.raises(InvalidArgument, match="the limit is 2,000"):
        await desk.ratings.answer(pc.id, "alice", ticket.id, 4, "x" * 2001)

    # The name as the agent sent it is compared as it was stored: control characters dropped.
    rated = await desk.ratings.answer(pc.id, "ali\x1bce", ticket.id, 4, "quick <b>thanks</b>")
    assert (rated.ticket_id, rated.rating) == (ticket.id, 4)
    with pytest.raises(Conflict, match="rated already \\(4/5\\)"):
        await desk.ratings.answer(pc.id, "alice", ticket.id, 1, "changed my mind")
    assert await desk.ratings.waiting(pc.id, "alice") == []

    _, timeline = await desk.tickets.get(ticket.id)
    assert [(e.actor, e.body) for e in timeline if e.kind is TicketEventKind.RATED] == [
        (
            "requester",
            "Rated 4/5 by the requester on the workstation (user alice): quick <b>thanks</b>",
        )
    ]
    audited = await desk.db.read(
        lambda c: c.execute(
            select(audit_log.c.actor, audit_log.c.result)
            .where(audit_log.c.action == "ticket.rated")
            .order_by(audit_log.c.id)
        ).all()
    )
    actors = {row.actor for row in audited}
    assert actors == {f"agent:{pc.id}", f"agent:{other.id}"}
    assert [row.result for row in audited].count("ok") == 1
    report = await InterventionReports(desk.db).report(
        desk.clock() - timedelta(days=1), desk.clock() + timedelta(days=1)
    )
    assert [(row.ticket_id, row.rating) for row in report.rows] == [(ticket.id, 4)]


async def test_other_channels_are_not_asked_on_the_workstation(desk: Desk) -> None:
    pc = await enrolled_agent(desk.db)
    phoned = await desk.tickets.open(
        desk.ann, title="printer", requester="alice", agent=pc.id, channel=TicketChannel.PHONE
    )
    await desk.resolve(phoned.id)
    assert await desk.ratings.waiting(pc.id, "alice") == []
    with pytest.raises(NotFound):
        await desk.ratings.answer(pc.id, "alice", phoned.id, 5, "")
    asked_on = await desk.db.read(lambda c: c.execute(select(satisfaction.c.asked_on)).all())
    assert asked_on == []


async def test_a_reopened_ticket_waits_for_its_next_resolve_and_questions_expire(
    desk: Desk,
) -> None:
    pc = await enrolled_agent(desk.db)
    ticket = await desk.asked_for_help(pc.id)
    await desk.resolve(ticket.id)
    await desk.tickets.reopen(desk.ann, ticket.id, "it jams again")
    assert await desk.ratings.waiting(pc.id, "alice") == []
    with pytest.raises(Conflict, match="was reopened"):
        await desk.ratings.answer(pc.id, "alice", ticket.id, 2, "")

    desk.clock.advance(hours=2)
    await desk.resolve(ticket.id)
    [waiting] = await desk.ratings.waiting(pc.id, "alice")  # asked twice, listed once
    assert waiting.ticket_id == ticket.id
    await desk.ratings.answer(pc.id, "alice", ticket.id, 5, "")
    assert await desk.ratings.waiting(pc.id, "alice") == []  # its older question is not listed
    answered = await desk.db.read(
        lambda c: c.execute(select(satisfaction.c.rating).order_by(satisfaction.c.id)).all()
    )
    assert [row.rating for row in answered] == [None, 5]  # the latest question is answered

    late = await desk.asked_for_help(pc.id)
    await desk.resolve(late.id)
    desk.clock.advance(seconds=RATING_LIFETIME.total_seconds() + 1)
    assert await desk.ratings.waiting(pc.id, "alice") == []
    with pytest.raises(Conflict, match="30 days"):
        await desk.ratings.answer(pc.id, "alice", late.id, 3, "")


async def test_two_answers_at_once_store_one(desk: Desk) -> None:
    pc = await enrolled_agent(desk.db)
    ticket = await desk.asked_for_help(pc.id)
    await desk.resolve(ticket.id)
    outcomes = await asyncio.gather(
        *(desk.ratings.answer(pc.id, "alice", ticket.id, n, "") for n in (1, 2, 3, 4)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert sum(isinstance(o, Conflict) for o in outcomes) == 3
    _, timeline = await desk.tickets.get(ticket.id)
    assert len([e for e in timeline if e.kind is TicketEventKind.RATED]) == 1
