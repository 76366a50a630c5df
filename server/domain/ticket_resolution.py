"""Saving a ticket's changes, and resolving it, inside the caller's unit of work: a technician's
`tickets resolve` and a run whose fix cleared (`sonde run --resolve-if-cleared`) resolve the
same way."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection

from sonde.server.domain.ticket_model import (
    TicketEventKind,
    TicketOutcome,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.ticket_waiting import current_wait, end_of_wait
from sonde.server.domain.timeline import append_event
from sonde.server.storage.tables import tickets

# Built once (PERFORMANCE.md: building statements per call costs 2-3x).
_SAVE = update(tickets).where(tickets.c.id == bindparam("saved_ticket_id"))


def save_ticket(
    connection: Connection,
    ticket: TicketRecord,
    now: datetime,
    *,
    responded: bool = False,
    **changes: Any,
) -> TicketRecord:
    """Write `changes` to the ticket and return it as it now is (no read back)."""
    changes["updated_at"] = now
    if responded and ticket.first_response_at is None:
        changes["first_response_at"] = now
    stored = {
        key: value.value if isinstance(value, enum.Enum) else value
        for key, value in changes.items()
    }
    connection.execute(_SAVE, {"saved_ticket_id": ticket.id, **stored})
    return dataclasses.replace(ticket, **changes)


def resolve_in(
    connection: Connection,
    actor: str,
    ticket: TicketRecord,
    resolution: str,
    now: datetime,
    *,
    outcome: TicketOutcome,
    time_spent_s: int = 0,
) -> TicketRecord:
    """Resolve `ticket` (locked, open: the caller checked) with `resolution` as its note, its
    outcome and the time spent added to its total; a wait it was in ends (its clock resumes
    stopped)."""
    changes = end_of_wait(connection, current_wait(connection, ticket), ticket, now)
    if time_spent_s:
        changes["time_spent_s"] = ticket.time_spent_s + time_spent_s
    append_event(
        connection,
        ticket.id,
        TicketEventKind.RESOLVED,
        actor,
        now,
        touch_ticket=False,
        body=resolution,
        from_status=ticket.status.value,
        to_status=TicketStatus.RESOLVED.value,
    )
    return save_ticket(
        connection,
        ticket,
        now,
        responded=True,
        status=TicketStatus.RESOLVED,
        resolution=resolution,
        resolved_at=now,
        outcome=outcome,
        **changes,
    )


def reopen_in(
    connection: Connection, actor: str, ticket: TicketRecord, reason: str, now: datetime
) -> TicketRecord:
    """Reopen `ticket` (locked, resolved or closed: the caller checked) with `reason` on its
    timeline: back to in progress when it has an assignee, else new."""
    status = TicketStatus.IN_PROGRESS if ticket.assignee else TicketStatus.NEW
    append_event(
        connection,
        ticket.id,
        TicketEventKind.REOPENED,
        actor,
        now,
        touch_ticket=False,
        body=reason,
        from_status=ticket.status.value,
        to_status=status.value,
    )
    return save_ticket(
        connection, ticket, now, status=status, resolution="", resolved_at=None, closed_at=None
    )
