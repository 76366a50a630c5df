"""A retired machine (`sonde agents remove`) is said to be removed wherever its tickets and
diagnostics are read: the ticket (got, listed, commented on), its timeline's diagnostic and
the stored snapshot; another machine's are not. On SQLite and PostgreSQL."""

from __future__ import annotations

from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.tickets import Tickets
from sonde.server.storage.db import Database
from tests.unit.domain.builders import SETUP_ADMIN, T0, Clock, enrolled_agent, technician
from tests.unit.domain.test_diagnostics import (
    RECEIVED,
    a_snapshot,
    delivered,
    desk,
    snapshot_result,
    some_findings,
)


async def test_a_removed_machines_tickets_and_diagnostics_say_so(db: Database) -> None:
    clock = Clock()
    d = desk(db, clock)
    tickets = Tickets(db, clock)
    ann = await technician(db, "ann")
    retired, kept = await enrolled_agent(db, "pc-old"), await enrolled_agent(db, "pc-new")
    opened = {}
    snapshot_ids = {}
    for agent in (retired, kept):
        ticket = await tickets.open(ann, title=f"Slow {agent.hostname}", agent=agent.id)
        command_id = await delivered(d, ann, agent.id, ticket.id)
        accepted = await d.diagnostics.accept_result(
            agent.id, snapshot_result(command_id, a_snapshot()), some_findings(), RECEIVED
        )
        assert accepted.stored is not None
        opened[agent.id] = ticket.id
        snapshot_ids[agent.id] = accepted.stored.summary.id
    before, _ = await tickets.get(opened[retired.id])
    assert not before.agent_removed

    await AgentRegistry(db).remove(SETUP_ADMIN, retired.id, "sold", T0)

    for agent, removed in ((retired, True), (kept, False)):
        ticket, timeline = await tickets.get(opened[agent.id])
        assert (ticket.agent_hostname, ticket.agent_removed) == (agent.hostname, removed)
        diagnostic = next(e for e in timeline if e.kind is TicketEventKind.DIAGNOSTIC)
        assert diagnostic.snapshot is not None
        assert diagnostic.snapshot.agent_removed is removed
        stored = await d.diagnostics.get_snapshot(snapshot_ids[agent.id])
        assert (stored.summary.agent_hostname, stored.summary.agent_removed) == (
            agent.hostname,
            removed,
        )
        commented, _ = await tickets.comment(ann, ticket.id, "called the user")
        assert commented.agent_removed is removed
    listed = {ticket.id: ticket.agent_removed for ticket in await tickets.list()}
    assert listed == {opened[retired.id]: True, opened[kept.id]: False}
    page = await tickets.page(agent_id=retired.id)
    assert [ticket.agent_removed for ticket in page.tickets] == [True]
    machineless = await tickets.open(ann, title="New starter needs an account")
    assert not machineless.agent_removed
    assert not (await tickets.get(machineless.id))[0].agent_removed
