"""A command as a technician types it: its whole id, or the start of it that the CLI's
tables show (8 characters or more, unique among the rows), as git takes a commit."""

from __future__ import annotations

import re

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.storage.tables import commands

# The shortest start of an id taken: the CLI shows at least this much.
MIN_PREFIX_CHARS = 8
_AMBIGUOUS_SHOWN = 5
_HEX_PREFIX = re.compile(r"[0-9a-f]+")
_EXACT = select(commands.c.id).where(commands.c.id == bindparam("command_id"))
_BY_PREFIX = (
    select(commands.c.id)
    .where(commands.c.id.like(bindparam("pattern")))
    .order_by(commands.c.id)
    .limit(_AMBIGUOUS_SHOWN + 1)
)


def resolve_command_id(connection: Connection, ref: str) -> str:
    """The id of the command `ref` names: its whole id, or the start of exactly one
    command's id. A start shared by several is refused with them; none is NotFound."""
    if connection.execute(_EXACT, {"command_id": ref}).first() is not None:
        return ref
    key = ref.lower()
    if not _HEX_PREFIX.fullmatch(key):
        raise NotFound(f"no command {ref!r}: ids are hexadecimal (sonde commands shows them)")
    if len(key) < MIN_PREFIX_CHARS:
        raise NotFound(
            f"no command {ref!r}: give the whole id or its first {MIN_PREFIX_CHARS} "
            "characters or more"
        )
    rows = connection.execute(_BY_PREFIX, {"pattern": f"{key}%"}).all()
    if not rows:
        raise NotFound(f"no command has an id starting {key!r}")
    if len(rows) > 1:
        shown = ", ".join(row.id for row in rows[:_AMBIGUOUS_SHOWN])
        more = " and more" if len(rows) > _AMBIGUOUS_SHOWN else ""
        raise InvalidArgument(f"{key!r} is ambiguous: commands {shown}{more}; give more of the id")
    return str(rows[0].id)
