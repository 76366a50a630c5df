"""SLA policies: business-hours targets per priority and per contract, and a ticket's clock.

A policy names its contract (a customer group; None is the default for everyone), a priority,
response and resolve targets in business time on a named calendar, the share of a target after
which it is at risk (0.75) and what at risk does (notify or escalate). choose_policy takes the
contract's own policy for the priority, else the default one. Tickets with no policy keep the
wall-clock targets of sla.py.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sonde.server.domain.business_calendar import (
    BusinessCalendar,
    Pause,
    add_business_time,
    business_time_between,
)
from sonde.server.domain.ticket_model import TicketPriority


class NoSlaPolicy(LookupError):
    """No policy covers this contract and priority, not even a default one."""


class SlaState(enum.StrEnum):
    OK = "ok"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    MET = "met"


@dataclass(frozen=True)
class SlaPolicy:
    name: str
    contract: str | None
    priority: TicketPriority
    response_within: timedelta
    resolve_within: timedelta
    calendar: str
    at_risk_share: float = 0.75
    on_risk: Literal["notify", "escalate"] = "notify"

    def __post_init__(self) -> None:
        if self.response_within <= timedelta(0) or self.resolve_within <= timedelta(0):
            raise ValueError(f"policy {self.name!r}: targets must be positive")
        if not 0 < self.at_risk_share <= 1:
            raise ValueError(f"policy {self.name!r}: at_risk_share must be in (0, 1]")


def choose_policy(
    policies: Iterable[SlaPolicy], contract: str | None, priority: TicketPriority
) -> SlaPolicy:
    candidates = [p for p in policies if p.priority is priority]
    for wanted in (contract, None) if contract is not None else (None,):
        for policy in candidates:
            if policy.contract == wanted:
                return policy
    raise NoSlaPolicy(f"no SLA policy for contract {contract!r} at priority {priority.value}")


@dataclass(frozen=True)
class SlaTarget:
    due_at: datetime | None  # None while an open pause stops the clock
    consumed: timedelta
    share: float
    state: SlaState


@dataclass(frozen=True)
class SlaClock:
    response: SlaTarget
    resolve: SlaTarget


def _target(
    policy: SlaPolicy,
    calendar: BusinessCalendar,
    *,
    opened_at: datetime,
    within: timedelta,
    done_at: datetime | None,
    pauses: Sequence[Pause],
    now: datetime,
) -> SlaTarget:
    end = done_at if done_at is not None else now
    consumed = business_time_between(calendar, opened_at, end, pauses)
    open_pause = any(to is None and start < end for start, to in pauses)
    due_at = None if open_pause else add_business_time(calendar, opened_at, within, pauses)
    share = consumed / within
    if done_at is not None:
        state = SlaState.MET if consumed <= within else SlaState.BREACHED
    elif consumed >= within:
        state = SlaState.BREACHED
    elif share >= policy.at_risk_share:
        state = SlaState.AT_RISK
    else:
        state = SlaState.OK
    return SlaTarget(due_at=due_at, consumed=consumed, share=share, state=state)


def sla_clock(
    policy: SlaPolicy,
    calendar: BusinessCalendar,
    *,
    opened_at: datetime,
    first_response_at: datetime | None,
    resolved_at: datetime | None,
    pauses: Sequence[Pause],
    now: datetime,
) -> SlaClock:
    """Response and resolve targets of a ticket at now; pauses stop only the resolve clock."""
    return SlaClock(
        response=_target(
            policy,
            calendar,
            opened_at=opened_at,
            within=policy.response_within,
            done_at=first_response_at,
            pauses=(),
            now=now,
        ),
        resolve=_target(
            policy,
            calendar,
            opened_at=opened_at,
            within=policy.resolve_within,
            done_at=resolved_at,
            pauses=pauses,
            now=now,
        ),
    )
