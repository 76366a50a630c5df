"""The ticket events' feed the webhooks read: every event in (xact_id, id) order, each read
once it can no longer be overtaken.

PostgreSQL: an event's xact_id is its writing transaction's id (migration 0024), and only events
of transactions older than the reading snapshot's xmin are read: every transaction below xmin
has ended, so no event can later appear before a position already read, even when a transaction
that started first commits last. SQLite: xact_id is 0 and one writer commits ids in order, so
every committed event is readable. An endpoint's cursor is the last position it was sent.
Events are never deleted (tickets are not), so no id below a cursor is ever given again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, ColumnElement, Text, cast, func, literal, select, tuple_
from sqlalchemy.engine import Connection

from sonde.server.storage.tables import ticket_events, tickets

_EVENTS = ticket_events.c

# Where a new endpoint starts when the feed is empty.
FEED_START = (0, 0)


@dataclass(frozen=True, order=True)
class Position:
    """A place in the feed: (writing transaction, event id); compared as a pair."""

    xact: int
    event: int


@dataclass(frozen=True)
class FeedEvent:
    position: Position
    ticket_id: int
    kind: str
    actor: str
    at: datetime
    body: str
    from_status: str | None
    to_status: str | None
    assignee: str | None
    snapshot_id: int | None
    command_id: str | None
    # The ticket as it is when the event is read (not as it was when the event happened).
    title: str
    status: str
    priority: str
    level: str
    ticket_assignee: str | None
    requester: str


def horizon(connection: Connection) -> ColumnElement[bool]:
    """The condition an event must meet to be read: always true on SQLite."""
    if connection.dialect.name != "postgresql":
        return literal(True)
    xmin = func.pg_snapshot_xmin(func.pg_current_snapshot())  # xid8: by text to bigint
    return _EVENTS.xact_id < cast(cast(xmin, Text), BigInteger)


def after_columns(xact: ColumnElement[int], event: ColumnElement[int]) -> ColumnElement[bool]:
    """An event past a cursor (given, or an endpoint's columns): a row comparison, which both
    engines answer from the (xact_id, id) index in order, stopping at the LIMIT."""
    return tuple_(_EVENTS.xact_id, _EVENTS.id) > tuple_(xact, event)


def read_after(connection: Connection, position: Position, limit: int) -> list[FeedEvent]:
    """The next `limit` readable events after `position`, in feed order, with their ticket."""
    rows = connection.execute(
        select(
            _EVENTS.xact_id,
            _EVENTS.id,
            _EVENTS.ticket_id,
            _EVENTS.kind,
            _EVENTS.actor,
            _EVENTS.at,
            _EVENTS.body,
            _EVENTS.from_status,
            _EVENTS.to_status,
            _EVENTS.assignee,
            _EVENTS.snapshot_id,
            _EVENTS.command_id,
            tickets.c.title,
            tickets.c.status,
            tickets.c.priority,
            tickets.c.level,
            tickets.c.assignee.label("ticket_assignee"),
            tickets.c.requester,
        )
        .join(tickets, tickets.c.id == _EVENTS.ticket_id)
        .where(
            after_columns(literal(position.xact, BigInteger), literal(position.event, BigInteger)),
            horizon(connection),
        )
        .order_by(_EVENTS.xact_id, _EVENTS.id)
        .limit(limit)
    ).all()
    return [
        FeedEvent(
            position=Position(int(row.xact_id), int(row.id)),
            ticket_id=int(row.ticket_id),
            kind=row.kind,
            actor=row.actor,
            at=row.at,
            body=row.body,
            from_status=row.from_status,
            to_status=row.to_status,
            assignee=row.assignee,
            snapshot_id=row.snapshot_id,
            command_id=row.command_id,
            title=row.title,
            status=row.status,
            priority=row.priority,
            level=row.level,
            ticket_assignee=row.ticket_assignee,
            requester=row.requester,
        )
        for row in rows
    ]


def feed_end(connection: Connection) -> Position:
    """The last readable position: where a new endpoint starts (it is sent what comes next)."""
    row = connection.execute(
        select(_EVENTS.xact_id, _EVENTS.id)
        .where(horizon(connection))
        .order_by(_EVENTS.xact_id.desc(), _EVENTS.id.desc())
        .limit(1)
    ).first()
    return Position(*FEED_START) if row is None else Position(int(row[0]), int(row[1]))


def pending_count(connection: Connection, position: Position, kinds: Sequence[str]) -> int:
    """How many events of `kinds` (all when empty) were written after `position`."""
    query = (
        select(func.count())
        .select_from(ticket_events)
        .where(
            after_columns(literal(position.xact, BigInteger), literal(position.event, BigInteger))
        )
    )
    if kinds:
        query = query.where(_EVENTS.kind.in_(list(kinds)))
    return int(connection.execute(query).scalar_one())
