"""A machine's diagnostics in order: the one before a given one (`sonde snapshot diff`)."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select

from sonde.server.storage.db import Database
from sonde.server.storage.tables import snapshots

_PREVIOUS = select(func.max(snapshots.c.id)).where(
    snapshots.c.agent_id
    == select(snapshots.c.agent_id)
    .where(snapshots.c.id == bindparam("snapshot_id"))
    .scalar_subquery(),
    snapshots.c.id < bindparam("snapshot_id"),
)


async def previous_snapshot_id(db: Database, snapshot_id: int) -> int | None:
    """The same machine's diagnostic stored just before `snapshot_id`, if there is one."""
    found = await db.read(
        lambda connection: connection.execute(_PREVIOUS, {"snapshot_id": snapshot_id}).scalar()
    )
    return None if found is None else int(found)
