from __future__ import annotations

from datetime import timedelta

import pytest

from sonde.server.domain import sla
from sonde.server.domain.ticket_model import TicketPriority
from tests.unit.domain.builders import T0


@pytest.mark.parametrize(
    ("priority", "respond", "resolve"),
    [
        (TicketPriority.P1, timedelta(hours=1), timedelta(hours=4)),
        (TicketPriority.P2, timedelta(hours=4), timedelta(hours=8)),
        (TicketPriority.P3, timedelta(hours=8), timedelta(days=3)),
        (TicketPriority.P4, timedelta(hours=24), timedelta(days=5)),
    ],
)
def test_due_times_follow_the_priority(
    priority: TicketPriority, respond: timedelta, resolve: timedelta
) -> None:
    due = sla.due_times(priority, T0)
    assert (due.response_due_at, due.resolve_due_at) == (T0 + respond, T0 + resolve)


def test_breaches() -> None:
    due = T0 + timedelta(hours=1)
    assert not sla.response_breached(due, None, T0)
    assert sla.response_breached(due, None, due + timedelta(seconds=1))
    assert not sla.response_breached(due, T0, due + timedelta(days=1))
    assert sla.resolve_breached(due, due + timedelta(minutes=1), T0)
