"""Appending to a ticket's timeline, inside the caller's unit of work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection

from sonde.server.storage.driver import DriverStatement
from sonde.server.storage.tables import ticket_events, tickets

# Built once and run on SQLite's own cursor: appending an event is on every ticket change.
_INSERT_EVENT = DriverStatement(ticket_events.insert().returning(ticket_events.c.id))
_TOUCH_TICKET = DriverStatement(
    update(tickets)
    .where(tickets.c.id == bindparam("event_ticket_id"))
    .values(updated_at=bindparam("event_at"))
)


def append_event(
    connection: Connection,
    ticket_id: int,
    kind: str,
    actor: str,
    at: datetime,
    *,
    body: str = "",
    from_status: str | None = None,
    to_status: str | None = None,
    assignee: str | None = None,
    snapshot_id: int | None = None,
    command_id: str | None = None,
    touch_ticket: bool = True,
) -> int:
    """Add one event and bump the ticket's updated_at (unless the caller updates the ticket
    itself in the same transaction: one statement less per ticket change); returns its id."""
    event_id = _INSERT_EVENT.scalar(
        connection,
        {
            "ticket_id": ticket_id,
            "kind": kind,
            "actor": actor,
            "at": at,
            "body": body,
            "from_status": from_status,
            "to_status": to_status,
            "assignee": assignee,
            "snapshot_id": snapshot_id,
            "command_id": command_id,
        },
    )
    if touch_ticket:
        _TOUCH_TICKET.rows(connection, {"event_ticket_id": ticket_id, "event_at": at})
    return int(event_id)
