"""Monitoring on SQLite and PostgreSQL: the schedule queues one light collection per due online
agent, and a scheduled collection's critical finding opens one ticket that closes itself once
the finding is ok N checks in a row (docs/monitoring.md)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from sonde.agent.checks import CheckContext, evaluate
from sonde.server.domain.agent_groups import AgentGroups
from sonde.server.domain.agents import AgentRecord, AgentRegistry
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.commands import CommandKind, CommandState
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.monitoring import MonitoringScheduler
from sonde.server.domain.monitoring_tickets import (
    MAX_OPENED_PER_RESULT,
    MONITOR_ACTOR,
    record_result,
)
from sonde.server.domain.roles import Role
from sonde.server.domain.sessions import SessionClosed, SessionOpened, SessionRows
from sonde.server.domain.ticket_model import TicketChannel, TicketOutcome, TicketStatus
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.wakeups import Wakeups
from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, commands, monitoring_agents, monitoring_findings
from sonde.v1 import agent_pb2, diagnostics_pb2
from tests.unit.domain.builders import T0, Clock, enroll, new_agent_id, technician
from tests.unit.domain.test_sessions import HELLO

CRITICAL, OK = diagnostics_pb2.SEVERITY_CRITICAL, diagnostics_pb2.SEVERITY_OK


@dataclass
class Monitoring:
    db: Database
    clock: Clock
    commands: Commands
    diagnostics: Diagnostics
    tickets: Tickets
    groups: AgentGroups
    scheduler: MonitoringScheduler


def monitoring(db: Database) -> Monitoring:
    clock = Clock()
    wakeups = Wakeups()
    audited = AuditedWrites(db, clock)
    diagnostics = Diagnostics(db, audited, wakeups, clock)
    tickets = Tickets(db, clock, writes=audited)
    diagnostics.monitor_result = record_result(audited, tickets)
    return Monitoring(
        db,
        clock,
        Commands(db, audited, wakeups, clock),
        diagnostics,
        tickets,
        AgentGroups(db, audited, clock=clock),
        MonitoringScheduler(db, wakeups, clock=clock),
    )


async def online_agent(db: Database, hostname: str = "pc-042") -> AgentRecord:
    registry = AgentRegistry(db)
    agent = await enroll(registry, db, new_agent_id(), hostname)
    rows = SessionRows(db, "replica-a")
    rows.add(SessionOpened(agent.id, "s-" + agent.id[:8], HELLO, "127.0.0.1:5555", T0))
    await rows.flush()
    return await registry.get(agent.id)


def disk_snapshot(used_percent: float) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.collected_at.FromDatetime(T0)
    snapshot.system.hostname = "pc-042"
    total = 100 << 30
    used = int(total * used_percent / 100)
    snapshot.disks.partitions.add(
        mountpoint="/data",
        total_bytes=total,
        used_bytes=used,
        free_bytes=total - used,
        used_percent=used_percent,
    )
    return snapshot


async def collect(
    m: Monitoring,
    agent_id: str,
    snapshot: diagnostics_pb2.Snapshot,
    found: list[diagnostics_pb2.Finding] | None = None,
) -> None:
    """One scheduled round that queues the agent's collection, its delivery and its result,
    with the findings the server's checks give (or `found`, as a hostile agent's)."""
    queued = await m.scheduler.round()  # an agent seen first is due one interval later
    if not queued:
        m.clock.advance(minutes=16)
        queued = await m.scheduler.round()
    assert len(queued) == 1
    await m.commands.claim_due(agent_id, "s1", resend_delivered=True)
    received = m.clock()
    snapshot.collected_at.FromDatetime(received)  # no clock skew
    if found is None:
        found = evaluate(snapshot, CheckContext(reference_time=received))
    result = agent_pb2.Result(command_id=queued[0], snapshot=snapshot)
    accepted = await m.diagnostics.accept_result(agent_id, result, found, received)
    assert accepted.command.state is CommandState.SUCCEEDED


async def _rows(db: Database) -> list[tuple[str, str, int, int]]:
    def unit(connection: Connection) -> list[tuple[str, str, int, int]]:
        query = select(
            monitoring_findings.c.agent_id,
            monitoring_findings.c.check_id,
            monitoring_findings.c.ticket_id,
            monitoring_findings.c.clear_streak,
        )
        held = query.where(monitoring_findings.c.cleared_at.is_(None))  # the open tickets' slots
        return [tuple(row) for row in connection.execute(held.order_by(monitoring_findings.c.id))]

    return await db.read(unit)


async def _audited(db: Database, action: str) -> list[tuple[str, int | None]]:
    def unit(connection: Connection) -> list[tuple[str, int | None]]:
        query = (
            select(audit_log.c.actor, audit_log.c.ticket_id)
            .where(audit_log.c.action == action)
            .order_by(audit_log.c.id)
        )
        return [(row.actor, row.ticket_id) for row in connection.execute(query)]

    return await db.read(unit)


async def _open_monitoring_commands(db: Database, agent_id: str) -> int:
    def unit(connection: Connection) -> int:
        query = (
            select(func.count())
            .select_from(commands)
            .where(commands.c.agent_id == agent_id)
            .where(commands.c.requested_by == MONITOR_ACTOR)
            .where(commands.c.state.in_(["queued", "delivered", "running"]))
        )
        return int(connection.execute(query).scalar_one())

    return await db.read(unit)


async def test_a_critical_finding_opens_one_ticket_that_closes_itself_after_three_clears(
    db: Database,
) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    await collect(m, agent.id, disk_snapshot(97.0))
    [(agent_id, check, ticket_id, streak)] = await _rows(db)
    assert (agent_id, check, streak) == (agent.id, "disk.space", 0)
    ticket, events = await m.tickets.get(ticket_id)
    assert ticket.channel is TicketChannel.MONITORING
    assert ticket.status is TicketStatus.NEW
    assert ticket.agent_id == agent.id
    assert ticket.title.startswith("PC-042: The disk mounted at /data is 97 % full")
    assert [e.kind.value for e in events] == ["opened", "diagnostic"]

    await collect(m, agent.id, disk_snapshot(98.0))  # still critical: the same ticket
    assert [r[2] for r in await _rows(db)] == [ticket_id]
    await collect(m, agent.id, disk_snapshot(40.0))
    await collect(m, agent.id, disk_snapshot(41.0))
    assert [r[3] for r in await _rows(db)] == [2]
    await collect(m, agent.id, disk_snapshot(42.0))

    assert await _rows(db) == []
    closed, events = await m.tickets.get(ticket_id)
    assert closed.status is TicketStatus.CLOSED
    assert closed.outcome is TicketOutcome.NO_FAULT_FOUND
    assert "disk.space cleared 3 checks in a row" in closed.resolution
    assert [e.kind.value for e in events][-2:] == ["resolved", "closed"]
    assert await _audited(db, "monitoring.ticket_open") == [(MONITOR_ACTOR, ticket_id)]
    assert await _audited(db, "monitoring.ticket_resolve") == [(MONITOR_ACTOR, ticket_id)]


async def test_a_finding_that_comes_back_starts_the_count_over(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    await collect(m, agent.id, disk_snapshot(97.0))
    await collect(m, agent.id, disk_snapshot(40.0))
    await collect(m, agent.id, disk_snapshot(40.0))
    await collect(m, agent.id, disk_snapshot(92.0))  # a warning is not ok: the count restarts
    assert [r[3] for r in await _rows(db)] == [0]
    await collect(m, agent.id, disk_snapshot(40.0))
    await collect(m, agent.id, disk_snapshot(40.0))
    assert [r[3] for r in await _rows(db)] == [2]


async def test_a_ticket_a_technician_worked_is_resolved_fixed_and_left_for_them_to_close(
    db: Database,
) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    ann = await technician(db, "ann", Role.L1)
    await m.groups.set_group(
        await technician(db, "root", Role.ADMIN), "desks", interval=timedelta(minutes=15),
        clear_checks=1,
    )  # fmt: skip
    await m.groups.assign(await technician(db, "boss", Role.ADMIN), "desks", [agent.id])
    await collect(m, agent.id, disk_snapshot(97.0))
    [(_, _, ticket_id, _)] = await _rows(db)
    await m.tickets.assign(ann, ticket_id, "ann")
    await collect(m, agent.id, disk_snapshot(10.0))
    resolved = await m.tickets.ticket(ticket_id)
    assert (resolved.status, resolved.outcome) == (TicketStatus.RESOLVED, TicketOutcome.FIXED)
    assert "disk.space cleared 1 checks in a row" in resolved.resolution


async def test_a_ticket_closed_by_hand_frees_the_slot_for_a_new_one(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    ann = await technician(db, "ann", Role.L1)
    await collect(m, agent.id, disk_snapshot(97.0))
    [(_, _, first, _)] = await _rows(db)
    await m.tickets.close(
        ann, first, "known: the data disk is being replaced", outcome=TicketOutcome.CANCELLED
    )
    await collect(m, agent.id, disk_snapshot(97.0))
    [(_, _, second, _)] = await _rows(db)
    assert second != first
    assert (await m.tickets.ticket(second)).status is TicketStatus.NEW


async def test_a_finding_back_within_a_day_reopens_the_ticket_the_rule_closed(
    db: Database,
) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    await collect(m, agent.id, disk_snapshot(97.0))
    [(_, _, ticket_id, _)] = await _rows(db)
    for _ in range(3):
        await collect(m, agent.id, disk_snapshot(40.0))
    assert (await m.tickets.ticket(ticket_id)).status is TicketStatus.CLOSED

    await collect(m, agent.id, disk_snapshot(97.0))  # 16 min later: flapping, one ticket
    assert await _rows(db) == [(agent.id, "disk.space", ticket_id, 0)]
    reopened, events = await m.tickets.get(ticket_id)
    assert reopened.status is TicketStatus.NEW
    assert (reopened.resolution, reopened.closed_at) == ("", None)
    assert [e.kind.value for e in events][-2:] == ["reopened", "diagnostic"]
    assert events[-2].body.startswith(
        "disk.space is critical again 16 min after this ticket was closed (snapshot "
    )
    assert events[-1].snapshot_id is not None
    assert await _audited(db, "monitoring.ticket_reopen") == [(MONITOR_ACTOR, ticket_id)]
    assert await _audited(db, "monitoring.ticket_open") == [(MONITOR_ACTOR, ticket_id)]

    # It clears again and stays clear for over a day: its return is a new ticket.
    for _ in range(3):
        await collect(m, agent.id, disk_snapshot(40.0))
    assert (await m.tickets.ticket(ticket_id)).status is TicketStatus.CLOSED
    m.clock.advance(hours=25)
    await collect(m, agent.id, disk_snapshot(97.0))
    [(_, _, newer, _)] = await _rows(db)
    assert newer != ticket_id
    assert (await m.tickets.ticket(ticket_id)).status is TicketStatus.CLOSED


async def test_a_worked_ticket_reopens_to_its_technician(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    ann = await technician(db, "ann", Role.L1)
    await m.groups.set_group(
        await technician(db, "root", Role.ADMIN), "desks", interval=timedelta(minutes=15),
        clear_checks=1,
    )  # fmt: skip
    await m.groups.assign(await technician(db, "boss", Role.ADMIN), "desks", [agent.id])
    await collect(m, agent.id, disk_snapshot(97.0))
    [(_, _, ticket_id, _)] = await _rows(db)
    await m.tickets.assign(ann, ticket_id, "ann")
    await collect(m, agent.id, disk_snapshot(10.0))
    assert (await m.tickets.ticket(ticket_id)).status is TicketStatus.RESOLVED
    await collect(m, agent.id, disk_snapshot(97.0))
    again = await m.tickets.ticket(ticket_id)
    assert (again.status, again.assignee) == (TicketStatus.IN_PROGRESS, "ann")
    assert [r[2] for r in await _rows(db)] == [ticket_id]


async def test_group_thresholds_decide_what_is_critical(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    admin = await technician(db, "root", Role.ADMIN)
    low = {"disk_used_warning_percent": 1.0, "disk_used_critical_percent": 2.0}
    await m.groups.set_group(admin, "strict", interval=timedelta(minutes=5), thresholds=low)
    await m.groups.assign(admin, "strict", [agent.id])
    await collect(m, agent.id, disk_snapshot(10.0))
    [(_, check, ticket_id, _)] = await _rows(db)
    assert check == "disk.space"
    # The snapshot the ticket shows is judged as the group judged it, not by the defaults.
    _, events = await m.tickets.get(ticket_id)
    [shown] = [e.snapshot_id for e in events if e.kind.value == "diagnostic"]
    assert shown is not None
    stored = await m.diagnostics.get_snapshot(shown)
    assert stored.summary.worst_severity == CRITICAL
    [disk] = [f for f in stored.findings if f.check == "disk.space"]
    assert disk.severity == CRITICAL
    # Thresholds set back (none): 10 % is ok again, three times, and the ticket closes.
    await m.groups.set_group(admin, "strict", interval=timedelta(minutes=5), thresholds={})
    for _ in range(3):
        await collect(m, agent.id, disk_snapshot(10.0))
    assert await _rows(db) == []
    [group] = await m.groups.list()
    assert (group.name, group.members, dict(group.thresholds)) == ("strict", (agent.id,), {})


async def test_an_invented_check_and_a_flood_of_findings_open_a_bounded_set(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    invented = [
        diagnostics_pb2.Finding(check=f"evil.check{i}", severity=CRITICAL, summary="<b>x</b>")
        for i in range(5000)
    ]
    real = [
        diagnostics_pb2.Finding(check=check, severity=CRITICAL, summary=f"{check} bad\x1b[31m")
        for check in ("disk.space", "disk.inodes", "memory.pressure", "cpu.saturation",
                      "services.failed", "system.uptime", "battery.wear")
    ]  # fmt: skip
    await collect(m, agent.id, disk_snapshot(10.0), invented + real * 100)
    rows = await _rows(db)
    assert len(rows) == MAX_OPENED_PER_RESULT
    assert {r[1] for r in rows} <= {f.check for f in real}
    for _, _, ticket_id, _ in rows:
        assert "\x1b" not in (await m.tickets.ticket(ticket_id)).title


async def test_an_offline_agent_gets_at_most_one_pending_collection(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    admin = await technician(db, "root", Role.ADMIN)
    await m.groups.set_group(admin, "fast", interval=timedelta(minutes=1))
    await m.groups.assign(admin, "fast", [agent.id])
    assert len(await m.scheduler.round()) == 1
    for _ in range(5):  # the agent never takes it: no second one while it is open
        m.clock.advance(seconds=61)
        assert await m.scheduler.round() == []
    assert await _open_monitoring_commands(db, agent.id) == 1
    # Offline: not due at all, and nothing is queued once the first has expired.
    rows = SessionRows(db, "replica-a")
    rows.add(SessionClosed(agent.id, "s-" + agent.id[:8], m.clock()))
    await rows.flush()
    await m.commands.end_overdue()
    m.clock.advance(minutes=30)
    await m.commands.end_overdue()
    assert await m.scheduler.round() == []
    assert await _open_monitoring_commands(db, agent.id) == 0


async def test_replicas_at_once_queue_one_collection(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    admin = await technician(db, "root", Role.ADMIN)
    await m.groups.set_group(admin, "fast", interval=timedelta(minutes=1))
    await m.groups.assign(admin, "fast", [agent.id])
    other = MonitoringScheduler(db, Wakeups(), clock=m.clock)
    queued = await asyncio.gather(m.scheduler.round(), other.round(), m.scheduler.round())
    assert sum(len(q) for q in queued) == 1


async def test_new_agents_are_first_checked_one_default_interval_later(db: Database) -> None:
    m = monitoring(db)
    await online_agent(db)
    assert await m.scheduler.round() == []  # seen: scheduled 15 min out
    m.clock.advance(minutes=14)
    assert await m.scheduler.round() == []
    m.clock.advance(minutes=2)
    [command_id] = await m.scheduler.round()
    command = await m.commands.get(command_id)
    assert (command.kind, command.requested_by, command.ticket_id) == (
        CommandKind.COLLECT,
        MONITOR_ACTOR,
        None,
    )
    assert set(command.collectors) == {"cpu", "disks", "memory", "services", "system"}


async def test_a_group_switched_off_queues_nothing(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    admin = await technician(db, "root", Role.ADMIN)
    await m.groups.set_group(admin, "quiet", interval=timedelta(0))
    await m.groups.assign(admin, "quiet", [agent.id])
    m.clock.advance(days=1)
    assert await m.scheduler.round() == []


async def test_a_technicians_collection_named_monitoring_opens_nothing(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    impostor = await technician(db, "monitoring", Role.L1)
    queued = await m.commands.queue(impostor, agent.id, CommandKind.COLLECT, ticket_id=None)
    await m.commands.claim_due(agent.id, "s1", resend_delivered=True)
    snapshot = disk_snapshot(99.0)
    found = evaluate(snapshot)
    result = agent_pb2.Result(command_id=queued.command.id, snapshot=snapshot)
    await m.diagnostics.accept_result(agent.id, result, found, m.clock())
    assert await _rows(db) == []


async def test_group_settings_are_checked(db: Database) -> None:
    m = monitoring(db)
    admin = await technician(db, "root", Role.ADMIN)
    with pytest.raises(InvalidArgument, match="interval"):
        await m.groups.set_group(admin, "g", interval=timedelta(seconds=5))
    with pytest.raises(InvalidArgument, match="no collector"):
        await m.groups.set_group(admin, "g", interval=timedelta(minutes=5), collectors=["rm"])
    with pytest.raises(InvalidArgument, match="no threshold"):
        await m.groups.set_group(
            admin, "g", interval=timedelta(minutes=5), thresholds={"__class__": 1.0}
        )
    with pytest.raises(InvalidArgument, match="group name"):
        await m.groups.set_group(admin, "../g", interval=timedelta(minutes=5))
    with pytest.raises(NotFound, match="no agent group"):
        await m.groups.assign(admin, "nope", ["pc-042"])


async def test_a_group_set_keeps_what_it_does_not_name(db: Database) -> None:
    m = monitoring(db)
    admin = await technician(db, "root", Role.ADMIN)
    await m.groups.set_group(
        admin, "desks", interval=timedelta(hours=1), collectors=["disks"],
        thresholds={"disk_used_critical_percent": 90.0},
    )  # fmt: skip
    kept = await m.groups.set_group(admin, "desks", clear_checks=5)
    assert (kept.interval, kept.collectors, kept.clear_checks) == (
        timedelta(hours=1),
        ("disks",),
        5,
    )
    assert dict(kept.thresholds) == {"disk_used_critical_percent": 90.0}
    off = await m.groups.set_group(admin, "desks", interval=timedelta(0))
    assert (off.off, off.collectors, off.clear_checks) == (True, ("disks",), 5)
    defaults = await m.groups.set_group(admin, "lab", collectors=["memory"])
    assert (defaults.interval, defaults.clear_checks) == (timedelta(minutes=15), 3)

    def unit(connection: Connection) -> list[str]:
        rows = connection.execute(
            select(audit_log.c.detail)
            .where(audit_log.c.action == "monitoring.group.set")
            .order_by(audit_log.c.id)
        )
        return [json.loads(row.detail)["changed"] for row in rows]

    assert await db.read(unit) == [
        "interval_s,collectors,clear_checks,thresholds",
        "clear_checks",
        "interval_s",
        "interval_s,collectors,clear_checks,thresholds",
    ]


async def test_schedule_rows_follow_assignment(db: Database) -> None:
    m = monitoring(db)
    agent = await online_agent(db)
    admin = await technician(db, "root", Role.ADMIN)
    await m.groups.set_group(admin, "lab", interval=timedelta(minutes=5))
    await m.groups.assign(admin, "lab", [agent.id])
    await m.groups.assign(admin, "default", [agent.id])

    def unit(connection: Connection) -> object:
        return connection.execute(
            select(monitoring_agents.c.group_name).where(monitoring_agents.c.agent_id == agent.id)
        ).scalar_one()

    assert await db.read(unit) is None
    # A row's next check moved back by hand is never double-queued by a stale value.
    await db.write(lambda c: c.execute(update(monitoring_agents).values(next_check_at=T0)).rowcount)
    assert len(await m.scheduler.round()) == 1
