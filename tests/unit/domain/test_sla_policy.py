"""SLA policies: which policy applies, and a ticket's clock in business hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sonde.server.domain.business_calendar import parse_calendar
from sonde.server.domain.sla_policy import (
    NoSlaPolicy,
    SlaPolicy,
    SlaState,
    choose_policy,
    sla_clock,
)
from sonde.server.domain.ticket_model import TicketPriority

H = timedelta(hours=1)
CAL = parse_calendar({"time_zone": "UTC", "hours": {"mon-fri": "08:00-18:00"}})
DEFAULT = SlaPolicy("default p2", None, TicketPriority.P2, 2 * H, 8 * H, "office")
ACME = SlaPolicy("acme p2", "acme", TicketPriority.P2, 1 * H, 4 * H, "office")


def test_choose_policy() -> None:
    assert choose_policy([DEFAULT, ACME], "acme", TicketPriority.P2) is ACME
    assert choose_policy([DEFAULT, ACME], "other", TicketPriority.P2) is DEFAULT
    with pytest.raises(NoSlaPolicy, match="p1"):
        choose_policy([DEFAULT, ACME], "acme", TicketPriority.P1)


def test_clock_states() -> None:
    opened = datetime(2026, 6, 5, 16, tzinfo=UTC)  # Friday 16:00
    # Monday 07:00: 2 business hours consumed of 2 (response) and of 8 (resolve).
    clock = sla_clock(
        DEFAULT,
        CAL,
        opened_at=opened,
        first_response_at=None,
        resolved_at=None,
        pauses=[],
        now=datetime(2026, 6, 8, 7, tzinfo=UTC),
    )
    assert clock.response.due_at == datetime(2026, 6, 5, 18, tzinfo=UTC)
    assert clock.response.state is SlaState.BREACHED
    assert clock.resolve.due_at == datetime(2026, 6, 8, 14, tzinfo=UTC)
    assert clock.resolve.state is SlaState.OK
    # Answered Friday 17:00, now Monday 13:00: resolve at 7/8 -> at risk.
    clock = sla_clock(
        DEFAULT,
        CAL,
        opened_at=opened,
        first_response_at=datetime(2026, 6, 5, 17, tzinfo=UTC),
        resolved_at=None,
        pauses=[],
        now=datetime(2026, 6, 8, 13, tzinfo=UTC),
    )
    assert clock.response.state is SlaState.MET
    assert clock.resolve.state is SlaState.AT_RISK
    # A wait on the requester Monday 08:00-12:00 moves the resolve due time to 18:00.
    pause = (datetime(2026, 6, 8, 8, tzinfo=UTC), datetime(2026, 6, 8, 12, tzinfo=UTC))
    clock = sla_clock(
        DEFAULT,
        CAL,
        opened_at=opened,
        first_response_at=None,
        resolved_at=None,
        pauses=[pause],
        now=datetime(2026, 6, 8, 13, tzinfo=UTC),
    )
    assert clock.resolve.due_at == datetime(2026, 6, 8, 18, tzinfo=UTC)
    assert clock.resolve.consumed == 3 * H
