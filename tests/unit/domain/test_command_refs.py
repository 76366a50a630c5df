"""A command by the start of its id, as the CLI's tables show it (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from sonde.server.domain.commands import CommandState
from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, commands
from tests.unit.domain.builders import enrolled_agent, technician
from tests.unit.domain.test_diagnostics import desk, queued


async def renamed(db: Database, command_id: str, new_id: str) -> str:
    """A queued command given an id of the test's choosing (nothing refers to it yet)."""
    await db.write(
        lambda c: c.execute(update(commands).where(commands.c.id == command_id).values(id=new_id))
    )
    return new_id


async def test_a_command_is_found_by_the_start_of_its_id(db: Database) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    first = await renamed(db, await queued(d, ann, agent.id), "abcdef01" + "1" * 24)
    twin = await renamed(db, await queued(d, ann, agent.id), "abcdef01" + "2" * 24)
    other = await queued(d, ann, agent.id)
    assert (await d.commands.get(first)).id == first  # the whole id
    assert (await d.commands.get(first[:9])).id == first  # the start only one id has
    assert (await d.commands.get(other[:8].upper())).id == other
    with pytest.raises(InvalidArgument, match="is ambiguous: commands") as ambiguous:
        await d.commands.get(first[:8])
    assert first in str(ambiguous.value)
    assert twin in str(ambiguous.value)
    with pytest.raises(NotFound, match="first 8 characters or more"):
        await d.commands.get(first[:7])
    with pytest.raises(NotFound, match="ids are hexadecimal"):
        await d.commands.get("not-an-id%")
    with pytest.raises(NotFound, match="no command has an id starting 'ffffffff00'"):
        await d.commands.get("ffffffff00")


async def test_cancel_by_the_start_of_an_id_cancels_that_command_and_audits_its_id(
    db: Database,
) -> None:
    d = desk(db)
    agent = await enrolled_agent(db)
    ann = await technician(db, "ann")
    command_id = await queued(d, ann, agent.id)
    cancelled = await d.commands.cancel(ann, command_id[:10], "wrong machine")
    assert (cancelled.id, cancelled.state) == (command_id, CommandState.CANCELLED)
    rows = await db.read(
        lambda c: c.execute(select(audit_log).where(audit_log.c.action == "command.cancel")).all()
    )
    assert [row.result for row in rows] == ["ok"]
    assert command_id in rows[0].detail
