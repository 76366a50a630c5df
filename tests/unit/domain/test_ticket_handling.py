"""Between intake and closure (ticket_categories.py, ticket_handling.py, ticket_queue.py,
ticket_closure.py): the category tree, details set and confirmed at L2, the queue SLA at risk
first, take and hand-back, the time spent, and what a close refuses."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.intervention_report import InterventionReports
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.ticket_categories import TicketCategories
from sonde.server.domain.ticket_handling import TicketHandling
from sonde.server.domain.ticket_model import (
    TicketKind,
    TicketLevel,
    TicketOutcome,
    TicketPriority,
    TicketStatus,
)
from sonde.server.domain.ticket_queue import SlaState, TicketQueue
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log
from tests.unit.domain.builders import Clock, enrolled_agent, technician


class Desk:
    def __init__(self, db: Database, clock: Clock) -> None:
        writes = AuditedWrites(db, clock)
        self.db = db
        self.clock = clock
        self.tickets = Tickets(db, clock, writes=writes)
        self.handling = TicketHandling(db, writes, clock)
        self.tree = TicketCategories(db, writes, clock)
        self.queue = TicketQueue(db, clock)


@pytest.fixture
async def desk(db: Database) -> Desk:
    return Desk(db, Clock())


async def _people(db: Database) -> tuple[Principal, Principal, Principal]:
    return (
        await technician(db, "ann", Role.L1),
        await technician(db, "bob", Role.L2),
        await technician(db, "root", Role.ADMIN),
    )


async def _actions(db: Database) -> list[tuple[str, str]]:
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log.c.action, audit_log.c.result).order_by(audit_log.c.id)
        ).all()
    )
    return [(row.action, row.result) for row in rows]


async def test_the_tree_grows_from_its_parents_and_refuses_bad_paths(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await desk.tree.add(root, "Printing", "Printing")  # normalised to lower case
    added = await desk.tree.add(root, "/printing/spooler/", "Spooler and queues")
    assert (added.path, added.parent) == ("printing/spooler", "printing")
    for path, said in [
        ("network/wifi", "add 'network' first"),
        ("printing", "exists already"),
        ("printing/../pki", "is not a category name"),
        ("printing/with space", "is not a category name"),
        ("a/b/c/d/e", "5 levels deep; at most 4"),
        ("", "a category is a path"),
        ("x" * 41, "is not a category name"),
        ("printing/-spooler", "is not a category name"),
    ]:
        with pytest.raises((InvalidArgument, NotFound, Conflict), match=said):
            await desk.tree.add(root, path, "t")
    with pytest.raises(InvalidArgument, match="the title is required"):
        await desk.tree.add(root, "network", " ")
    assert [c.path for c in await desk.tree.list()] == ["printing", "printing/spooler"]

    ticket = await desk.tickets.open(ann, title="no print", category="printing/spooler")
    assert ticket.category == "printing/spooler"
    retired = await desk.tree.retire(root, "printing")
    assert retired.retired_at == desk.clock.now
    assert await desk.tree.list() == []  # both retired: the child with its parent
    assert len(await desk.tree.list(include_retired=True)) == 2
    kept = await desk.tickets.ticket(ticket.id)
    assert kept.category == "printing/spooler"  # the ticket keeps it
    with pytest.raises(Conflict, match="the category 'printing/spooler' is retired"):
        await desk.tickets.open(ann, title="again", category="printing/spooler")
    with pytest.raises(NotFound, match="no category 'network': an admin adds it"):
        await desk.handling.set_details(ann, ticket.id, category="network")
    actions = await _actions(desk.db)
    assert actions.count(("category.add", "ok")) == 2
    assert ("category.retire", "ok") in actions
    assert (
        "category.add",
        "refused: NotFound: add 'network' first: 'network/wifi' goes under it",
    ) in actions


async def test_l1_sets_the_nature_on_intake_and_l2_confirms_or_corrects_it(desk: Desk) -> None:
    ann, bob, root = await _people(desk.db)
    for path in ("printing", "network", "network/vpn"):
        await desk.tree.add(root, path, path.title())
    agent = await enrolled_agent(desk.db, "PC-042")
    ticket = await desk.tickets.open(ann, title="cannot reach the intranet")
    assert (ticket.kind, ticket.category) == (TicketKind.INCIDENT, None)
    ticket = await desk.handling.set_details(
        ann, ticket.id, category="network", requester="Marie Curie", agent="pc-04"
    )
    assert (ticket.category, ticket.requester, ticket.agent_id) == (
        "network",
        "Marie Curie",
        agent.id,
    )
    assert ticket.agent_hostname == "PC-042"
    assert ticket.category_confirmed_by is None  # L1 set it: nobody confirmed it
    with pytest.raises(Conflict, match="has these details already"):
        await desk.handling.set_details(ann, ticket.id, category="network")

    await desk.tickets.escalate(ann, ticket.id, "VPN concentrator")
    with pytest.raises(PermissionDenied, match="its kind and category are L2's"):
        await desk.handling.set_details(ann, ticket.id, category="printing")
    # L1 may still fix the requester on an escalated ticket.
    await desk.handling.set_details(ann, ticket.id, requester="Marie Curie-Sklodowska")

    taken = await desk.handling.take(bob, ticket.id, category="network/vpn")
    assert (taken.assignee, taken.status, taken.category) == (
        "bob",
        TicketStatus.IN_PROGRESS,
        "network/vpn",
    )
    assert taken.category_confirmed_by == "bob"
    _, timeline = await desk.tickets.get(ticket.id)
    assert timeline[-1].body == "category network/vpn (was network)"
    confirmed = await desk.handling.set_details(bob, ticket.id, category="network/vpn")
    assert confirmed.category_confirmed_by == "bob"
    _, timeline = await desk.tickets.get(ticket.id)
    assert timeline[-1].body == "category network/vpn confirmed"

    back = await desk.handling.hand_back(bob, ticket.id, "a proxy setting on the PC: L1's")
    assert (back.level, back.assignee, back.status) == (
        TicketLevel.L1,
        "ann",
        TicketStatus.IN_PROGRESS,
    )
    moved = await desk.handling.set_details(ann, ticket.id, category="printing")
    assert moved.category_confirmed_by is None  # L2 confirmed another category
    kinded = await desk.handling.set_details(ann, ticket.id, kind=TicketKind.SERVICE_REQUEST)
    assert kinded.kind is TicketKind.SERVICE_REQUEST
    with pytest.raises(InvalidArgument, match="say what to set"):
        await desk.handling.set_details(ann, ticket.id)


async def test_take_gives_a_ticket_to_one_technician_and_says_who_has_it(desk: Desk) -> None:
    ann, bob, _ = await _people(desk.db)
    cy = await technician(desk.db, "cy", Role.L1)
    ticket = await desk.tickets.open(ann, title="printer jam")
    results = await asyncio.gather(
        desk.handling.take(ann, ticket.id),
        desk.handling.take(cy, ticket.id),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert len(lost) == 1
    assert isinstance(lost[0], Conflict)
    assert f"{won[0].assignee} has ticket {ticket.id}" in str(lost[0])
    winner = ann if won[0].assignee == "ann" else cy
    with pytest.raises(Conflict, match="you have ticket"):
        await desk.handling.take(winner, ticket.id)

    escalated = await desk.tickets.open(ann, title="domain trust broken")
    await desk.tickets.escalate(ann, escalated.id, "AD")
    with pytest.raises(PermissionDenied, match="waits in the L2 queue"):
        await desk.handling.take(cy, escalated.id)
    with pytest.raises(InvalidArgument, match="--category on take is L2's confirmation"):
        await desk.handling.take(ann, (await desk.tickets.open(ann, title="x")).id, category="a")
    await desk.handling.take(bob, escalated.id)
    await desk.tickets.resolve(
        bob, escalated.id, "rejoined", outcome=TicketOutcome.FIXED, time_spent=timedelta(1 / 24)
    )
    with pytest.raises(Conflict, match="is resolved: reopen it before you take it"):
        await desk.handling.take(cy, escalated.id)


async def test_hand_back_goes_to_the_l1_who_escalated_or_to_the_queue(desk: Desk) -> None:
    ann, bob, root = await _people(desk.db)
    dee = await technician(desk.db, "dee", Role.L1)
    ticket = await desk.tickets.open(dee, title="Teams crashes")
    await desk.tickets.escalate(dee, ticket.id, "crash dump needed", assignee="bob")
    with pytest.raises(InvalidArgument, match="the note is required"):
        await desk.handling.hand_back(bob, ticket.id, " ")
    with pytest.raises(PermissionDenied, match="handing a ticket back to L1 is L2's"):
        await desk.handling.hand_back(ann, ticket.id, "mine now")
    await Users(desk.db).disable(root, "dee")  # left the team
    back = await desk.handling.hand_back(bob, ticket.id, "clear the Teams cache: a procedure")
    assert (back.level, back.assignee, back.status) == (TicketLevel.L1, None, TicketStatus.NEW)
    with pytest.raises(Conflict, match="is at L1: only an escalated one goes back"):
        await desk.handling.hand_back(bob, ticket.id, "again")
    _, timeline = await desk.tickets.get(ticket.id)
    assert timeline[-1].body == "clear the Teams cache: a procedure"


async def test_time_spent_adds_up_within_bounds(desk: Desk) -> None:
    ann, _, _ = await _people(desk.db)
    ticket = await desk.tickets.open(ann, title="slow PC")
    for spent, said in [
        (timedelta(0), "more than nothing"),
        (timedelta(seconds=-60), "more than nothing"),
        (timedelta(hours=25), "more than a day"),
    ]:
        with pytest.raises(InvalidArgument, match=said):
            await desk.handling.log_time(ann, ticket.id, spent)
    await desk.handling.log_time(ann, ticket.id, timedelta(minutes=20), "called the user")
    logged = await desk.handling.log_time(ann, ticket.id, timedelta(hours=1, minutes=5))
    assert logged.time_spent_s == 85 * 60
    _, timeline = await desk.tickets.get(ticket.id)
    assert [e.body for e in timeline[-2:]] == ["20 min: called the user", "1 h 05 min"]
    resolved = await desk.tickets.resolve(
        ann, ticket.id, "RAM added", outcome=TicketOutcome.HARDWARE_REPLACED,
        time_spent=timedelta(minutes=15),
    )  # fmt: skip
    assert resolved.time_spent_s == 100 * 60


async def test_close_lists_everything_the_record_lacks(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    ticket = await desk.tickets.open(ann, title="no sound")
    await desk.tickets.resolve(
        ann, ticket.id, "driver", outcome=TicketOutcome.FIXED, time_spent=timedelta(minutes=5)
    )
    with pytest.raises(Conflict) as refused:
        await desk.tickets.close(ann, ticket.id)
    said = str(refused.value)
    assert said.startswith(f"ticket {ticket.id} cannot close, its record lacks: a category")
    assert "the requester" in said
    assert "the machine, for an incident" in said
    assert "time spent" not in said
    with pytest.raises(Conflict, match="was resolved as fixed: reopen it"):
        await desk.tickets.close(ann, ticket.id, outcome=TicketOutcome.DUPLICATE)
    # A service request needs no machine.
    await desk.tree.add(root, "audio", "Audio")
    await desk.handling.set_details(
        ann, ticket.id, category="audio", requester="Jo", kind=TicketKind.SERVICE_REQUEST
    )
    closed = await desk.tickets.close(ann, ticket.id)
    assert (closed.status, closed.outcome) == (TicketStatus.CLOSED, TicketOutcome.FIXED)

    spam = await desk.tickets.open(ann, title="WIN A PRIZE")
    with pytest.raises(Conflict, match="an outcome"):
        await desk.tickets.close(ann, spam.id, "spam")
    gone = await desk.tickets.close(ann, spam.id, "spam", outcome=TicketOutcome.CANCELLED)
    assert gone.outcome is TicketOutcome.CANCELLED  # never worked: nothing more asked
    with pytest.raises(Conflict, match="closed: its record is final"):
        await desk.handling.log_time(ann, spam.id, timedelta(minutes=1))


async def test_the_queue_puts_breached_then_at_risk_first(desk: Desk) -> None:
    ann, _, _ = await _people(desk.db)
    # Opened in turn, an hour apart (P3: 8 h to answer, 3 days to resolve; P1: 1 h and 4 h).
    old = await desk.tickets.open(ann, title="old P3", priority=TicketPriority.P3)
    desk.clock.advance(hours=1)
    urgent = await desk.tickets.open(ann, title="P1 down", priority=TicketPriority.P1)
    answered = await desk.tickets.open(ann, title="answered P1", priority=TicketPriority.P1)
    await desk.handling.take(ann, answered.id)
    waiting = await desk.tickets.open(ann, title="waits", priority=TicketPriority.P2)
    await desk.tickets.wait(ann, waiting.id, "user away")
    l2 = await desk.tickets.open(ann, title="at L2", priority=TicketPriority.P4)
    await desk.tickets.escalate(ann, l2.id, "AD", assignee="bob")
    desk.clock.advance(hours=3, minutes=30)
    queue = await desk.queue.list()
    order = [(entry.ticket.title, entry.sla) for entry in queue.tickets]
    assert order == [
        ("P1 down", SlaState.BREACHED),  # no answer within its hour
        ("answered P1", SlaState.AT_RISK),  # 3.5 h of its 4 h to resolve gone
        ("old P3", SlaState.OK),  # next due: its answer, at 8 h
        ("waits", SlaState.PAUSED),  # answered (the wait is an action); resolve clock stands
        ("at L2", SlaState.OK),  # 5 days to resolve
    ]
    first = queue.tickets[0]
    assert first.due_at == urgent.response_due_at
    assert queue.tickets[1].share_used == pytest.approx(3.5 / 4)
    mine = await desk.queue.list(assignee="bob")
    assert [e.ticket.title for e in mine.tickets] == ["at L2"]
    l1 = await desk.queue.list(level=TicketLevel.L1, limit=2)
    assert len(l1.tickets) == 2
    assert l1.more == 2
    assert old.id not in [e.ticket.id for e in l1.tickets]


async def test_the_interventions_table_has_each_finished_ticket_and_the_figures(
    desk: Desk,
) -> None:
    ann, bob, root = await _people(desk.db)
    await desk.tree.add(root, "printing", "Printing")
    start = desk.clock.now
    printer = await desk.tickets.open(ann, title="printer", category="printing")
    slow = await desk.tickets.open(ann, title="slow PC", priority=TicketPriority.P1)
    never = await desk.tickets.open(ann, title="still open")
    desk.clock.advance(hours=2)
    await desk.tickets.resolve(
        ann, printer.id, "cleared the queue", outcome=TicketOutcome.FIXED,
        time_spent=timedelta(minutes=20),
    )  # fmt: skip
    desk.clock.advance(hours=3)  # past the P1's 4 hours
    await desk.tickets.resolve(
        bob, slow.id, "RAM", outcome=TicketOutcome.HARDWARE_REPLACED,
        time_spent=timedelta(hours=1),
    )  # fmt: skip
    report = await InterventionReports(desk.db).report(start, desk.clock.now + timedelta(1))
    rows = {row.ticket_id: row for row in report.rows}
    assert set(rows) == {printer.id, slow.id}  # not the open one
    assert never.id not in rows
    assert (rows[printer.id].technician, rows[printer.id].category) == ("ann", "printing")
    assert rows[printer.id].on_time
    assert not rows[slow.id].on_time
    assert rows[slow.id].time_spent_s == 3600
    assert report.by_technician["ann"].fixed == 1
    assert report.by_technician["bob"].time_spent_s == 3600
    assert report.by_category["printing"].interventions == 1
    assert report.by_category["-"].on_time == 0
    earlier = await InterventionReports(desk.db).report(start - timedelta(1), start)
    assert earlier.rows == []
    with pytest.raises(InvalidArgument, match="--to must come after --from"):
        await InterventionReports(desk.db).report(start, start)


async def test_the_technician_of_an_intervention_is_its_resolver_not_its_closer(
    desk: Desk,
) -> None:
    ann, bob, root = await _people(desk.db)
    await desk.tree.add(root, "audio", "Audio")
    start = desk.clock.now
    ticket = await desk.tickets.open(
        ann, title="no sound", category="audio", requester="Jo", kind=TicketKind.SERVICE_REQUEST
    )
    await desk.tickets.resolve(
        ann, ticket.id, "driver", outcome=TicketOutcome.FIXED, time_spent=timedelta(minutes=5)
    )
    desk.clock.advance(minutes=10)
    await desk.tickets.close(bob, ticket.id)
    (row,) = (await InterventionReports(desk.db).report(start, desk.clock.now + timedelta(1))).rows
    assert row.technician == "ann"
