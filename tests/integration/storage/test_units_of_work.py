"""Units of work on each engine: what they return, what a failure leaves, pooled connections."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from sonde.server.domain.audit_chain import sha256_hex
from sonde.server.storage import db as storage
from sonde.server.storage.db import Database
from sonde.server.storage.tables import users
from tests.unit.domain.builders import T0


class Refused(Exception):
    pass


def _add(name: str) -> Callable[[Connection], int]:
    def unit(connection: Connection) -> int:
        connection.execute(
            users.insert().values(name=name, role="l1", created_by="t", created_at=T0)
        )
        return int(connection.execute(select(func.count()).select_from(users)).scalar_one())

    return unit


async def test_a_unit_commits_what_it_returns_or_nothing_when_it_raises(db: Database) -> None:
    assert await db.write(_add("ann")) == 1

    def refused(connection: Connection) -> None:
        _add("bob")(connection)
        raise Refused

    with pytest.raises(Refused):
        await db.write(refused)
    # The writer's connection (kept for the thread's life on SQLite) is usable after a rollback.
    assert await db.write(_add("cy")) == 2
    names = await db.read(lambda c: c.execute(select(users.c.name)).scalars().all())
    assert sorted(names) == ["ann", "cy"]


async def test_the_database_hashes_text_as_python_does(db: Database) -> None:
    value = 'prev\n[7,"2026-03-02T09:00:00+00:00","ann","é ✓"]'
    hashed = await db.read(lambda c: c.execute(select(sha256_hex(value))).scalar_one())
    assert hashed == hashlib.sha256(value.encode()).hexdigest()


@pytest.mark.postgres
async def test_a_pooled_connection_the_server_dropped_is_replaced_before_the_next_unit(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection is "idle"
    db = await Database.open(pg_url)
    try:
        backend = await db.read(lambda c: c.execute(text("SELECT pg_backend_pid()")).scalar())
        killer = await Database.open(pg_url)
        try:
            await killer.read(
                lambda c: c.execute(
                    text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}
                ).scalar()
            )
        finally:
            await killer.close()
        # The pool hands back the dropped connection; the ping finds it dead and reconnects.
        again = await db.read(lambda c: c.execute(text("SELECT pg_backend_pid()")).scalar())
        assert again != backend
    finally:
        await db.close()
