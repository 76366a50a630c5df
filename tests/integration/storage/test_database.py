from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from sonde.server.domain.audit import AuditLog
from sonde.server.storage.db import (
    Database,
    SchemaNotCurrent,
    _alembic_config,
    database_url,
    migrate,
)
from sonde.server.storage.tables import audit_chain, users


def test_default_url_is_sqlite_in_the_data_folder(tmp_path: Path) -> None:
    assert database_url(tmp_path) == f"sqlite+aiosqlite:///{tmp_path.resolve()}/sonde.db"


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://sonde@db.example/sonde",
        "postgres://sonde@db.example/sonde",
        "postgresql+asyncpg://sonde@db.example/sonde",
    ],
)
def test_postgresql_url_forms_are_normalised_to_asyncpg(tmp_path: Path, given: str) -> None:
    assert database_url(tmp_path, given) == "postgresql+asyncpg://sonde@db.example/sonde"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("mysql://u:pw@h/db", "unsupported database URL scheme 'mysql'"),
        ("just-a-name", "not a database URL \\(it has no scheme://\\)"),
        ("sqlite://", "needs a file path"),
    ],
)
def test_other_urls_are_refused_with_a_reason(tmp_path: Path, given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        database_url(tmp_path, given)


def test_migrate_creates_an_owner_only_file_and_is_repeatable(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    migrate(url)
    migrate(url)
    assert stat.S_IMODE((tmp_path / "sonde.db").stat().st_mode) == 0o600


async def test_sqlite_durability_settings(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    migrate(url)
    db = await Database.open(url)
    try:

        def read(connection: Connection) -> dict[str, object]:
            return {
                name: connection.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }

        expected = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
        expected["busy_timeout"] = 15000
        assert await db.write(read) == expected  # 2: FULL
        assert await db.read(read) == expected
        assert db.dialect == "sqlite"
    finally:
        await db.close()
    for leftover in tmp_path.glob("sonde.db-*"):
        assert stat.S_IMODE(leftover.stat().st_mode) == 0o600


async def test_open_refuses_a_database_that_was_not_migrated(tmp_path: Path) -> None:
    with pytest.raises(SchemaNotCurrent, match=r"schema none, this server needs \d{4}"):
        await Database.open(database_url(tmp_path))


def test_the_migrations_match_the_tables(db_url: str) -> None:
    # Fails when tables.py changes without a migration (alembic's autogenerate comparison).
    command.check(_alembic_config(db_url))


async def test_the_audit_chains_head_is_seeded_from_the_log_it_finds(db_url: str) -> None:
    """Migration 0003 on a database with audit rows: the head is the newest row, and the chain
    goes on from it."""
    db = await Database.open(db_url)
    try:
        log = AuditLog(db)
        for n in range(3):
            await log.record("ann", "ticket.comment", ticket_id=n + 1)
    finally:
        await db.close()
    # Alembic's env.py runs an event loop of its own: not on this one.
    await asyncio.to_thread(command.downgrade, _alembic_config(db_url), "0002")
    await asyncio.to_thread(command.upgrade, _alembic_config(db_url), "head")
    db = await Database.open(db_url)
    try:
        head = await db.read(lambda session: session.execute(select(audit_chain)).one())
        assert head.last_id == 3
        await AuditLog(db).record("ann", "ticket.comment", ticket_id=4)
        verification = await AuditLog(db).verify()
        assert (verification.ok, verification.rows) == (True, 4), verification.reason
    finally:
        await db.close()


async def test_units_commit_or_roll_back(db: Database) -> None:
    now = datetime.now(UTC)

    def add(name: str, *, then_fail: bool = False) -> Callable[[Connection], None]:
        def unit(connection: Connection) -> None:
            connection.execute(
                users.insert().values(name=name, role="l1", created_by="t", created_at=now)
            )
            if then_fail:
                raise RuntimeError("abandon")

        return unit

    with pytest.raises(RuntimeError):
        await db.write(add("ann", then_fail=True))
    await db.write(add("bob"))
    names = await db.read(lambda c: c.execute(select(users.c.name)).scalars().all())
    assert names == ["bob"]


async def test_concurrent_writers_take_turns_and_readers_are_not_blocked(db: Database) -> None:
    now = datetime.now(UTC)

    def add(name: str) -> Callable[[Connection], None]:
        def unit(connection: Connection) -> None:
            connection.execute(
                users.insert().values(name=name, role="l1", created_by="t", created_at=now)
            )

        return unit

    count = select(func.count()).select_from(users)
    before = db.counters.copy()
    await asyncio.gather(
        *(db.write(add(f"tech{n}")) for n in range(40)),
        *(db.read(lambda c: c.execute(count).scalar_one()) for _ in range(40)),
    )
    spent = db.counters - before
    assert await db.read(lambda c: c.execute(count).scalar_one()) == 40
    assert spent.transactions == 80
    assert spent.thread_hops == (80 if db.dialect == "sqlite" else 0)


async def test_timestamps_come_back_aware_in_utc(db: Database) -> None:
    local = datetime(2026, 1, 2, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    await db.write(
        lambda c: c.execute(
            users.insert().values(name="ann", role="l1", created_by="t", created_at=local)
        )
    )
    stored = await db.read(lambda c: c.execute(select(users.c.created_at)).scalar_one())
    assert stored == local
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)


async def test_naive_timestamps_are_refused(db: Database) -> None:
    naive = users.insert().values(
        name="ann", role="l1", created_by="t", created_at=datetime(2026, 1, 1)
    )
    with pytest.raises(Exception, match="timezone-aware"):
        await db.write(lambda c: c.execute(naive))
