"""A machine's diagnostic before a given one, on SQLite and PostgreSQL: never another
machine's, none before the first."""

from __future__ import annotations

from sonde.server.domain.snapshot_history import previous_snapshot_id
from sonde.server.storage.db import Database
from tests.unit.domain.builders import enrolled_agent, technician
from tests.unit.domain.test_diagnostics import (
    RECEIVED,
    a_snapshot,
    delivered,
    desk,
    snapshot_result,
    some_findings,
)


async def test_the_one_before_is_the_same_machines(db: Database) -> None:
    d = desk(db)
    ann = await technician(db, "ann")
    pc, laptop = await enrolled_agent(db, "pc-1"), await enrolled_agent(db, "laptop-2")
    stored: dict[str, list[int]] = {pc.id: [], laptop.id: []}
    for agent in (pc, laptop, pc, laptop, pc):
        command_id = await delivered(d, ann, agent.id)
        accepted = await d.diagnostics.accept_result(
            agent.id, snapshot_result(command_id, a_snapshot()), some_findings(), RECEIVED
        )
        assert accepted.stored is not None
        stored[agent.id].append(accepted.stored.summary.id)
    first, second, third = stored[pc.id]
    assert await previous_snapshot_id(db, third) == second
    assert await previous_snapshot_id(db, second) == first
    assert await previous_snapshot_id(db, first) is None
    assert await previous_snapshot_id(db, stored[laptop.id][1]) == stored[laptop.id][0]
    assert await previous_snapshot_id(db, 10**12) is None
