"""Appending to a ticket's timeline, inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from sonde.server.storage.tables import ticket_events, tickets


async def append_event(
    session: AsyncSession,
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
    touch_ticket: bool = True,
) -> int:
    """Add one event and bump the ticket's updated_at (unless the caller updates the ticket
    itself in the same transaction: one statement less per ticket change); returns its id."""
    event_id = (
        await session.execute(
            ticket_events.insert()
            .values(
                ticket_id=ticket_id,
                kind=kind,
                actor=actor,
                at=at,
                body=body,
                from_status=from_status,
                to_status=to_status,
                assignee=assignee,
                snapshot_id=snapshot_id,
            )
            .returning(ticket_events.c.id)
        )
    ).scalar_one()
    if touch_ticket:
        await session.execute(
            update(tickets).where(tickets.c.id == ticket_id).values(updated_at=at)
        )
    return int(event_id)
