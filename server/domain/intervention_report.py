"""The interventions table (`sonde report interventions --from --to`): every ticket the
helpdesk finished in a period, with what was done, how long it took and how it ended, and the
figures per technician and per category.

An intervention is a ticket resolved (or closed without a resolve) in [from, to): its number,
machine, category, kind, the technician who finished it (the resolver, else whoever closed
it), what was done (the resolution note, and the catalog runs asked for it with how their
verification ended), the time spent logged on it, its outcome, and whether it met its resolve
time. Per technician and per category: how many, the time spent in all, how many ended fixed,
how many met their time. At most MAX_ROWS tickets a report: a longer period is refused, saying
so, rather than cut.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.errors import InvalidArgument
from sonde.server.storage.db import Database
from sonde.server.storage.tables import (
    agents,
    commands,
    satisfaction,
    script_runs,
    ticket_events,
    tickets,
)

MAX_ROWS = 50_000
MAX_SPAN = timedelta(days=3660)
_FINISHING = (TicketEventKind.RESOLVED.value, TicketEventKind.CLOSED.value)


@dataclass(frozen=True)
class Intervention:
    ticket_id: int
    title: str
    machine: str  # the host name it reports, "" for none
    category: str
    kind: str
    technician: str
    finished_at: datetime
    what_was_done: str
    runs: tuple[str, ...]  # "restart-print-spooler: cleared"
    time_spent_s: int
    outcome: str
    on_time: bool
    rating: int = 0  # the requester's latest answer, 1-5 (satisfaction.py); 0: none


@dataclass
class Figures:
    interventions: int = 0
    time_spent_s: int = 0
    fixed: int = 0
    on_time: int = 0
    rated: int = 0
    rating_sum: int = 0


@dataclass
class InterventionReport:
    since: datetime
    until: datetime
    rows: list[Intervention]
    by_technician: dict[str, Figures] = field(default_factory=dict)
    by_category: dict[str, Figures] = field(default_factory=dict)


def _tally(rows: list[Intervention], key: str) -> dict[str, Figures]:
    found: dict[str, Figures] = defaultdict(Figures)
    for row in rows:
        figures = found[getattr(row, key) or "-"]
        figures.interventions += 1
        figures.time_spent_s += row.time_spent_s
        figures.fixed += row.outcome == "fixed"
        figures.on_time += row.on_time
        if row.rating:
            figures.rated += 1
            figures.rating_sum += row.rating
    return dict(sorted(found.items()))


class InterventionReports:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def report(self, since: datetime, until: datetime) -> InterventionReport:
        if until <= since:
            raise InvalidArgument("--to must come after --from")
        if until - since > MAX_SPAN:
            raise InvalidArgument("a report covers at most ten years")

        def unit(connection: Connection) -> InterventionReport:
            return self._read(connection, since, until)

        return await self._db.read(unit)

    @staticmethod
    def _read(connection: Connection, since: datetime, until: datetime) -> InterventionReport:
        # Each ticket's last resolve in the period, else its close: who finished it, and when.
        resolved = TicketEventKind.RESOLVED.value
        finished = (
            select(
                ticket_events.c.ticket_id,
                func.coalesce(
                    func.max(case((ticket_events.c.kind == resolved, ticket_events.c.id))),
                    func.max(ticket_events.c.id),
                ).label("event_id"),
            )
            .where(ticket_events.c.kind.in_(_FINISHING))
            .where(ticket_events.c.at >= since, ticket_events.c.at < until)
            .group_by(ticket_events.c.ticket_id)
            .subquery()
        )
        query = (
            select(
                tickets.c.id,
                tickets.c.title,
                tickets.c.category,
                tickets.c.kind,
                tickets.c.resolution,
                tickets.c.time_spent_s,
                tickets.c.outcome,
                tickets.c.resolve_due_at,
                tickets.c.resolved_at,
                agents.c.hostname,
                ticket_events.c.actor,
                ticket_events.c.at,
            )
            .join(finished, finished.c.ticket_id == tickets.c.id)
            .join(ticket_events, ticket_events.c.id == finished.c.event_id)
            .outerjoin(agents, agents.c.id == tickets.c.agent_id)
            .order_by(ticket_events.c.at, tickets.c.id)
            .limit(MAX_ROWS + 1)
        )
        found = connection.execute(query).all()
        if len(found) > MAX_ROWS:
            raise InvalidArgument(
                f"more than {MAX_ROWS:,} interventions in this period: ask for a shorter one"
            )
        ids = [row.id for row in found]
        runs: dict[int, list[str]] = defaultdict(list)
        for at in range(0, len(ids), 500):
            for run in connection.execute(
                select(commands.c.ticket_id, script_runs.c.script_id, script_runs.c.verification)
                .join(script_runs, script_runs.c.command_id == commands.c.id)
                .where(commands.c.ticket_id.in_(ids[at : at + 500]))
                .where(script_runs.c.dry_run.is_(False))
                .order_by(commands.c.created_at)
            ):
                runs[run.ticket_id].append(f"{run.script_id}: {run.verification or 'ran'}")
        ratings: dict[int, int] = {}
        for at in range(0, len(ids), 500):
            for answer in connection.execute(
                select(satisfaction.c.ticket_id, satisfaction.c.rating)
                .where(satisfaction.c.ticket_id.in_(ids[at : at + 500]))
                .where(satisfaction.c.rating.is_not(None))
                .order_by(satisfaction.c.answered_at, satisfaction.c.id)
            ):
                ratings[int(answer.ticket_id)] = int(answer.rating)  # the latest wins
        rows = [
            Intervention(
                ticket_id=row.id,
                title=row.title,
                machine=row.hostname or "",
                category=row.category or "",
                kind=row.kind,
                technician=row.actor,
                finished_at=row.at,
                what_was_done=row.resolution,
                runs=tuple(runs.get(row.id, ())),
                time_spent_s=int(row.time_spent_s),
                outcome=row.outcome or "",
                on_time=(row.resolved_at or row.at) <= row.resolve_due_at,
                rating=ratings.get(row.id, 0),
            )
            for row in found
        ]
        return InterventionReport(
            since, until, rows, _tally(rows, "technician"), _tally(rows, "category")
        )
