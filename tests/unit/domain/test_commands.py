"""Durable commands: the state machine, delivery in order, expiry, cancel, and audit with each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.agents import HelloInfo
from sonde.server.domain.commands import (
    FINAL_STATES,
    TRANSITIONS,
    CommandKind,
    CommandState,
    check_transition,
)
from sonde.server.domain.diagnostics import StoredSnapshotRecord
from sonde.server.domain.sessions import AgentConnection, LocalSessions, SessionOpened, SessionRows
from sonde.server.domain.wake_listener import asyncpg_dsn
from sonde.server.domain.wakeups import Wake, WakeKind
from sonde.server.errors import Conflict, InvalidArgument, Unavailable
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, commands, snapshots
from sonde.v1 import agent_pb2
from tests.unit.domain.builders import T0, Clock, enrolled_agent, technician
from tests.unit.domain.test_diagnostics import (
    Desk,
    a_snapshot,
    delivered,
    desk,
    queued,
    snapshot_result,
)

HELLO = HelloInfo("pc-042", "linux", "Ubuntu 24.04", "6.8.0", "0.1.0")


def test_the_transition_table_has_one_shape() -> None:
    assert set(TRANSITIONS) == {
        CommandState.PENDING_APPROVAL,
        CommandState.QUEUED,
        CommandState.DELIVERED,
        CommandState.RUNNING,
    }
    # A run waiting for its approval is never delivered: approved (queued) or it ends.
    assert TRANSITIONS[CommandState.PENDING_APPROVAL] == {
        CommandState.QUEUED,
        CommandState.REJECTED,
        CommandState.EXPIRED,
        CommandState.CANCELLED,
    }
    assert set(CommandState) - set(TRANSITIONS) == FINAL_STATES
    # Never delivered: only expiry or a cancel ends a queued command.
    assert TRANSITIONS[CommandState.QUEUED] == {
        CommandState.DELIVERED,
        CommandState.EXPIRED,
        CommandState.CANCELLED,
    }
    assert CommandState.EXPIRED not in TRANSITIONS[CommandState.DELIVERED]
    for final in FINAL_STATES:
        for target in CommandState:
            with pytest.raises(Conflict, match=f"is {final.value}; it cannot become"):
                check_transition("c1", final, target)


async def test_queued_commands_are_delivered_once_in_creation_order(db: Database) -> None:
    clock = Clock()
    d = desk(db, clock)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    ids = []
    for _ in range(3):
        ids.append(await queued(d, ann, agent.id))
        clock.advance(seconds=1)
    first = await d.commands.claim_due(agent.id, "s1", resend_delivered=True)
    assert [c.id for c in first] == ids
    assert all(c.state is CommandState.DELIVERED and c.deliveries == 1 for c in first)
    # The same session asks again: nothing new to send.
    assert await d.commands.claim_due(agent.id, "s1", resend_delivered=False) == []
    # A new session (a reconnect) resends what was delivered and has no result yet.
    again = await d.commands.claim_due(agent.id, "s2", resend_delivered=True)
    assert [(c.id, c.deliveries) for c in again] == [(i, 2) for i in ids]


async def test_a_command_past_its_expiry_is_never_delivered_and_ends_expired(db: Database) -> None:
    clock = Clock()
    d = desk(db, clock)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    stale = (
        await d.commands.queue(
            ann, agent.id, CommandKind.COLLECT, ticket_id=None, expires_in=timedelta(minutes=5)
        )
    ).command.id
    fresh = await queued(d, ann, agent.id)
    clock.advance(minutes=6)
    claimed = await d.commands.claim_due(agent.id, "s1", resend_delivered=True)
    assert [c.id for c in claimed] == [fresh]
    expired = await d.commands.get(stale)
    assert expired.state is CommandState.EXPIRED
    assert "did not connect before" in expired.reason
    assert expired.delivered_at is None


async def test_the_upkeep_sweep_expires_queued_and_interrupts_silent_deliveries(
    db: Database,
) -> None:
    clock = Clock()
    d = desk(db, clock)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    delivered = await queued(d, ann, agent.id)
    await d.commands.claim_due(agent.id, "s1", resend_delivered=True)
    waiting = await queued(d, ann, agent.id)
    clock.advance(hours=24, minutes=5)
    assert await d.commands.end_overdue() == 1  # the delivered one still has its grace
    assert (await d.commands.get(waiting)).state is CommandState.EXPIRED
    clock.advance(minutes=6)
    assert await d.commands.end_overdue() == 1
    interrupted = await d.commands.get(delivered)
    assert interrupted.state is CommandState.INTERRUPTED
    assert "sent no result" in interrupted.reason
    # A result that arrives after that is acknowledged and changes nothing.
    late = await d.diagnostics.accept_result(
        agent.id, snapshot_result(delivered, a_snapshot()), [], clock.now
    )
    assert not late.changed
    assert late.command.state is CommandState.INTERRUPTED


async def test_a_cancelled_queued_command_never_runs(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await queued(d, ann, agent.id)
    cancelled = await d.commands.cancel(ann, command_id, "caller fixed it")
    assert (cancelled.state, cancelled.cancelled_by, cancelled.reason) == (
        CommandState.CANCELLED,
        "ann",
        "caller fixed it",
    )
    assert await d.commands.claim_due(agent.id, "s1", resend_delivered=True) == []
    with pytest.raises(Conflict, match="already ended cancelled"):
        await d.commands.cancel(ann, command_id, "")


async def test_cancelling_a_delivered_command_tells_its_session(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await queued(d, ann, agent.id)
    await d.commands.claim_due(agent.id, "s1", resend_delivered=True)
    heard: list[Wake] = []
    d.wakeups.attach_session(agent.id, heard.append)
    await d.commands.cancel(ann, command_id, "")
    assert Wake(WakeKind.CANCEL, agent.id, command_id) in heard


async def test_queueing_wakes_the_agents_session_and_is_audited_with_the_command(
    db: Database,
) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    heard: list[Wake] = []
    d.wakeups.attach_session(agent.id, heard.append)
    result = await d.commands.queue(ann, agent.id, CommandKind.COLLECT, ticket_id=None)
    assert heard == [Wake(WakeKind.COMMANDS_DUE, agent.id, result.command.id)]
    assert result.agent_online is False
    assert result.command.agent_hostname == "pc-042"
    rows = await db.read(lambda c: c.execute(select(audit_log)).all())
    assert [(r.actor, r.action, r.agent_id) for r in rows][-1] == (
        "ann",
        "diagnostics.run",
        agent.id,
    )
    assert result.command.id in rows[-1].detail


async def _session_row(db: Database, agent_id: str, session_id: str) -> None:
    rows = SessionRows(db, "replica-a")
    rows.add(SessionOpened(agent_id, session_id, HELLO, "127.0.0.1:5555", T0))
    await rows.flush()


async def _held_here(d: Desk, agent_id: str) -> AgentConnection:
    """The agent's stream on this replica, as its session leaves it once it sent what was due
    at connect (server/api/agent_session.py), and the agent's row naming that session."""
    connection = LocalSessions(heartbeat_interval_s=15).attach(agent_id, "pc-042", T0)
    await _session_row(d.db, agent_id, connection.session_id)
    d.wakeups.attach_stream(connection)
    return connection


def _sent(connection: AgentConnection) -> list[str]:
    sent = []
    while not connection.outbound.empty():
        message = connection.outbound.get_nowait()
        assert message is not None
        sent.append(message.collect.command_id)
    return sent


async def test_queueing_for_a_stream_held_here_delivers_it_in_the_same_unit(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    connection = await _held_here(d, agent.id)
    heard: list[Wake] = []
    d.wakeups.attach_session(agent.id, heard.append)
    before = db.counters.copy()
    result = await d.commands.queue(ann, agent.id, CommandKind.COLLECT, ticket_id=None)
    assert (db.counters - before).transactions == 1  # no wake-up, so no claim of its own
    assert heard == []
    assert _sent(connection) == [result.command.id]
    assert (result.command.state, result.agent_online) == (CommandState.DELIVERED, True)
    stored = await d.commands.get(result.command.id)
    assert (stored.state, stored.deliveries, stored.delivered_at) == (
        CommandState.DELIVERED,
        1,
        d.clock.now,
    )
    assert await d.commands.claim_due(agent.id, connection.session_id, resend_delivered=False) == []
    # Durable as any delivery: a reconnect (a new session) resends it.
    again = await d.commands.claim_due(agent.id, "s2", resend_delivered=True)
    assert [(c.id, c.deliveries) for c in again] == [(result.command.id, 2)]
    rows = await db.read(lambda c: c.execute(select(audit_log)).all())
    assert (rows[-1].action, rows[-1].agent_id) == ("diagnostics.run", agent.id)
    assert result.command.id in rows[-1].detail


async def test_a_command_handed_to_the_stream_goes_after_older_queued_ones(db: Database) -> None:
    clock = Clock()
    d = desk(db, clock)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    older = await queued(d, ann, agent.id)  # its wake-up found no session
    clock.advance(seconds=1)
    connection = await _held_here(d, agent.id)
    newer = await queued(d, ann, agent.id)
    assert _sent(connection) == [older, newer]
    assert {(await d.commands.get(c)).state for c in (older, newer)} == {CommandState.DELIVERED}


async def test_a_stream_the_agents_row_does_not_name_is_woken_not_handed_the_command(
    db: Database,
) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    connection = await _held_here(d, agent.id)
    await _session_row(db, agent.id, "a-newer-stream-on-replica-b")
    heard: list[Wake] = []
    d.wakeups.attach_session(agent.id, heard.append)
    moved = await d.commands.queue(ann, agent.id, CommandKind.COLLECT, ticket_id=None)
    assert moved.command.state is CommandState.QUEUED
    assert heard == [Wake(WakeKind.COMMANDS_DUE, agent.id, moved.command.id)]
    assert _sent(connection) == []
    # A stream that is closing takes nothing either.
    await _session_row(db, agent.id, connection.session_id)
    connection.close("replaced by a newer connection from the same agent")
    closing = await d.commands.queue(ann, agent.id, CommandKind.COLLECT, ticket_id=None)
    assert closing.command.state is CommandState.QUEUED


async def test_no_queue_refuses_an_offline_agent_and_writes_no_command(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    with pytest.raises(Unavailable, match="has not connected since it enrolled"):
        await d.commands.queue(
            ann, agent.id, CommandKind.COLLECT, ticket_id=None, require_online=True
        )
    count = await db.read(
        lambda c: c.execute(select(func.count()).select_from(commands)).scalar_one()
    )
    assert count == 0


async def test_expiry_out_of_bounds_is_refused(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    for bad in (timedelta(0), timedelta(days=31)):
        with pytest.raises(InvalidArgument, match="expires after"):
            await d.commands.queue(
                ann, agent.id, CommandKind.COLLECT, ticket_id=None, expires_in=bad
            )


class Crash(Exception):
    pass


@pytest.mark.parametrize("action", ["diagnostics.run", "command.cancel", "command.result"])
async def test_a_crash_before_the_audit_row_leaves_neither(db: Database, action: str) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await delivered(d, ann, agent.id)
    before = await _rows(db)

    def crash(happening: str) -> None:
        if happening == action:
            raise Crash(happening)

    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "diagnostics.run": lambda: queued(d, ann, agent.id),
        "command.cancel": lambda: d.commands.cancel(ann, command_id, ""),
        "command.result": lambda: d.diagnostics.accept_result(
            agent.id, snapshot_result(command_id, a_snapshot()), [], d.clock.now
        ),
    }
    d.audited.fault_before_audit = crash
    with pytest.raises(Crash):
        await attempts[action]()
    assert await _rows(db) == before


async def _rows(db: Database) -> tuple[list[object], list[object], list[object]]:
    def unit(connection: Connection) -> tuple[list[object], list[object], list[object]]:
        return (
            list(connection.execute(select(commands).order_by(commands.c.id)).all()),
            list(connection.execute(select(audit_log).order_by(audit_log.c.id)).all()),
            list(connection.execute(select(snapshots)).all()),
        )

    return await db.read(unit)


async def test_a_waiter_gets_the_result_in_process_without_re_reading(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await delivered(d, ann, agent.id)
    waiting = asyncio.create_task(d.commands.wait_final(command_id, 5.0))
    await asyncio.sleep(0.05)
    await d.diagnostics.accept_result(
        agent.id, snapshot_result(command_id, a_snapshot()), [], d.clock.now
    )
    record, handed = await asyncio.wait_for(waiting, 5.0)
    assert record.state is CommandState.SUCCEEDED
    assert isinstance(handed, StoredSnapshotRecord)
    assert handed.summary.id == record.snapshot_id


async def test_a_waiter_sees_a_change_made_elsewhere_by_watching_the_row(db: Database) -> None:
    d = desk(db)
    elsewhere = desk(db)  # a second replica: its wake-ups never reach this one
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await delivered(d, ann, agent.id)
    waiting = asyncio.create_task(d.commands.wait_final(command_id, 10.0))
    await asyncio.sleep(0.05)
    failure = agent_pb2.Result(command_id=command_id, failure=agent_pb2.Failure(reason="no"))
    await elsewhere.diagnostics.accept_result(agent.id, failure, [], d.clock.now)
    record, handed = await asyncio.wait_for(waiting, 10.0)
    assert (record.state, handed) == (CommandState.FAILED, None)


async def test_a_wait_that_times_out_returns_the_command_as_it_is(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await queued(d, ann, agent.id)
    record, _ = await d.commands.wait_final(command_id, 0.2)
    assert record.state is CommandState.QUEUED


@pytest.mark.postgres
async def test_a_cancel_that_commits_during_a_claim_is_never_sent(db: Database) -> None:
    """PostgreSQL, where a claim and a cancel can run at once on two replicas."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a claim and a cancel cannot interleave")
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await queued(d, ann, agent.id)
    cancelling = await asyncpg.connect(asyncpg_dsn(str(db.engine.url.render_as_string(False))))
    try:
        holding = cancelling.transaction()
        await holding.start()
        await cancelling.execute(
            "UPDATE commands SET state = 'cancelled', finished_at = now() WHERE id = $1",
            command_id,
        )
        claim = asyncio.create_task(d.commands.claim_due(agent.id, "s1", resend_delivered=True))
        await asyncio.sleep(0.3)  # the claim now waits on the cancel's row lock
        assert not claim.done()
        await holding.commit()
        assert await asyncio.wait_for(claim, 10) == []
    finally:
        await cancelling.close()
    found = await d.commands.get(command_id)
    assert (found.state, found.deliveries) == (CommandState.CANCELLED, 0)
