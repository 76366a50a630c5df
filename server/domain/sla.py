"""Service levels: when a ticket must first be answered and when it must be resolved.

Wall-clock durations from the moment the ticket is opened; "one business day" for P2 is
counted as 8 hours. The business-hours arithmetic and per-contract policies are in
business_calendar.py and sla_policy.py (docs/sla.md), not yet used by tickets. The resolve
clock pauses while a ticket waits on the requester: when the wait ends its due time moves later
by the wait. See docs/tickets.md.
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


def resolve_breached(
    resolve_due_at: datetime,
    resolved_at: datetime | None,
    now: datetime,
    *,
    waiting_since: datetime | None = None,
) -> bool:
    """True when it was resolved late, or is open and now late; a waiting ticket is judged
    as of when it began to wait (its clock is paused)."""
    if resolved_at is not None:
        return resolved_at > resolve_due_at
    return (waiting_since or now) > resolve_due_at


def paused_due(resolve_due_at: datetime, waiting_since: datetime, wait_ended: datetime) -> datetime:
    """The resolve due time once a wait on the requester ends: later by the time the ticket
    waited, because the resolve clock does not run while the helpdesk cannot act."""
    return resolve_due_at + max(wait_ended - waiting_since, timedelta(0))
