"""Heartbeats are written in batches: a batch the database refuses waits for the next flush."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sonde.server.domain.agents import AgentRegistry, HeartbeatRecord
from sonde.server.domain.heartbeats import HeartbeatBatcher
from sonde.server.storage.db import Database
from tests.unit.domain.builders import T0, enroll, new_agent_id


def beat(agent_id: str, minutes: int) -> HeartbeatRecord:
    return HeartbeatRecord(agent_id, T0 + timedelta(minutes=minutes), 10.0 + minutes, 50.0, 60.0)


def _rename(old: str, new: str) -> Callable[[Connection], None]:
    def unit(connection: Connection) -> None:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    return unit


@asynccontextmanager
async def agents_table_away(db: Database) -> AsyncIterator[None]:
    """The agents table renamed for a while: every write to it fails, as in a broken database."""
    await db.write(_rename("agents", "agents_away"))
    try:
        yield
    finally:
        await db.write(_rename("agents_away", "agents"))


async def test_a_refused_batch_is_written_with_the_next_flush_latest_heartbeat_first(
    db: Database,
) -> None:
    registry = AgentRegistry(db)
    first, second = new_agent_id(), new_agent_id()
    await enroll(registry, db, first, "pc-1")
    await enroll(registry, db, second, "pc-2")
    batcher = HeartbeatBatcher(registry)
    batcher.add(beat(first, 1))
    batcher.add(beat(second, 1))
    async with agents_table_away(db):
        with pytest.raises(DBAPIError):
            await batcher.flush()
    batcher.add(beat(first, 2))  # newer than the one the database refused
    assert await batcher.flush() == 2
    seen = {agent_id: (await registry.get(agent_id)).last_seen_at for agent_id in (first, second)}
    assert seen == {first: T0 + timedelta(minutes=2), second: T0 + timedelta(minutes=1)}
    assert await batcher.flush() == 0  # nothing left over


async def test_a_full_batch_is_written_before_its_interval(db: Database) -> None:
    registry = AgentRegistry(db)
    first, second = new_agent_id(), new_agent_id()
    await enroll(registry, db, first, "pc-1")
    await enroll(registry, db, second, "pc-2")
    batcher = HeartbeatBatcher(registry, flush_interval_s=3600, max_batch=2)
    running = asyncio.create_task(batcher.run())
    try:
        batcher.add(beat(first, 1))
        batcher.add(beat(second, 1))
        for _ in range(1000):
            if (await registry.get(second)).last_seen_at is not None:
                break
            await asyncio.sleep(0.02)
        assert (await registry.get(first)).last_seen_at == T0 + timedelta(minutes=1)
        assert (await registry.get(second)).last_seen_at == T0 + timedelta(minutes=1)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
