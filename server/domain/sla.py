"""Service levels: when a ticket must first be answered and when it must be resolved.

Wall-clock durations from the moment the ticket is opened (business hours come later);
"one business day" for P2 is counted as 8 hours. See docs/tickets.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sonde.server.domain.ticket_model import TicketPriority

RESPONSE_WITHIN: dict[TicketPriority, timedelta] = {
    TicketPriority.P1: timedelta(hours=1),
    TicketPriority.P2: timedelta(hours=4),
    TicketPriority.P3: timedelta(hours=8),
    TicketPriority.P4: timedelta(hours=24),
}

RESOLVE_WITHIN: dict[TicketPriority, timedelta] = {
    TicketPriority.P1: timedelta(hours=4),
    TicketPriority.P2: timedelta(hours=8),
    TicketPriority.P3: timedelta(days=3),
    TicketPriority.P4: timedelta(days=5),
}


@dataclass(frozen=True)
class SlaDueTimes:
    response_due_at: datetime
    resolve_due_at: datetime


def due_times(priority: TicketPriority, opened_at: datetime) -> SlaDueTimes:
    return SlaDueTimes(
        response_due_at=opened_at + RESPONSE_WITHIN[priority],
        resolve_due_at=opened_at + RESOLVE_WITHIN[priority],
    )


def response_breached(
    response_due_at: datetime, first_response_at: datetime | None, now: datetime
) -> bool:
    """True when the first answer came late, or has not come and is now late."""
    answered_or_now = first_response_at if first_response_at is not None else now
    return answered_or_now > response_due_at


def resolve_breached(resolve_due_at: datetime, resolved_at: datetime | None, now: datetime) -> bool:
    resolved_or_now = resolved_at if resolved_at is not None else now
    return resolved_or_now > resolve_due_at
