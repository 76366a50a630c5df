"""The people who called before, found by the start of any word of their name or address, with
the machines their tickets were about: what a technician taking a phone call needs while the
caller talks (`sonde requester find`, `sonde ticket open --requester PREFIX`, docs/tickets.md).

Requesters are the text tickets were opened with ("Marie Dupont <marie@example.org>"), not a
directory of people: the same person typed two ways is two requesters. A requester's machines
are the agents of their tickets, the most used first, then the most recent; their usual machine
is the one of their last ticket with a machine, when at least one of their tickets had one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from sonde.server.domain.text import checked_text, like_prefix
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, tickets

MAX_FOUND = 20
MAX_MACHINES = 3
MAX_PREFIX = 100


@dataclass(frozen=True)
class RequesterMachine:
    agent_id: str
    hostname: str
    tickets: int
    last_at: datetime


@dataclass(frozen=True)
class KnownRequester:
    requester: str
    tickets: int
    last_at: datetime
    machines: tuple[RequesterMachine, ...]  # the most used first

    @property
    def usual_machine(self) -> RequesterMachine | None:
        return max(self.machines, key=lambda machine: machine.last_at, default=None)


def _matching(prefix: str) -> ColumnElement[bool]:
    """The start of the text, or of any word in it: after a space, `<`, `(`, a dot or `@`."""
    pattern = like_prefix(prefix.lower())
    text = func.lower(tickets.c.requester)
    return or_(
        text.like(pattern, escape="\\"),
        *(text.like(f"%{before}{pattern}", escape="\\") for before in (" ", "<", "(", ".", "@")),
    )


def find_in(connection: Connection, prefix: str, limit: int = MAX_FOUND) -> list[KnownRequester]:
    prefix = checked_text("the requester", prefix, max_chars=MAX_PREFIX, required=True)
    found = connection.execute(
        select(
            tickets.c.requester,
            func.count().label("tickets"),
            func.max(tickets.c.created_at).label("last_at"),
        )
        .where(tickets.c.requester != "", _matching(prefix))
        .group_by(tickets.c.requester)
        .order_by(func.max(tickets.c.created_at).desc(), tickets.c.requester)
        .limit(min(max(limit, 1), MAX_FOUND))
    ).all()
    if not found:
        return []
    machines: dict[str, list[RequesterMachine]] = {}
    for row in connection.execute(
        select(
            tickets.c.requester,
            agents.c.id,
            agents.c.hostname,
            func.count().label("tickets"),
            func.max(tickets.c.created_at).label("last_at"),
        )
        .join(agents, agents.c.id == tickets.c.agent_id)
        .where(tickets.c.requester.in_([row.requester for row in found]))
        .where(agents.c.revoked_at.is_(None), agents.c.removed_at.is_(None))
        .group_by(tickets.c.requester, agents.c.id, agents.c.hostname)
        .order_by(func.count().desc(), func.max(tickets.c.created_at).desc())
    ):
        kept = machines.setdefault(row.requester, [])
        if len(kept) < MAX_MACHINES:
            kept.append(
                RequesterMachine(str(row.id), str(row.hostname), int(row.tickets), row.last_at)
            )
    return [
        KnownRequester(
            str(row.requester),
            int(row.tickets),
            row.last_at,
            tuple(machines.get(row.requester, ())),
        )
        for row in found
    ]


class Requesters:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, prefix: str, limit: int = MAX_FOUND) -> list[KnownRequester]:
        return await self._db.read(lambda connection: find_in(connection, prefix, limit))
