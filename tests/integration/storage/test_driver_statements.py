"""DriverStatement: the same rows, stored and returned, as SQLAlchemy's own execution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.engine import Connection

from sonde.server.storage.db import Database
from sonde.server.storage.driver import DriverStatement
from sonde.server.storage.tables import agents, users

AT = datetime(2026, 3, 2, 9, 0, 0, 0, tzinfo=UTC)  # no microseconds: the stored text still has them
LATER = datetime(2026, 3, 2, 11, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))

_ADD = DriverStatement(users.insert().returning(users.c.id, users.c.name, users.c.created_at))
_RENAME = DriverStatement(
    update(users)
    .where(users.c.name == bindparam("old_name"), users.c.role != "admin")
    .values(created_by=bindparam("new_by"), created_at=bindparam("new_at"))
    .returning(users.c.created_by, users.c.created_at)
)


async def test_an_insert_stores_what_core_stores_and_returns_python_values(db: Database) -> None:
    def unit(connection: Connection) -> list[tuple[Any, ...]]:
        connection.execute(
            users.insert().values(name="core", role="l1", created_by="t", created_at=AT)
        )
        return _ADD.rows(
            connection, {"name": "driver", "role": "l1", "created_by": "t", "created_at": AT}
        )

    before = db.counters.copy()
    [(user_id, name, created_at)] = await db.write(unit)
    assert (db.counters - before).statements == 2
    assert (name, created_at) == ("driver", AT)
    assert isinstance(user_id, int)
    assert created_at.tzinfo is not None
    # Stored alike, down to SQLite's text (whose order is time order).
    stored = await db.read(
        lambda c: c.execute(text("SELECT name, created_at FROM users ORDER BY name")).all()
    )
    assert stored[0][1] == stored[1][1]


async def test_an_update_binds_where_values_and_the_statements_own(db: Database) -> None:
    await db.write(
        lambda c: c.execute(
            users.insert().values(name="ann", role="l1", created_by="t", created_at=AT)
        )
    )
    values = {"old_name": "ann", "new_by": "bob", "new_at": LATER}
    assert await db.write(lambda c: _RENAME.rows(c, values)) == [("bob", LATER)]
    assert await db.write(lambda c: _RENAME.rows(c, {**values, "old_name": "nobody"})) == []
    row = await db.read(lambda c: c.execute(select(users.c.created_by, users.c.created_at)).one())
    assert tuple(row) == ("bob", LATER)


async def test_a_failing_statement_rolls_its_unit_back(db: Database) -> None:
    def unit(connection: Connection) -> None:
        _ADD.rows(connection, {"name": "ann", "role": "l1", "created_by": "t", "created_at": AT})
        _ADD.rows(connection, {"name": "ann", "role": "l1", "created_by": "t", "created_at": AT})

    with pytest.raises(Exception, match=r"(?i)unique"):
        await db.write(unit)
    assert await db.read(lambda c: c.execute(select(users.c.id)).all()) == []


async def test_a_column_default_left_out_is_refused_on_sqlite_not_guessed(db: Database) -> None:
    # agents.os_name has a Python-side default, which only SQLAlchemy's execution computes.
    enroll = DriverStatement(agents.insert())
    values = {
        "id": "a" * 26,
        "hostname": "pc",
        "hostname_key": "pc",
        "platform": "linux",
        "cert_fingerprint": "f",
        "enrolled_at": AT,
    }
    if db.dialect == "sqlite":
        with pytest.raises(ValueError, match="give every column a value"):
            await db.write(lambda c: enroll.rows(c, values))
    else:  # PostgreSQL runs it through SQLAlchemy, defaults and all
        await db.write(lambda c: enroll.rows(c, values))
        assert await db.read(lambda c: c.execute(select(agents.c.os_name)).scalar()) == ""
