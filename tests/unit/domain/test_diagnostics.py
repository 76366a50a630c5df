from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.commands import CommandKind, CommandRecord, CommandState
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.roles import Principal
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.wakeups import Wakeups
from sonde.server.errors import NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, findings, snapshots
from sonde.v1 import agent_pb2, diagnostics_pb2
from tests.unit.domain.builders import T0, Clock, enrolled_agent, technician

RECEIVED = T0 + timedelta(seconds=2)


def a_snapshot(claimed_agent_id: str = "someone-else") -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot(agent_id=claimed_agent_id, duration_ms=120)
    snapshot.collected_at.FromDatetime(T0 + timedelta(seconds=1))
    snapshot.system.hostname = "pc-042"
    snapshot.memory.total_bytes = 16 << 30
    return snapshot


def some_findings() -> list[diagnostics_pb2.Finding]:
    return [
        diagnostics_pb2.Finding(
            check="disk.space",
            severity=diagnostics_pb2.SEVERITY_CRITICAL,
            summary="Disk / is 97% full.",
        ),
        diagnostics_pb2.Finding(
            check="memory.pressure",
            severity=diagnostics_pb2.SEVERITY_WARNING,
            summary="Memory is tight.",
        ),
    ]


@dataclass
class Desk:
    """The domain objects a diagnostic passes through, over one database and clock."""

    db: Database
    clock: Clock
    wakeups: Wakeups
    audited: AuditedWrites
    commands: Commands
    diagnostics: Diagnostics


def desk(db: Database, clock: Clock | None = None) -> Desk:
    clock = clock or Clock()
    wakeups = Wakeups()
    audited = AuditedWrites(db, clock)
    return Desk(
        db,
        clock,
        wakeups,
        audited,
        Commands(db, audited, wakeups, clock),
        Diagnostics(db, audited, wakeups, clock),
    )


async def queued(d: Desk, ann: Principal, agent_id: str, ticket_id: int | None = None) -> str:
    result = await d.commands.queue(ann, agent_id, CommandKind.COLLECT, ticket_id=ticket_id)
    return result.command.id


async def delivered(d: Desk, ann: Principal, agent_id: str, ticket_id: int | None = None) -> str:
    """A command as the agent's session has sent it: queued, then claimed by a session."""
    command_id = await queued(d, ann, agent_id, ticket_id)
    claimed = await d.commands.claim_due(agent_id, "session-1", resend_delivered=True)
    assert command_id in [c.id for c in claimed]
    return command_id


def snapshot_result(command_id: str, snapshot: diagnostics_pb2.Snapshot) -> agent_pb2.Result:
    return agent_pb2.Result(command_id=command_id, snapshot=snapshot)


async def _counts(db: Database) -> tuple[int, int]:
    def unit(connection: Connection) -> tuple[int, int]:
        snaps = connection.execute(select(func.count()).select_from(snapshots)).scalar_one()
        found = connection.execute(select(func.count()).select_from(findings)).scalar_one()
        return int(snaps), int(found)

    return await db.read(unit)


async def test_a_result_is_stored_with_its_findings_and_the_command_succeeds(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await delivered(d, ann, agent.id)
    accepted = await d.diagnostics.accept_result(
        agent.id, snapshot_result(command_id, a_snapshot()), some_findings(), RECEIVED
    )
    assert accepted.changed
    assert accepted.stored is not None
    stored = await d.diagnostics.get_snapshot(accepted.stored.summary.id)
    assert stored == accepted.stored  # what the waiter is handed is what was written
    summary = stored.summary
    assert summary.agent_id == agent.id
    assert stored.snapshot.agent_id == agent.id
    assert (summary.collected_at, summary.received_at) == (T0 + timedelta(seconds=1), RECEIVED)
    assert summary.worst_severity == diagnostics_pb2.SEVERITY_CRITICAL
    assert (summary.finding_count, summary.ticket_id, summary.requested_by) == (2, None, "ann")
    assert [f.check for f in stored.findings] == ["disk.space", "memory.pressure"]
    assert await d.diagnostics.last_snapshot(agent.id) == summary
    command = await d.commands.get(command_id)
    assert (command.state, command.snapshot_id) == (CommandState.SUCCEEDED, summary.id)
    assert command.finished_at == RECEIVED


async def test_a_resent_result_changes_nothing(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await delivered(d, ann, agent.id)
    result = snapshot_result(command_id, a_snapshot())
    await d.diagnostics.accept_result(agent.id, result, some_findings(), RECEIVED)
    again = await d.diagnostics.accept_result(agent.id, result, some_findings()[:1], RECEIVED)
    assert not again.changed
    assert again.command.state is CommandState.SUCCEEDED
    assert await _counts(db) == (1, 2)


async def test_a_result_from_another_agent_is_refused_changes_nothing_and_is_audited(
    db: Database,
) -> None:
    d = desk(db)
    agent = await enrolled_agent(db, "pc-1")
    intruder = await enrolled_agent(db, "pc-2")
    ann = await technician(db, "ann")
    command_id = await delivered(d, ann, agent.id)
    with pytest.raises(PermissionDenied, match="issued to another agent"):
        await d.diagnostics.accept_result(
            intruder.id, snapshot_result(command_id, a_snapshot(agent.id)), [], RECEIVED
        )
    failure = agent_pb2.Result(command_id=command_id, failure=agent_pb2.Failure(reason="x"))
    with pytest.raises(PermissionDenied):
        await d.diagnostics.accept_result(intruder.id, failure, [], RECEIVED)
    assert await _counts(db) == (0, 0)
    assert (await d.commands.get(command_id)).state is CommandState.DELIVERED
    refusals = await db.read(
        lambda c: (
            c.execute(select(audit_log.c.actor).where(audit_log.c.result.like("refused%")))
            .scalars()
            .all()
        )
    )
    assert refusals == [f"agent:{intruder.id}"] * 2


async def test_unknown_command_agent_ticket_and_snapshot_are_not_found(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    with pytest.raises(NotFound, match="no command 'nope'"):
        await d.diagnostics.accept_result(agent.id, snapshot_result("nope", a_snapshot()), [], T0)
    with pytest.raises(NotFound, match="no agent"):
        await d.commands.queue(ann, "a" * 26, CommandKind.COLLECT, ticket_id=None)
    with pytest.raises(NotFound, match="no ticket 77"):
        await d.commands.queue(ann, agent.id, CommandKind.COLLECT, ticket_id=77)
    with pytest.raises(NotFound, match="no snapshot with id 5"):
        await d.diagnostics.get_snapshot(5)
    assert await d.diagnostics.last_snapshot(agent.id) is None
    assert await d.commands.list() == []


@pytest.mark.parametrize(
    ("kind", "state"),
    [
        (agent_pb2.FAILURE_KIND_UNSPECIFIED, CommandState.FAILED),
        (agent_pb2.FAILURE_KIND_FAILED, CommandState.FAILED),
        (agent_pb2.FAILURE_KIND_REFUSED, CommandState.REFUSED),
        (agent_pb2.FAILURE_KIND_EXPIRED, CommandState.REFUSED),
        (agent_pb2.FAILURE_KIND_CANCELLED, CommandState.CANCELLED),
        (agent_pb2.FAILURE_KIND_TIMED_OUT, CommandState.TIMED_OUT),
    ],
)
async def test_a_failure_ends_the_command_in_the_state_the_agent_names(
    db: Database, kind: agent_pb2.FailureKind.ValueType, state: CommandState
) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await delivered(d, ann, agent.id)
    failure = agent_pb2.Failure(reason="collectors crashed", kind=kind)
    result = agent_pb2.Result(command_id=command_id, failure=failure)
    await d.diagnostics.accept_result(agent.id, result, [], RECEIVED)
    again = await d.diagnostics.accept_result(agent.id, result, [], RECEIVED)  # resent
    command: CommandRecord = again.command
    assert (command.state, command.reason) == (state, "collectors crashed")
    assert not again.changed


async def test_a_ticket_linked_result_lands_on_the_timeline(db: Database) -> None:
    clock = Clock()
    d = desk(db, clock)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    ticket = await Tickets(db, clock).open(ann, title="Slow PC", agent=agent.id)
    command_id = await delivered(d, ann, agent.id, ticket.id)
    accepted = await d.diagnostics.accept_result(
        agent.id, snapshot_result(command_id, a_snapshot()), some_findings(), RECEIVED
    )
    assert accepted.stored is not None
    snapshot_id = accepted.stored.summary.id
    updated, timeline = await Tickets(db, clock).get(ticket.id)
    event = timeline[-1]
    assert (event.kind, event.actor, event.at, event.snapshot_id) == (
        "diagnostic",
        "ann",
        RECEIVED,
        snapshot_id,
    )
    assert event.snapshot is not None
    assert event.snapshot.ticket_id == ticket.id
    assert [f.summary for f in event.findings] == ["Disk / is 97% full.", "Memory is tight."]
    assert updated.updated_at == RECEIVED
