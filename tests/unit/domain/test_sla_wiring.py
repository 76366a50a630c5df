"""SLA on business hours, wired into tickets (sla_admin.py, sla_terms.py, sla_watch.py,
sla_report.py): stored calendars and policies, due and at-risk instants at open, a wait that
pauses the resolve clock in business time, a new priority or contract, the watch that acts once
(notify or escalate) however many watch, and the compliance report. SQLite and PostgreSQL.

The calendar is office hours in Paris, Mon-Fri 08:00-12:00 and 13:30-18:00 (8.5 h a day); the
tests' clock starts on Monday 2026-03-02 09:00 UTC (10:00 in Paris).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.sla_admin import SlaAdmin
from sonde.server.domain.sla_report import SlaReports
from sonde.server.domain.sla_watch import SlaWatch
from sonde.server.domain.ticket_categories import TicketCategories
from sonde.server.domain.ticket_handling import TicketHandling
from sonde.server.domain.ticket_model import (
    TicketEventKind,
    TicketLevel,
    TicketOutcome,
    TicketPriority,
    TicketStatus,
)
from sonde.server.domain.ticket_queue import SlaState, TicketQueue
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, outbox, sla_alerts
from tests.unit.domain.builders import SETUP_ADMIN, Clock, technician

H = timedelta(hours=1)
OFFICE = {
    "time_zone": "Europe/Paris",
    "hours": {"mon-fri": "08:00-12:00,13:30-18:00"},
    "holidays": ["2026-03-06"],  # that Friday is a holiday
}


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


class Desk:
    def __init__(self, db: Database, clock: Clock) -> None:
        writes = AuditedWrites(db, clock)
        self.db = db
        self.clock = clock
        self.tickets = Tickets(db, clock, writes=writes)
        self.handling = TicketHandling(db, writes, clock)
        self.admin = SlaAdmin(db, writes, clock)
        self.queue = TicketQueue(db, clock)
        self.watch = SlaWatch(db, writes, clock, tell_by_mail=True)
        self.reports = SlaReports(db, clock)
        self.categories = TicketCategories(db, writes, clock)


@pytest.fixture
async def desk(db: Database) -> Desk:
    return Desk(db, Clock())


async def _people(db: Database) -> tuple[Principal, Principal, Principal]:
    return (
        await technician(db, "ann", Role.L1),
        await technician(db, "bob", Role.L2),
        await technician(db, "root", Role.ADMIN),
    )


async def _office_policies(desk: Desk, root: Principal) -> None:
    await desk.admin.set_calendar(root, "paris-office", OFFICE)
    await desk.admin.set_policy(
        root,
        "default-p2",
        contract="",
        priority=TicketPriority.P2,
        response_within=2 * H,
        resolve_within=8 * H,
        calendar="paris-office",
    )
    await desk.admin.set_policy(
        root,
        "acme-p2",
        contract="acme",
        priority=TicketPriority.P2,
        response_within=H,
        resolve_within=4 * H,
        calendar="paris-office",
        on_risk="escalate",
    )


async def test_a_ticket_takes_its_contracts_policy_in_business_hours(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await _office_policies(desk, root)
    # Thursday 16:00 UTC = 17:00 Paris: one working hour left that day, Friday a holiday.
    desk.clock.now = utc(5, 16)
    ticket = await desk.tickets.open(
        ann, title="ERP down", priority=TicketPriority.P2, contract="acme"
    )
    # Response 1 h: Thursday 18:00 Paris = 17:00 UTC.
    assert ticket.response_due_at == utc(5, 17)
    # Resolve 4 h: 1 h on Thursday, then Monday 08:00-11:00 Paris (07:00-10:00 UTC).
    assert ticket.resolve_due_at == utc(9, 10)
    # At risk after 3 h of the 4: 1 h Thursday, 2 h Monday, to 10:00 Paris.
    assert ticket.resolve_risk_at == utc(9, 9)
    assert ticket.response_risk_at == utc(5, 16, 45)
    # A contract no policy names is refused, so a typo does not get the default targets.
    with pytest.raises(InvalidArgument, match="no SLA policy names the contract 'acme-typo'"):
        await desk.tickets.open(ann, title="x", priority=TicketPriority.P2, contract="acme-typo")
    # Another contract-less ticket takes the default policy; a priority no policy covers keeps
    # the wall-clock targets.
    default = await desk.tickets.open(ann, title="slow PC", priority=TicketPriority.P2)
    # 1 h Thursday + 7 h Monday: 08:00-12:00 and 13:30-16:30 Paris.
    assert default.resolve_due_at == utc(9, 15, 30)
    plain = await desk.tickets.open(ann, title="new mouse", priority=TicketPriority.P4)
    assert plain.sla_policy_id is None
    assert plain.resolve_due_at == utc(5, 16) + timedelta(days=5)


async def test_waiting_pauses_the_resolve_clock_in_business_time(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await _office_policies(desk, root)
    desk.clock.now = utc(2, 9)  # Monday 10:00 Paris
    ticket = await desk.tickets.open(
        ann, title="Outlook", priority=TicketPriority.P2, assignee="ann"
    )
    # 8 h: 10:00-12:00 and 13:30-18:00 Paris, then Tuesday 08:00-09:30 Paris.
    assert ticket.resolve_due_at == utc(3, 8, 30)
    desk.clock.now = utc(2, 10)  # 11:00 Paris: 1 h used, 7 h left
    await desk.tickets.wait(ann, ticket.id, "waiting for the user's password reset")
    desk.clock.now = utc(3, 8)  # Tuesday 09:00 Paris
    resumed = await desk.tickets.resume(ann, ticket.id)
    # 7 h from Tuesday 09:00 Paris: 3 h to noon, 4 h from 13:30: 17:30 Paris = 16:30 UTC.
    assert resumed.ticket.resolve_due_at == utc(3, 16, 30)
    # At risk after 6 h: 1 h before the wait, then 5 h: to 15:30 Paris = 14:30 UTC.
    assert resumed.ticket.resolve_risk_at == utc(3, 14, 30)
    # The response clock does not pause.
    assert resumed.ticket.response_due_at == ticket.response_due_at


async def test_a_new_priority_or_contract_recounts_the_clocks(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await _office_policies(desk, root)
    desk.clock.now = utc(2, 9)
    ticket = await desk.tickets.open(ann, title="VPN", priority=TicketPriority.P3)
    assert ticket.sla_policy_id is None  # no P3 policy: the wall-clock targets
    desk.clock.now = utc(2, 10)
    await desk.tickets.wait(ann, ticket.id, "user away")
    desk.clock.now = utc(2, 11)  # an hour of wait, 11:00-12:00 Paris
    await desk.tickets.resume(ann, ticket.id)
    changed = await desk.handling.set_details(
        ann, ticket.id, priority=TicketPriority.P2, contract="acme"
    )
    assert (changed.priority, changed.contract) == (TicketPriority.P2, "acme")
    assert changed.response_due_at == utc(2, 10)  # 1 h from the opening, not paused
    # 4 h from Monday 10:00 Paris, the hour waited not counted: 10:00-11:00, then 13:30-16:30.
    assert changed.resolve_due_at == utc(2, 15, 30)
    _, events = await desk.tickets.get(ticket.id)
    said = events[-1].body
    assert "priority P2 (was P3)" in said
    assert "contract acme" in said
    assert "SLA policy acme-p2" in said
    with pytest.raises(InvalidArgument, match="no SLA policy names the contract"):
        await desk.handling.set_details(ann, ticket.id, contract="nobody")


async def test_the_queue_reads_business_hours_risk(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await _office_policies(desk, root)
    desk.clock.now = utc(5, 16)  # Thursday 17:00 Paris
    ticket = await desk.tickets.open(ann, title="ERP", priority=TicketPriority.P2, contract="acme")
    await desk.tickets.comment(ann, ticket.id, "looking")  # answered: the response clock stops
    # Saturday noon UTC: two days of wall clock, but only 1 h of the 4 business hours used.
    desk.clock.now = utc(7, 12)
    (queued,) = (await desk.queue.list()).tickets
    assert queued.sla is SlaState.OK
    desk.clock.now = utc(9, 9, 1)  # Monday 10:01 Paris: 3 h used
    (queued,) = (await desk.queue.list()).tickets
    assert queued.sla is SlaState.AT_RISK


async def test_the_watch_tells_the_assignee_once(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await Users(desk.db).set_email(SETUP_ADMIN, "ann", "ann@helpdesk.example")
    await _office_policies(desk, root)
    desk.clock.now = utc(2, 9)
    ticket = await desk.tickets.open(
        ann, title="Outlook", priority=TicketPriority.P2, assignee="ann"
    )
    await desk.tickets.comment(ann, ticket.id, "calling the user")
    assert await desk.watch.watch_once() == 0
    desk.clock.now = utc(2, 16, 31)  # 17:31 Paris: 6 h used of 8, at risk
    # Two replicas watching at once act once.
    first, second = await asyncio.gather(desk.watch.watch_once(), desk.watch.watch_once())
    assert first + second == 1
    assert await desk.watch.watch_once() == 0
    _, events = await desk.tickets.get(ticket.id)
    at_risk = [e for e in events if e.kind is TicketEventKind.SLA_AT_RISK]
    assert len(at_risk) == 1
    assert "the resolve clock is at risk: due 2026-03-03 08:30 UTC (policy default-p2)" in (
        at_risk[0].body
    )
    assert "told ann" in at_risk[0].body
    mails = await desk.db.read(lambda c: c.execute(select(outbox)).all())
    assert [(m.kind, m.recipient) for m in mails] == [("sla_at_risk", "ann@helpdesk.example")]
    assert "[Sonde #" in mails[0].body
    assert "at risk" in mails[0].body

    desk.clock.now = utc(3, 8, 31)  # past due: breached, told again, once
    assert await desk.watch.watch_once() == 1
    assert await desk.watch.watch_once() == 0
    _, events = await desk.tickets.get(ticket.id)
    assert [e.kind for e in events].count(TicketEventKind.SLA_BREACHED) == 1
    actions = await desk.db.read(
        lambda c: c.execute(select(audit_log.c.action, audit_log.c.actor)).all()
    )
    assert ("sla.at_risk", "sla-watch") in [(a.action, a.actor) for a in actions]


async def test_at_risk_escalates_by_policy_and_skips_a_waiting_ticket(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await _office_policies(desk, root)
    desk.clock.now = utc(2, 9)
    ticket = await desk.tickets.open(
        ann, title="ERP", priority=TicketPriority.P2, contract="acme", assignee="ann"
    )
    await desk.tickets.comment(ann, ticket.id, "on it")
    waiting = await desk.tickets.open(
        ann, title="printer", priority=TicketPriority.P2, contract="acme", assignee="ann"
    )
    await desk.tickets.comment(ann, waiting.id, "asked for a photo")
    await desk.tickets.wait(ann, waiting.id, "the user sends a photo of the error")
    desk.clock.now = utc(2, 13, 31)  # 14:31 Paris: 3 h of the acme 4 h used, at risk
    assert await desk.watch.watch_once() == 1  # the waiting ticket's clock is paused
    escalated = await desk.tickets.ticket(ticket.id)
    assert (escalated.level, escalated.status, escalated.assignee) == (
        TicketLevel.L2,
        TicketStatus.NEW,
        None,
    )
    _, events = await desk.tickets.get(ticket.id)
    assert events[-1].kind is TicketEventKind.ESCALATED
    assert "escalated to L2 by the policy" in events[-1].body
    assert (await desk.tickets.ticket(waiting.id)).level is TicketLevel.L1
    alerts = await desk.db.read(lambda c: c.execute(select(sla_alerts)).all())
    assert [(a.ticket_id, a.clock, a.state, a.acted) for a in alerts] == [
        (ticket.id, "resolve", "at_risk", "escalated")
    ]


async def test_policies_are_versioned_and_refuse_what_does_not_hold(desk: Desk) -> None:
    ann, _, root = await _people(desk.db)
    await _office_policies(desk, root)
    desk.clock.now = utc(2, 9)
    before = await desk.tickets.open(ann, title="a", priority=TicketPriority.P2)
    replaced = await desk.admin.set_policy(
        root,
        "default-p2",
        contract="",
        priority=TicketPriority.P2,
        response_within=H,
        resolve_within=2 * H,
        calendar="paris-office",
    )
    assert replaced.id != before.sla_policy_id
    after = await desk.tickets.open(ann, title="b", priority=TicketPriority.P2)
    assert after.resolve_due_at == utc(2, 11)
    assert (await desk.tickets.ticket(before.id)).resolve_due_at == utc(3, 8, 30)  # kept
    live = await desk.admin.policies()
    assert sorted(p.name for p in live) == ["acme-p2", "default-p2"]
    assert len(await desk.admin.policies(include_retired=True)) == 3

    def policy(**given: object) -> dict[str, object]:
        values: dict[str, object] = {
            "contract": "",
            "priority": TicketPriority.P2,
            "response_within": H,
            "resolve_within": 2 * H,
            "calendar": "paris-office",
        }
        return values | given

    for name, given, said in [
        ("other-p2", {}, "the policy 'default-p2' covers the default contract at p2 already"),
        ("x", {"calendar": "nowhere"}, "no calendar 'nowhere'"),
        ("x", {"resolve_within": timedelta(minutes=30)}, "shorter than the response target"),
        ("x", {"response_within": timedelta(0)}, "from 1 minute to 366 days"),
        ("x", {"at_risk_share": 1.5}, "the at-risk share must be from 0.05 to 1"),
        ("x", {"contract": "acme corp"}, "the contract 'acme corp' is refused"),
        ("bad name!", {}, "the policy name 'bad name!' is refused"),
    ]:
        with pytest.raises((Conflict, NotFound, InvalidArgument), match=said):
            await desk.admin.set_policy(root, name, **policy(**given))  # type: ignore[arg-type]
    for form, said in [
        ({"time_zone": "Mars/Olympus", "hours": {"mon": "08:00-12:00"}}, "unknown time zone"),
        ({"time_zone": "UTC", "hours": {}}, "no working time"),
        ({"time_zone": "UTC", "hours": {"mon": "12:00-08:00"}}, "calendar 'c' refused"),
    ]:
        with pytest.raises(InvalidArgument, match=said):
            await desk.admin.set_calendar(root, "c", form)
    retired = await desk.admin.retire_policy(root, "acme-p2")
    assert retired.retired_at == desk.clock.now
    with pytest.raises(NotFound, match="no live SLA policy named 'acme-p2'"):
        await desk.admin.retire_policy(root, "acme-p2")


async def test_the_report_counts_met_and_breached_per_contract_technician_and_category(
    desk: Desk,
) -> None:
    ann, bob, root = await _people(desk.db)
    await _office_policies(desk, root)
    await desk.categories.add(root, "network", "Network")
    desk.clock.now = utc(2, 9)
    on_time = await desk.tickets.open(
        ann,
        title="on time",
        priority=TicketPriority.P2,
        contract="acme",
        assignee="ann",
        category="network",
    )
    late = await desk.tickets.open(
        ann, title="late", priority=TicketPriority.P2, assignee="ann", category="network"
    )
    open_late = await desk.tickets.open(
        ann, title="open late", priority=TicketPriority.P2, contract="acme"
    )
    desk.clock.now = utc(2, 9, 30)
    await desk.tickets.comment(ann, on_time.id, "hello")  # answered in time
    desk.clock.now = utc(2, 11)
    await desk.tickets.resolve(
        ann, on_time.id, "restarted the service", outcome=TicketOutcome.FIXED, time_spent=H
    )
    desk.clock.now = utc(3, 9)  # Tuesday: past every due time
    await desk.tickets.resolve(
        ann, late.id, "replaced the cable", outcome=TicketOutcome.FIXED, time_spent=H
    )
    report = await desk.reports.report(utc(2, 0), utc(4, 0))
    acme = report.by_contract["acme"]
    assert (acme.response.met, acme.response.breached) == (1, 1)
    assert (acme.resolve.met, acme.resolve.breached) == (1, 1)  # open_late is overdue
    default = report.by_contract["(default)"]
    assert (default.resolve.met, default.resolve.breached) == (0, 1)
    assert report.by_technician["ann"].resolve.share_met == 0.5
    assert report.by_technician["-"].resolve.breached == 1  # nobody has open_late
    assert report.overall.response.share_met == pytest.approx(1 / 3)
    assert list(report.by_category) == ["-", "network"]
    network = report.by_category["network"]  # on_time met both clocks, late breached both
    assert (network.response.met, network.response.breached) == (1, 1)
    assert (network.resolve.met, network.resolve.breached) == (1, 1)
    uncategorised = report.by_category["-"]  # open_late, in no category
    assert (uncategorised.response.met, uncategorised.response.breached) == (0, 1)
    assert (uncategorised.resolve.met, uncategorised.resolve.breached) == (0, 1)
    assert {(b.ticket_id, b.category) for b in report.breaches} == {
        (late.id, "network"),
        (open_late.id, ""),
    }
    late_ids = sorted((b.ticket_id, b.clock) for b in report.breaches)
    assert late_ids == [
        (late.id, "resolve"),
        (late.id, "response"),
        (open_late.id, "resolve"),
        (open_late.id, "response"),
    ]
    overdue = next(
        b for b in report.breaches if (b.ticket_id, b.clock) == (open_late.id, "resolve")
    )
    assert overdue.done_at is None
    assert overdue.policy == "acme-p2"
    with pytest.raises(InvalidArgument, match="before it starts"):
        await desk.reports.report(utc(4, 0), utc(2, 0))
    assert bob.name == "bob"


async def test_a_users_mail_address_is_checked(desk: Desk) -> None:
    await _people(desk.db)
    users = Users(desk.db)
    for bad in ("not an address", "a@b", "x@example.org\r\nBcc: all@example.org", "A <a@b.org>"):
        with pytest.raises(InvalidArgument, match="is not one mail address"):
            await users.set_email(SETUP_ADMIN, "ann", bad)
    record = await users.set_email(SETUP_ADMIN, "ann", "ann@helpdesk.example")
    assert record.email == "ann@helpdesk.example"
    with pytest.raises(Conflict, match="has that mail address already"):
        await users.set_email(SETUP_ADMIN, "ann", "ann@helpdesk.example")
    assert (await users.get("ann")).email == "ann@helpdesk.example"
    assert (await users.set_email(SETUP_ADMIN, "ann", "")).email is None
