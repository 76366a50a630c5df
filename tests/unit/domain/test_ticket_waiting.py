"""Waiting on the requester (wait, resume, the paused resolve clock) and what escalation does
to the assignee, on SQLite and PostgreSQL (the `db` fixture)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from sonde.server.domain import sla
from sonde.server.domain.commands import CommandKind
from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_model import (
    TicketEventKind,
    TicketLevel,
    TicketOutcome,
    TicketStatus,
)
from sonde.server.domain.tickets import Tickets
from sonde.server.errors import Conflict, InvalidArgument
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, commands
from tests.unit.domain.builders import T0, Clock, enrolled_agent, technician
from tests.unit.domain.test_diagnostics import (
    a_snapshot,
    delivered,
    desk,
    snapshot_result,
    some_findings,
)

SPENT = timedelta(minutes=15)  # the time a resolve logs


async def _audited(db: Database, action: str) -> list[tuple[str, str]]:
    query = select(audit_log.c.actor, audit_log.c.result).where(audit_log.c.action == action)
    rows = await db.read(lambda connection: connection.execute(query).all())
    return [(row.actor, row.result) for row in rows]


async def test_wait_then_resume_returns_to_the_status_it_had_and_pauses_the_clock(
    db: Database,
) -> None:
    clock = Clock()
    tickets = Tickets(db, clock)
    ann = await technician(db, "ann")
    opened = await tickets.open(ann, title="Scanner offline", assignee="ann")
    assert opened.resolve_due_at == T0 + timedelta(days=3)

    clock.advance(minutes=10)
    waiting = await tickets.wait(ann, opened.id, "The user sends the scanner's model number")
    assert waiting.status is TicketStatus.WAITING
    clock.advance(hours=5)
    resumed = await tickets.resume(ann, opened.id, "Model number came by mail")
    assert resumed.ticket.status is TicketStatus.IN_PROGRESS
    assert resumed.waited == timedelta(hours=5)
    assert resumed.ticket.resolve_due_at == T0 + timedelta(days=3, hours=5)

    ticket, timeline = await tickets.get(opened.id)
    assert ticket == resumed.ticket
    wait, back = timeline[-2:]
    assert (wait.kind, wait.actor, wait.body, wait.from_status, wait.to_status) == (
        TicketEventKind.WAITING,
        "ann",
        "The user sends the scanner's model number",
        TicketStatus.IN_PROGRESS,
        TicketStatus.WAITING,
    )
    assert (back.kind, back.body, back.from_status, back.to_status, back.at) == (
        TicketEventKind.RESUMED,
        "Model number came by mail",
        TicketStatus.WAITING,
        TicketStatus.IN_PROGRESS,
        clock.now,
    )
    assert await _audited(db, "ticket.wait") == [("ann", "ok")]
    assert await _audited(db, "ticket.resume") == [("ann", "ok")]


async def test_a_new_ticket_resumes_new_and_waiting_counts_as_the_first_response(
    db: Database,
) -> None:
    clock = Clock()
    tickets = Tickets(db, clock)
    ann = await technician(db, "ann")
    opened = await tickets.open(ann, title="Password reset")
    clock.advance(minutes=3)
    waiting = await tickets.wait(ann, opened.id, "The user is in a meeting")
    assert waiting.first_response_at == clock.now
    resumed = await tickets.resume(ann, opened.id)
    assert resumed.ticket.status is TicketStatus.NEW
    assert resumed.waited == timedelta(0)
    assert resumed.ticket.resolve_due_at == opened.resolve_due_at


async def test_wait_and_resume_refuse_the_wrong_status_saying_why(db: Database) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann")
    ticket = await tickets.open(ann, title="VPN")
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is new, not waiting: only a waiting"):
        await tickets.resume(ann, ticket.id)
    with pytest.raises(InvalidArgument, match="the reason for waiting"):
        await tickets.wait(ann, ticket.id, "  ")
    await tickets.wait(ann, ticket.id, "user away")
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is already waiting: resume it"):
        await tickets.wait(ann, ticket.id, "still away")
    # Withdrawn by the requester: a record that closes without a category or a machine.
    await tickets.resolve(
        ann, ticket.id, "fixed itself", outcome=TicketOutcome.CANCELLED, time_spent=SPENT
    )
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is resolved: reopen it before"):
        await tickets.wait(ann, ticket.id, "x")
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is resolved, not waiting"):
        await tickets.resume(ann, ticket.id)
    await tickets.close(ann, ticket.id)
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is closed: reopen it first"):
        await tickets.wait(ann, ticket.id, "x")
    refused = [result for _, result in await _audited(db, "ticket.wait") if result != "ok"]
    assert len(refused) == 4  # the empty reason, already waiting, resolved, closed


async def test_resolving_a_waiting_ticket_ends_the_pause(db: Database) -> None:
    clock = Clock()
    tickets = Tickets(db, clock)
    ann = await technician(db, "ann")
    ticket = await tickets.open(ann, title="Printer")
    await tickets.wait(ann, ticket.id, "toner on order")
    clock.advance(days=4)  # past the 3 days of a P3, all of it waiting
    resolved = await tickets.resolve(
        ann, ticket.id, "toner replaced", outcome=TicketOutcome.FIXED, time_spent=SPENT
    )
    assert resolved.resolve_due_at == T0 + timedelta(days=7)
    assert not sla.resolve_breached(resolved.resolve_due_at, resolved.resolved_at, clock.now)


def test_a_waiting_ticket_is_judged_as_of_when_it_began_to_wait() -> None:
    due = T0 + timedelta(hours=4)
    later = due + timedelta(hours=10)
    assert sla.resolve_breached(due, None, later)
    assert not sla.resolve_breached(due, None, later, waiting_since=due - timedelta(minutes=1))
    assert sla.resolve_breached(due, None, later, waiting_since=due + timedelta(minutes=1))
    assert sla.paused_due(due, T0, T0 + timedelta(hours=2)) == due + timedelta(hours=2)
    assert sla.paused_due(due, T0, T0 - timedelta(hours=2)) == due  # a clock step back


async def test_escalation_hands_the_ticket_over_and_says_who_had_it(db: Database) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L1)
    await technician(db, "bob", Role.L2)
    ticket = await tickets.open(ann, title="Mailbox", assignee="ann")
    escalation = await tickets.escalate(ann, ticket.id, "needs a mailbox repair")
    assert escalation.previous_assignee == "ann"
    assert (escalation.ticket.level, escalation.ticket.assignee, escalation.ticket.status) == (
        TicketLevel.L2,
        None,
        TicketStatus.NEW,
    )
    await tickets.assign(ann, ticket.id, "bob")
    _, timeline = await tickets.get(ticket.id)
    assert [(e.kind, e.assignee, e.previous_assignee) for e in timeline] == [
        (TicketEventKind.OPENED, "ann", None),
        (TicketEventKind.ESCALATED, None, "ann"),
        (TicketEventKind.ASSIGNED, "bob", None),
    ]


async def test_escalation_keeps_an_l2_assignee_when_asked_and_refuses_to_keep_an_l1_one(
    db: Database,
) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L1)
    bob = await technician(db, "bob", Role.L2)
    kept = await tickets.open(ann, title="Laptop dock", assignee="bob")
    await tickets.wait(bob, kept.id, "dock on its way")
    escalation = await tickets.escalate(bob, kept.id, "firmware", keep_assignee=True)
    assert escalation.previous_assignee == "bob"
    assert (escalation.ticket.assignee, escalation.ticket.status) == ("bob", TicketStatus.WAITING)
    assert (await tickets.resume(bob, kept.id)).ticket.status is TicketStatus.IN_PROGRESS

    l1_held = await tickets.open(ann, title="VPN", assignee="ann")
    with pytest.raises(InvalidArgument, match="goes to an l2 technician or an admin; ann is l1"):
        await tickets.escalate(ann, l1_held.id, "network team", keep_assignee=True)
    unassigned = await tickets.open(ann, title="Wi-Fi")
    with pytest.raises(InvalidArgument, match=f"ticket {unassigned.id} has no assignee to keep"):
        await tickets.escalate(ann, unassigned.id, "x", keep_assignee=True)
    with pytest.raises(InvalidArgument, match="not both"):
        await tickets.escalate(ann, unassigned.id, "x", "bob", keep_assignee=True)
    assert (await tickets.ticket(l1_held.id)).level is TicketLevel.L1


async def test_the_timeline_names_each_diagnostics_machine(db: Database) -> None:
    clock = Clock()
    d = desk(db, clock)
    agent = await enrolled_agent(db, "PC-042")
    ann = await technician(db, "ann")
    ticket = await Tickets(db, clock).open(ann, title="Slow PC", agent=agent.id)
    command_id = await delivered(d, ann, agent.id, ticket.id)
    await d.diagnostics.accept_result(
        agent.id, snapshot_result(command_id, a_snapshot()), some_findings(), T0
    )
    _, timeline = await Tickets(db, clock).get(ticket.id)
    summary = timeline[-1].snapshot
    assert summary is not None
    assert (summary.agent_id, summary.agent_hostname) == (agent.id, "PC-042")


async def _commands_queued(db: Database) -> int:
    query = select(func.count()).select_from(commands)
    return int(await db.read(lambda connection: connection.execute(query).scalar_one()))


async def test_a_diagnostic_for_a_closed_ticket_or_another_machines_is_refused_unqueued(
    db: Database,
) -> None:
    clock = Clock()
    d = desk(db, clock)
    tickets = Tickets(db, clock)
    ann = await technician(db, "ann")
    pc42 = await enrolled_agent(db, "PC-042")
    pc43 = await enrolled_agent(db, "PC-043")
    about_42 = await tickets.open(ann, title="Slow PC", agent=pc42.id)
    closed = await tickets.open(ann, title="Old", agent=pc43.id)
    await tickets.close(ann, closed.id, "duplicate", outcome=TicketOutcome.DUPLICATE)
    no_machine = await tickets.open(ann, title="Someone's PC")

    with pytest.raises(
        InvalidArgument,
        match=f"ticket {about_42.id} is about PC-042 \\({pc42.id}\\), not PC-043 \\({pc43.id}\\)",
    ):
        await d.commands.queue(ann, pc43.id, CommandKind.COLLECT, ticket_id=about_42.id)
    with pytest.raises(Conflict, match=f"ticket {closed.id} is closed: reopen it first"):
        await d.commands.queue(ann, pc43.id, CommandKind.COLLECT, ticket_id=closed.id)
    assert await _commands_queued(db) == 0
    refusals = [result for _, result in await _audited(db, "diagnostics.run")]
    assert len(refusals) == 2
    assert "ok" not in refusals

    await d.commands.queue(ann, pc42.id, CommandKind.COLLECT, ticket_id=about_42.id)
    await d.commands.queue(ann, pc43.id, CommandKind.COLLECT, ticket_id=no_machine.id)
    resolved = await tickets.resolve(
        ann, about_42.id, "rebooted", outcome=TicketOutcome.FIXED, time_spent=SPENT
    )
    await d.commands.queue(ann, pc42.id, CommandKind.COLLECT, ticket_id=resolved.id)
    assert await _commands_queued(db) == 3
