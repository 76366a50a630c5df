"""SLA compliance over a period (`sonde sla report --from --to`), per contract, per technician
and per category, with every breach listed (docs/sla.md).

Two clocks are judged:
- response: the tickets opened in [from, to). Met when the first answer came by its due
  time, breached when it came late or has not come and the due time is past, else pending.
- resolve: the tickets resolved in [from, to), met or breached by their resolve due time
  (moved later by every wait on the requester), and the tickets still open, not waiting,
  whose resolve due time fell in [from, to) and is past: breached, still open.

The technician of a resolved ticket is who resolved it (its last resolve); of an open one, its
assignee ("-" for nobody). A ticket's category is its path in the admin's tree ("-" for
none). Compliance is met / (met + breached); pending ones count in neither.
At most MAX_TICKETS tickets a report: a longer period is refused, saying so, rather than cut.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.ticket_model import TicketEventKind, TicketStatus
from sonde.server.errors import InvalidArgument
from sonde.server.storage.db import Database
from sonde.server.storage.tables import sla_policies, ticket_events, tickets

MAX_TICKETS = 100_000
MAX_SPAN = timedelta(days=3660)
_OPEN_RUNNING = (TicketStatus.NEW.value, TicketStatus.IN_PROGRESS.value)


@dataclass
class Compliance:
    met: int = 0
    breached: int = 0
    pending: int = 0

    @property
    def share_met(self) -> float | None:
        judged = self.met + self.breached
        return self.met / judged if judged else None


@dataclass
class GroupFigures:
    response: Compliance = field(default_factory=Compliance)
    resolve: Compliance = field(default_factory=Compliance)


@dataclass(frozen=True)
class Breach:
    ticket_id: int
    title: str
    contract: str
    priority: str
    clock: str  # response | resolve
    due_at: datetime
    done_at: datetime | None  # None: not done yet
    late_s: int  # by how much, as of the report's end for one not done
    technician: str
    policy: str  # "" for the default wall-clock targets
    category: str  # "" for none


@dataclass
class SlaReport:
    since: datetime
    until: datetime
    overall: GroupFigures
    by_contract: dict[str, GroupFigures]
    by_technician: dict[str, GroupFigures]
    by_category: dict[str, GroupFigures]
    breaches: list[Breach]


def _period_tickets(connection: Connection, since: datetime, until: datetime) -> list[Any]:
    opened_in = and_(tickets.c.created_at >= since, tickets.c.created_at < until)
    resolved_in = and_(tickets.c.resolved_at >= since, tickets.c.resolved_at < until)
    overdue_in = and_(
        tickets.c.status.in_(_OPEN_RUNNING),
        tickets.c.resolve_due_at >= since,
        tickets.c.resolve_due_at < until,
    )
    query = (
        select(
            tickets.c.id,
            tickets.c.title,
            tickets.c.contract,
            tickets.c.priority,
            tickets.c.status,
            tickets.c.assignee,
            tickets.c.category,
            tickets.c.created_at,
            tickets.c.response_due_at,
            tickets.c.first_response_at,
            tickets.c.resolve_due_at,
            tickets.c.resolved_at,
            sla_policies.c.name.label("policy"),
        )
        .outerjoin(sla_policies, sla_policies.c.id == tickets.c.sla_policy_id)
        .where(or_(opened_in, resolved_in, overdue_in))
        .order_by(tickets.c.id)
        .limit(MAX_TICKETS + 1)
    )
    return list(connection.execute(query))


def _resolvers(connection: Connection, ticket_ids: list[int]) -> dict[int, str]:
    """Who last resolved each ticket."""
    found: dict[int, str] = {}
    for start in range(0, len(ticket_ids), 5000):
        chunk = ticket_ids[start : start + 5000]
        last = (
            select(func.max(ticket_events.c.id))
            .where(
                ticket_events.c.ticket_id.in_(chunk),
                ticket_events.c.kind == TicketEventKind.RESOLVED.value,
            )
            .group_by(ticket_events.c.ticket_id)
        )
        rows = connection.execute(
            select(ticket_events.c.ticket_id, ticket_events.c.actor).where(
                ticket_events.c.id.in_(last)
            )
        )
        found.update({int(row.ticket_id): str(row.actor) for row in rows})
    return found


def _judge(due: datetime, done: datetime | None, until: datetime, now: datetime) -> tuple[str, int]:
    """met, breached or pending, and how late (seconds)."""
    if done is not None:
        late = int((done - due).total_seconds())
        return ("breached", late) if late > 0 else ("met", 0)
    as_of = min(until, now)
    if as_of > due:
        return "breached", int((as_of - due).total_seconds())
    return "pending", 0


class SlaReports:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def report(self, since: datetime, until: datetime) -> SlaReport:
        if until <= since:
            raise InvalidArgument(f"the period ends ({until:%Y-%m-%d}) before it starts")
        if until - since > MAX_SPAN:
            raise InvalidArgument(f"a report covers at most {MAX_SPAN.days} days")
        now = self._clock()

        def unit(connection: Connection) -> SlaReport:
            rows = _period_tickets(connection, since, until)
            if len(rows) > MAX_TICKETS:
                raise InvalidArgument(
                    f"over {MAX_TICKETS} tickets in that period: report a shorter one"
                )
            resolvers = _resolvers(
                connection,
                [r.id for r in rows if r.resolved_at is not None],
            )
            return self._tally(rows, resolvers, since, until, now)

        return await self._db.read(unit)

    @staticmethod
    def _tally(
        rows: list[Any],
        resolvers: dict[int, str],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> SlaReport:
        overall = GroupFigures()
        by_contract: dict[str, GroupFigures] = defaultdict(GroupFigures)
        by_technician: dict[str, GroupFigures] = defaultdict(GroupFigures)
        by_category: dict[str, GroupFigures] = defaultdict(GroupFigures)
        breaches: list[Breach] = []
        for r in rows:
            technician = resolvers.get(r.id) or r.assignee or "-"
            groups = (
                overall,
                by_contract[r.contract or "(default)"],
                by_technician[technician],
                by_category[r.category or "-"],
            )
            judged: list[tuple[str, datetime, datetime | None]] = []
            if since <= r.created_at < until:
                judged.append(("response", r.response_due_at, r.first_response_at))
            resolved_in = r.resolved_at is not None and since <= r.resolved_at < until
            overdue = (
                r.resolved_at is None
                and r.status in _OPEN_RUNNING
                and since <= r.resolve_due_at < until
            )
            if resolved_in or overdue:
                judged.append(("resolve", r.resolve_due_at, r.resolved_at))
            for clock, due, done in judged:
                state, late = _judge(due, done, until, now)
                if clock == "resolve" and done is None and state == "pending":
                    continue  # not yet due: not this period's to judge
                for group in groups:
                    tally = group.response if clock == "response" else group.resolve
                    setattr(tally, state, getattr(tally, state) + 1)
                if state == "breached":
                    breaches.append(
                        Breach(
                            ticket_id=int(r.id),
                            title=r.title,
                            contract=r.contract,
                            priority=r.priority,
                            clock=clock,
                            due_at=due,
                            done_at=done,
                            late_s=late,
                            technician=technician,
                            policy=r.policy or "",
                            category=r.category or "",
                        )
                    )
        return SlaReport(
            since=since,
            until=until,
            overall=overall,
            by_contract=dict(sorted(by_contract.items())),
            by_technician=dict(sorted(by_technician.items())),
            by_category=dict(sorted(by_category.items())),
            breaches=breaches,
        )
