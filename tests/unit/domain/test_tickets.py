from __future__ import annotations

from datetime import timedelta

import pytest

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_categories import TicketCategories
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketLevel,
    TicketOutcome,
    TicketPriority,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.tickets import Tickets
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from tests.unit.domain.builders import T0, Clock, enrolled_agent, technician
from tests.unit.domain.test_diagnostics import (
    a_snapshot,
    desk,
    queued,
    snapshot_result,
    some_findings,
)

SPENT = timedelta(minutes=15)  # the time a resolve logs


async def test_full_lifecycle_and_timeline(db: Database) -> None:
    clock = Clock()
    tickets = Tickets(db, clock)
    ann = await technician(db, "ann", Role.L1)
    bob = await technician(db, "bob", Role.L2)
    agent = await enrolled_agent(db, "PC-042")
    tree = TicketCategories(db, AuditedWrites(db, clock), clock)
    await tree.add(bob, "office", "Office")
    await tree.add(bob, "office/outlook", "Outlook")

    ticket = await tickets.open(
        ann,
        title="Outlook freezes",
        description="Since this morning",
        channel=TicketChannel.PHONE,
        requester="Jane Doe",
        priority=TicketPriority.P2,
        agent=agent.id,
        category="office/outlook",
    )
    assert (ticket.status, ticket.level, ticket.agent_hostname) == (
        TicketStatus.NEW,
        TicketLevel.L1,
        "PC-042",
    )
    assert (ticket.response_due_at, ticket.resolve_due_at) == (
        T0 + timedelta(hours=4),
        T0 + timedelta(hours=8),
    )
    assert ticket.first_response_at is None

    clock.advance(minutes=5)
    ticket = await tickets.assign(ann, ticket.id)
    assert (ticket.assignee, ticket.status, ticket.first_response_at) == (
        "ann",
        TicketStatus.IN_PROGRESS,
        clock.now,
    )
    ticket, comment = await tickets.comment(ann, ticket.id, "Asked the user to restart.")
    assert comment.kind is TicketEventKind.COMMENT
    assert comment.body == "Asked the user to restart."
    ticket = (
        await tickets.escalate(ann, ticket.id, "Needs a mailbox repair", assignee="bob")
    ).ticket
    assert (ticket.level, ticket.assignee, ticket.status) == (
        TicketLevel.L2,
        "bob",
        TicketStatus.IN_PROGRESS,
    )
    ticket = await tickets.set_status(bob, ticket.id, TicketStatus.WAITING, "waiting for the user")
    clock.advance(minutes=30)
    ticket = await tickets.resolve(
        bob, ticket.id, "Repaired the OST file", outcome=TicketOutcome.FIXED, time_spent=SPENT
    )
    assert (ticket.status, ticket.resolution, ticket.resolved_at) == (
        TicketStatus.RESOLVED,
        "Repaired the OST file",
        clock.now,
    )
    ticket = await tickets.reopen(ann, ticket.id, "It froze again")
    assert (ticket.status, ticket.resolution, ticket.resolved_at) == (
        TicketStatus.IN_PROGRESS,
        "",
        None,
    )
    ticket = await tickets.resolve(
        bob, ticket.id, "Rebuilt the profile", outcome=TicketOutcome.FIXED, time_spent=SPENT
    )
    ticket = await tickets.close(bob, ticket.id)
    assert ticket.status is TicketStatus.CLOSED
    assert ticket.closed_at == clock.now

    stored, timeline = await tickets.get(ticket.id)
    assert stored == ticket
    assert [(e.kind.value, e.actor) for e in timeline] == [
        ("opened", "ann"),
        ("assigned", "ann"),
        ("comment", "ann"),
        ("escalated", "ann"),
        ("status_changed", "bob"),
        ("resolved", "bob"),
        ("reopened", "ann"),
        ("resolved", "bob"),
        ("closed", "bob"),
    ]
    assert timeline[3].body == "Needs a mailbox repair"
    assert timeline[3].assignee == "bob"
    assert (timeline[4].from_status, timeline[4].to_status) == (
        TicketStatus.IN_PROGRESS,
        TicketStatus.WAITING,
    )
    assert [e.id for e in timeline] == sorted(e.id for e in timeline)


async def test_illegal_transitions_say_what_is_allowed(db: Database) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L2)
    ticket = await tickets.open(ann, title="Printer")
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is new: only a resolved or closed"):
        await tickets.reopen(ann, ticket.id, "why")
    with pytest.raises(InvalidArgument, match="closing it needs a note"):
        await tickets.close(ann, ticket.id)
    await tickets.close(ann, ticket.id, "duplicate of 3", outcome=TicketOutcome.DUPLICATE)
    for action in (
        tickets.comment(ann, ticket.id, "hello"),
        tickets.assign(ann, ticket.id),
        tickets.escalate(ann, ticket.id, "x"),
        tickets.resolve(ann, ticket.id, "x", outcome=TicketOutcome.FIXED, time_spent=SPENT),
    ):
        with pytest.raises(Conflict, match=f"ticket {ticket.id} is closed: reopen it first"):
            await action
    with pytest.raises(Conflict, match="already closed"):
        await tickets.close(ann, ticket.id, "again", outcome=TicketOutcome.DUPLICATE)
    ticket = await tickets.reopen(ann, ticket.id, "not a duplicate after all")
    ticket = await tickets.resolve(
        ann, ticket.id, "done", outcome=TicketOutcome.FIXED, time_spent=SPENT
    )
    with pytest.raises(Conflict, match="is resolved: reopen it before you resolve it"):
        await tickets.resolve(
            ann, ticket.id, "again", outcome=TicketOutcome.FIXED, time_spent=SPENT
        )
    ticket = await tickets.reopen(ann, ticket.id, "again")
    await tickets.escalate(ann, ticket.id, "hard")
    with pytest.raises(Conflict, match="already at L2"):
        await tickets.escalate(ann, ticket.id, "harder")


async def test_l1_may_comment_on_an_l2_ticket_but_not_resolve_or_close_it(db: Database) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L1)
    ticket = await tickets.open(ann, title="VPN")
    await tickets.escalate(ann, ticket.id, "needs network team")
    await tickets.comment(ann, ticket.id, "user called again")
    with pytest.raises(
        PermissionDenied,
        match="escalated to L2: an L1 technician may comment on it but not resolve",
    ):
        await tickets.resolve(
            ann, ticket.id, "fixed", outcome=TicketOutcome.FIXED, time_spent=SPENT
        )
    with pytest.raises(PermissionDenied, match="but not close it"):
        await tickets.close(ann, ticket.id, "gone", outcome=TicketOutcome.DUPLICATE)
    with pytest.raises(InvalidArgument, match="ann is l1"):
        await tickets.assign(ann, ticket.id, "ann")


async def test_bad_input_is_refused(db: Database) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L1)
    with pytest.raises(InvalidArgument, match="the title is required"):
        await tickets.open(ann, title="   ")
    with pytest.raises(InvalidArgument, match="the title is 201 characters long; the limit is 200"):
        await tickets.open(ann, title="x" * 201)
    with pytest.raises(InvalidArgument, match="control character U\\+001B"):
        await tickets.open(ann, title="red \x1b[31m alert")
    with pytest.raises(InvalidArgument, match="10,001 characters"):
        await tickets.open(ann, title="ok", description="x" * 10_001)
    with pytest.raises(NotFound, match="no user named 'zed'"):
        await tickets.open(ann, title="ok", assignee="zed")
    with pytest.raises(NotFound, match="no agent"):
        await tickets.open(ann, title="ok", agent="a" * 26)
    with pytest.raises(NotFound, match="no snapshot with id 9"):
        await tickets.open(ann, title="ok", snapshot_id=9)
    ticket = await tickets.open(ann, title="ok", description="line one\nline two\ttabbed")
    with pytest.raises(InvalidArgument, match="the comment is required"):
        await tickets.comment(ann, ticket.id, "")
    with pytest.raises(InvalidArgument, match="the resolution note is required"):
        await tickets.resolve(ann, ticket.id, " ", outcome=TicketOutcome.FIXED, time_spent=SPENT)
    with pytest.raises(NotFound, match="no ticket 999"):
        await tickets.get(999)
    with pytest.raises(NotFound, match="no ticket 999"):
        await tickets.comment(ann, 999, "x")
    with pytest.raises(NotFound, match="no user named 'zed'"):
        await tickets.assign(ann, ticket.id, "zed")
    await technician(db, "cy", Role.L1)
    with pytest.raises(InvalidArgument, match="goes to an l2 technician or an admin; cy is l1"):
        await tickets.escalate(ann, ticket.id, "x", assignee="cy")


async def test_open_with_a_snapshot_links_it(db: Database) -> None:
    clock = Clock()
    ann = await technician(db, "ann")
    agent = await enrolled_agent(db)
    d = desk(db, clock)
    command_id = await queued(d, ann, agent.id)
    await d.commands.claim_due(agent.id, "s1", resend_delivered=True)
    accepted = await d.diagnostics.accept_result(
        agent.id, snapshot_result(command_id, a_snapshot()), some_findings(), T0
    )
    assert accepted.stored is not None
    snapshot_id = accepted.stored.summary.id
    diagnostics = d.diagnostics
    tickets = Tickets(db, clock)
    ticket = await tickets.open(ann, title="Disk full", snapshot_id=snapshot_id, assignee="ann")
    assert ticket.agent_id == agent.id
    assert ticket.status is TicketStatus.IN_PROGRESS
    _, timeline = await tickets.get(ticket.id)
    assert [e.kind for e in timeline] == [TicketEventKind.OPENED, TicketEventKind.DIAGNOSTIC]
    assert timeline[1].snapshot is not None
    assert len(timeline[1].findings) == 2
    assert (await diagnostics.get_snapshot(snapshot_id)).summary.ticket_id == ticket.id
    other = await enrolled_agent(db, "pc-other")
    with pytest.raises(InvalidArgument, match="is of agent"):
        await tickets.open(ann, title="x", snapshot_id=snapshot_id, agent=other.id)


async def test_list_filters(db: Database) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L1)
    bob = await technician(db, "bob", Role.L2)
    agent = await enrolled_agent(db)
    low = await tickets.open(ann, title="low", priority=TicketPriority.P4)
    urgent = await tickets.open(ann, title="urgent", priority=TicketPriority.P1, agent=agent.id)
    mine = await tickets.open(ann, title="mine", assignee="ann")
    escalated = await tickets.open(ann, title="hard")
    await tickets.escalate(ann, escalated.id, "hard", assignee="bob")
    closed = await tickets.open(ann, title="closed")
    await tickets.close(bob, closed.id, "spam", outcome=TicketOutcome.DUPLICATE)

    def ids(found: list[TicketRecord]) -> list[int]:
        return [t.id for t in found]

    assert ids(await tickets.list()) == [urgent.id, mine.id, escalated.id, low.id]
    assert closed.id in ids(await tickets.list(include_closed=True))
    assert ids(await tickets.list(statuses=[TicketStatus.CLOSED])) == [closed.id]
    assert ids(await tickets.list(statuses=[TicketStatus.NEW])) == [urgent.id, low.id]
    assert ids(await tickets.list(statuses=[TicketStatus.IN_PROGRESS])) == [mine.id, escalated.id]
    assert ids(await tickets.list(level=TicketLevel.L2)) == [escalated.id]
    assert ids(await tickets.list(assignee="ann")) == [mine.id]
    assert ids(await tickets.list(agent_id=agent.id)) == [urgent.id]
    assert ids(await tickets.list(limit=2)) == [urgent.id, mine.id]
    with pytest.raises(InvalidArgument, match="limit must be from 1 to 1000"):
        await tickets.list(limit=0)
    with pytest.raises(NotFound, match="no user named 'zed'"):
        await tickets.list(assignee="zed")
