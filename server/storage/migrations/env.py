"""Alembic environment: runs migrations over Sonde's async engine with run_sync."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from sonde.server.storage.db import create_engine
from sonde.server.storage.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migrate_online() -> None:
    url = config.attributes.get("sonde_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: call sonde.server.storage.db.migrate(url)")
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError(
        "Sonde migrations run online only: call sonde.server.storage.db.migrate(url)"
    )
asyncio.run(_migrate_online())
