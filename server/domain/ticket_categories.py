"""The admin's tree of request categories (workstation, printing, network, Office, business
application, account, ...): L1 sets one on intake, L2 confirms or corrects it on taking an
escalated ticket, and SLA policies, reports and knowledge-base matches use it.

A category is a path of slugs, `printing/spooler`: lower-case letters, digits and dashes, at
most four levels, its parent added first. A category is never deleted, since tickets name it:
it is retired, and then offered no more (a ticket cannot be given it) while the tickets that
have it keep it. Adding and retiring are admin's (`categories.manage`, checked with every
console method's permission in api/auth.py), audited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Principal
from sonde.server.domain.text import checked_text
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import ticket_categories

MAX_DEPTH = 4
MAX_PATH_CHARS = 120
MAX_TITLE_CHARS = 200
MAX_CATEGORIES = 2000
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")


@dataclass(frozen=True)
class Category:
    path: str
    title: str
    created_by: str
    created_at: datetime
    retired_at: datetime | None

    @property
    def parent(self) -> str | None:
        return self.path.rpartition("/")[0] or None


def checked_path(path: str) -> str:
    """`path` normalised (lower case, no surrounding slashes), or InvalidArgument saying why."""
    cleaned = path.strip().strip("/").lower()
    if not cleaned or len(cleaned) > MAX_PATH_CHARS:
        raise InvalidArgument(
            f"a category is a path like printing/spooler of at most {MAX_PATH_CHARS} "
            f"characters, got {path[:40]!r}"
        )
    parts = cleaned.split("/")
    if len(parts) > MAX_DEPTH:
        raise InvalidArgument(f"{cleaned!r} is {len(parts)} levels deep; at most {MAX_DEPTH}")
    for part in parts:
        if not _SLUG.fullmatch(part):
            raise InvalidArgument(
                f"{part[:40]!r} in {cleaned[:60]!r} is not a category name: lower-case "
                "letters, digits and dashes, at most 40"
            )
    return cleaned


def _category(row: object) -> Category:
    return Category(
        path=row.path,  # type: ignore[attr-defined]
        title=row.title,  # type: ignore[attr-defined]
        created_by=row.created_by,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        retired_at=row.retired_at,  # type: ignore[attr-defined]
    )


def find_category(connection: Connection, path: str) -> Category | None:
    row = connection.execute(
        select(ticket_categories).where(ticket_categories.c.path == path)
    ).first()
    return None if row is None else _category(row)


def offered_category(connection: Connection, path: str) -> str:
    """The category a ticket may be given now: known and not retired; the refusal names the
    nearest ones when it is not."""
    checked = checked_path(path)
    found = find_category(connection, checked)
    if found is None:
        under = checked.rpartition("/")[0]
        nearby = select(ticket_categories.c.path).where(ticket_categories.c.retired_at.is_(None))
        if under:
            nearby = nearby.where(ticket_categories.c.path.like(f"{under}/%"))
        siblings = connection.execute(nearby.order_by(ticket_categories.c.path).limit(8)).scalars()
        known = ", ".join(siblings)
        raise NotFound(
            f"no category {checked!r}"
            + (f"; there are {known}" if known else ": an admin adds it with `sonde category add`")
        )
    if found.retired_at is not None:
        raise Conflict(f"the category {checked!r} is retired: choose another")
    return checked


class TicketCategories:
    def __init__(self, db: Database, writes: AuditedWrites, clock: Clock = utc_now) -> None:
        self._db = db
        self._writes = writes
        self._clock = clock

    async def list(self, *, include_retired: bool = False) -> list[Category]:
        def unit(connection: Connection) -> list[Category]:
            query = select(ticket_categories).order_by(ticket_categories.c.path)
            if not include_retired:
                query = query.where(ticket_categories.c.retired_at.is_(None))
            return [_category(row) for row in connection.execute(query)]

        return await self._db.read(unit)

    async def add(self, actor: Principal, path: str, title: str) -> Category:
        def unit(connection: Connection, entry: AuditEntry) -> Category:
            checked = checked_path(path)
            name = checked_text(
                "the title", title, max_chars=MAX_TITLE_CHARS, required=True, multiline=False
            )
            entry.detail |= {"category": checked}
            if find_category(connection, checked) is not None:
                raise Conflict(f"the category {checked!r} exists already")
            parent = checked.rpartition("/")[0]
            if parent:
                above = find_category(connection, parent)
                if above is None:
                    raise NotFound(f"add {parent!r} first: {checked!r} goes under it")
                if above.retired_at is not None:
                    raise Conflict(f"{parent!r} is retired: nothing new goes under it")
            count = connection.execute(select(func.count()).select_from(ticket_categories))
            if count.scalar_one() >= MAX_CATEGORIES:
                raise Conflict(f"there are {MAX_CATEGORIES} categories already: retire some")
            category = Category(checked, name, actor.name, self._clock(), None)
            connection.execute(
                ticket_categories.insert(),
                {
                    "path": category.path,
                    "title": category.title,
                    "created_by": category.created_by,
                    "created_at": category.created_at,
                },
            )
            return category

        return await self._writes.run(actor.name, "category.add", unit, peer=actor.peer)

    async def retire(self, actor: Principal, path: str) -> Category:
        """Retire `path` and everything under it: offered no more, kept by their tickets."""

        def unit(connection: Connection, entry: AuditEntry) -> Category:
            checked = checked_path(path)
            entry.detail |= {"category": checked}
            found = find_category(connection, checked)
            if found is None:
                raise NotFound(f"no category {checked!r}")
            if found.retired_at is not None:
                raise Conflict(f"the category {checked!r} is retired already")
            now = self._clock()
            retired = connection.execute(
                ticket_categories.update()
                .where(
                    (ticket_categories.c.path == checked)
                    | ticket_categories.c.path.like(f"{checked}/%")
                )
                .where(ticket_categories.c.retired_at.is_(None))
                .values(retired_at=now)
            ).rowcount
            entry.detail["retired"] = retired
            return Category(found.path, found.title, found.created_by, found.created_at, now)

        return await self._writes.run(actor.name, "category.retire", unit, peer=actor.peer)
