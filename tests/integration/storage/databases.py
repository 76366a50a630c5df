"""Database fixtures: every storage and domain test runs on SQLite and on PostgreSQL.

SQLite: one migrated template per session, copied into each test's tmp_path.
PostgreSQL (127.0.0.1:5432, trust auth, database `test`): one freshly created, migrated database
per test module, emptied before each test, dropped afterwards. When PostgreSQL is not reachable
the PostgreSQL cases fail and say so: CI starts it, a silent skip would hide a broken engine.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from sonde.server.domain.audit_chain import CHAIN_ROW
from sonde.server.domain.audit_rows import GENESIS_HASH
from sonde.server.storage.db import Database, migrate
from sonde.server.storage.tables import audit_chain, metadata

PG_HOST, PG_PORT, PG_MAINTENANCE_DB = "127.0.0.1", 5432, "test"
PG_USERS = ("postgres", "root")


async def _pg_connect(database: str) -> tuple[asyncpg.Connection, str]:
    errors = []
    for user in PG_USERS:
        try:
            connection = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=user, database=database, timeout=5
            )
            return connection, user
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            errors.append(f"{user}: {error}")
    pytest.fail(
        f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} (database {database!r}, users "
        f"{', '.join(PG_USERS)}): {'; '.join(errors)}. "
        "Start it, or deselect these cases with -m 'not postgres'",
        pytrace=False,
    )


async def create_database(name: str) -> str:
    connection, user = await _pg_connect(PG_MAINTENANCE_DB)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"


async def drop_database(name: str) -> None:
    connection, _ = await _pg_connect(PG_MAINTENANCE_DB)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated PostgreSQL database of this test module's own."""
    module = re.sub(r"[^a-z0-9]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    name = f"sonde_{module[:30]}_{secrets.token_hex(4)}"
    url = asyncio.run(create_database(name))
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(drop_database(name))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "sonde.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database URL, empty, on each engine in turn."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "sonde.db"
        shutil.copyfile(template, target)
        target.chmod(0o600)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(_truncate(url))
    return url


async def _truncate(url: str) -> None:
    database = await Database.open(url)
    try:
        names = ", ".join(table.name for table in metadata.sorted_tables)

        def change(session: Connection) -> None:
            session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            # As the migration leaves it: the audit chain's head at the genesis hash.
            session.execute(
                audit_chain.insert().values(
                    id=CHAIN_ROW, last_id=0, prev_hash=GENESIS_HASH, hash=GENESIS_HASH
                )
            )

        await database.write(change)
    finally:
        await database.close()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    try:
        yield database
    finally:
        await database.close()
