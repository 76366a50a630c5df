from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.tickets import Tickets
from sonde.server.errors import NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import findings, snapshots
from sonde.v1 import diagnostics_pb2
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


async def _counts(db: Database) -> tuple[int, int]:
    async with db.reading() as session:
        snaps = (await session.execute(select(func.count()).select_from(snapshots))).scalar_one()
        found = (await session.execute(select(func.count()).select_from(findings))).scalar_one()
    return int(snaps), int(found)


async def test_store_result_keeps_snapshot_and_findings(db: Database) -> None:
    agent = await enrolled_agent(db)
    diagnostics = Diagnostics(db, Clock())
    await diagnostics.create_command(
        "c1",
        agent.id,
        kind="collect",
        ticket_id=None,
        requested_by="ann",
        expires_at=T0 + timedelta(minutes=1),
    )
    snapshot_id = await diagnostics.store_result(
        "c1", agent.id, a_snapshot(), some_findings(), RECEIVED
    )
    stored = await diagnostics.get_snapshot(snapshot_id)
    summary = stored.summary
    assert summary.agent_id == agent.id
    assert stored.snapshot.agent_id == agent.id
    assert (summary.collected_at, summary.received_at) == (T0 + timedelta(seconds=1), RECEIVED)
    assert summary.worst_severity == diagnostics_pb2.SEVERITY_CRITICAL
    assert summary.finding_count == 2
    assert (summary.ticket_id, summary.requested_by) == (None, "ann")
    assert stored.snapshot.memory.total_bytes == 16 << 30
    assert [f.check for f in stored.findings] == ["disk.space", "memory.pressure"]
    assert await diagnostics.last_snapshot(agent.id) == summary
    command = await diagnostics.get_command("c1")
    assert (command.state, command.snapshot_id) == ("done", snapshot_id)


async def test_a_resent_result_returns_the_stored_snapshot_and_writes_nothing(db: Database) -> None:
    agent = await enrolled_agent(db)
    diagnostics = Diagnostics(db, Clock())
    await diagnostics.create_command(
        "c1", agent.id, kind="collect", ticket_id=None, requested_by="ann", expires_at=T0
    )
    first = await diagnostics.store_result("c1", agent.id, a_snapshot(), some_findings(), RECEIVED)
    again = await diagnostics.store_result(
        "c1", agent.id, a_snapshot(), some_findings()[:1], RECEIVED
    )
    assert first == again
    assert await _counts(db) == (1, 2)


async def test_a_result_from_another_agent_is_refused_and_changes_nothing(db: Database) -> None:
    agent = await enrolled_agent(db, "pc-1")
    intruder = await enrolled_agent(db, "pc-2")
    diagnostics = Diagnostics(db, Clock())
    await diagnostics.create_command(
        "c1", agent.id, kind="collect", ticket_id=None, requested_by="ann", expires_at=T0
    )
    with pytest.raises(PermissionDenied, match="issued to another agent"):
        await diagnostics.store_result(
            "c1", intruder.id, a_snapshot(agent.id), some_findings(), RECEIVED
        )
    assert await _counts(db) == (0, 0)
    assert (await diagnostics.get_command("c1")).state == "pending"
    with pytest.raises(PermissionDenied):
        await diagnostics.fail_command("c1", intruder.id, "nope")


async def test_unknown_command_agent_ticket_and_snapshot_are_not_found(db: Database) -> None:
    agent = await enrolled_agent(db)
    diagnostics = Diagnostics(db, Clock())
    with pytest.raises(NotFound, match="no command 'nope'"):
        await diagnostics.store_result("nope", agent.id, a_snapshot(), [], RECEIVED)
    with pytest.raises(NotFound, match="no agent"):
        await diagnostics.create_command(
            "c1", "a" * 26, kind="collect", ticket_id=None, requested_by="ann", expires_at=T0
        )
    with pytest.raises(NotFound, match="no ticket 77"):
        await diagnostics.create_command(
            "c1", agent.id, kind="collect", ticket_id=77, requested_by="ann", expires_at=T0
        )
    with pytest.raises(NotFound, match="no snapshot with id 5"):
        await diagnostics.get_snapshot(5)
    assert await diagnostics.last_snapshot(agent.id) is None


async def test_fail_command_records_the_reason(db: Database) -> None:
    agent = await enrolled_agent(db)
    diagnostics = Diagnostics(db, Clock())
    await diagnostics.create_command(
        "c1", agent.id, kind="collect", ticket_id=None, requested_by="ann", expires_at=T0
    )
    await diagnostics.fail_command("c1", agent.id, "collectors crashed")
    await diagnostics.fail_command("c1", agent.id, "again")  # a resent failure changes nothing
    command = await diagnostics.get_command("c1")
    assert (command.state, command.failure_reason) == ("failed", "collectors crashed")


async def test_a_ticket_linked_result_lands_on_the_timeline(db: Database) -> None:
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    clock = Clock()
    ticket = await Tickets(db, clock).open(ann, title="Slow PC", agent_id=agent.id)
    diagnostics = Diagnostics(db, clock)
    await diagnostics.create_command(
        "c1", agent.id, kind="collect", ticket_id=ticket.id, requested_by="ann", expires_at=T0
    )
    snapshot_id = await diagnostics.store_result(
        "c1", agent.id, a_snapshot(), some_findings(), RECEIVED
    )
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
