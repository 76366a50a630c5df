"""`sonde queue` and `sonde sla report` with 10,000 tickets: p50 and p99 of each query, beside
the plain ticket list of the same tickets in the same run (issue 9's benchmark).

10,000 tickets are written straight into the tickets table (the setup is not measured): a
third closed, the rest new, in progress or waiting, at L1 and L2, four priorities, due times
spread over the past and the next days with their at-risk instants, four contracts, 20
technicians, a first response on every ticket that left "new" and a resolve event on every
closed one. Then, in turns, QUERIES of each:

- **list** (the reference): Tickets.page, the open tickets of L1, 100 of them, by priority;
- **queue L1**: TicketQueue.list(level=L1): every open L1 ticket read (at most 5,000), each
  one's SLA state worked out, ordered breached, at risk, then by due time, 100 returned;
- **queue mine**: one technician's queue, both levels;
- **sla report 30d**: SlaReports.report over the last 30 days: every ticket opened, resolved
  or overdue in it (all 10,000 here), judged per clock, per contract, technician and category,
  with every breach listed;
- **interventions 30d**: InterventionReports.report over the last 30 days: the ~3,300 tickets
  finished in it, who finished each, its runs and rating, the figures per technician and
  category.

SQLite as Sonde ships it, and PostgreSQL on 127.0.0.1:5432 (a scratch database, dropped).

    .venv/bin/python -m bench.ticket_queue [--tickets 10000] [--queries 200] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.stats import Row, format_table, percentile
from sonde.server.domain.intervention_report import InterventionReports
from sonde.server.domain.sla_report import SlaReports
from sonde.server.domain.ticket_model import TicketEventKind, TicketLevel, TicketStatus
from sonde.server.domain.ticket_queue import TicketQueue
from sonde.server.domain.tickets import Tickets
from sonde.server.storage.db import Database, migrate
from sonde.server.storage.tables import ticket_events, tickets, users

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
TECHNICIANS = [f"tech{n:02d}" for n in range(20)]
STATUSES = [TicketStatus.NEW, TicketStatus.IN_PROGRESS, TicketStatus.WAITING]
CONTRACTS = ["", "acme", "globex", "initech"]


def _rows(count: int) -> list[dict[str, object]]:
    chance = random.Random(7)
    rows: list[dict[str, object]] = []
    for number in range(count):
        opened = NOW - timedelta(minutes=chance.randint(0, 10 * 24 * 60))
        closed = number % 3 == 0
        status = TicketStatus.CLOSED if closed else chance.choice(STATUSES)
        response_due = opened + timedelta(hours=chance.choice([1, 4, 8, 24]))
        resolve_due = opened + timedelta(hours=chance.choice([4, 8, 72, 120]))
        answered = None
        if status is not TicketStatus.NEW:
            answered = opened + timedelta(minutes=chance.randint(1, 600))
        resolved = opened + timedelta(minutes=chance.randint(30, 6000)) if closed else None
        rows.append(
            {
                "title": f"ticket {number}",
                "description": "",
                "channel": "phone",
                "requester": f"user {number % 500}",
                "priority": f"p{chance.randint(1, 4)}",
                "level": "l2" if number % 4 == 0 else "l1",
                "status": status.value,
                "assignee": None if status is TicketStatus.NEW else chance.choice(TECHNICIANS),
                "created_by": "bench",
                "created_at": opened,
                "updated_at": opened,
                "response_due_at": response_due,
                "resolve_due_at": resolve_due,
                "response_risk_at": opened + (response_due - opened) * 0.75,
                "resolve_risk_at": opened + (resolve_due - opened) * 0.75,
                "first_response_at": answered,
                "resolved_at": resolved,
                "contract": CONTRACTS[number % len(CONTRACTS)],
                "resolution": "",
                "closed_at": NOW if closed else None,
            }
        )
    return rows


async def _seed(db: Database, count: int) -> None:
    rows = _rows(count)

    def unit(connection: object) -> None:
        connection.execute(  # type: ignore[attr-defined]
            users.insert(),
            [
                {"name": name, "role": "l2", "created_by": "bench", "created_at": NOW}
                for name in TECHNICIANS
            ],
        )
        for at in range(0, len(rows), 1000):
            connection.execute(tickets.insert(), rows[at : at + 1000])  # type: ignore[attr-defined]
        resolved = [
            {
                "ticket_id": number + 1,
                "kind": TicketEventKind.RESOLVED.value,
                "actor": TECHNICIANS[number % len(TECHNICIANS)],
                "at": row["resolved_at"],
                "body": "",
            }
            for number, row in enumerate(rows)
            if row["resolved_at"] is not None
        ]
        for at in range(0, len(resolved), 1000):
            connection.execute(ticket_events.insert(), resolved[at : at + 1000])  # type: ignore[attr-defined]

    await db.write(unit)


async def _timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return (time.perf_counter() - started) * 1000


async def _measure(url: str, count: int, queries: int) -> dict[str, list[float]]:
    db = await Database.open(url)
    try:
        await _seed(db, count)
        listing = Tickets(db)
        queue = TicketQueue(db, clock=lambda: NOW)
        reports = SlaReports(db, clock=lambda: NOW)
        interventions = InterventionReports(db)
        ways: dict[str, Callable[[], Awaitable[object]]] = {
            "list L1 (reference)": lambda: listing.page(level=TicketLevel.L1, limit=100),
            "queue L1": lambda: queue.list(level=TicketLevel.L1, limit=100),
            "queue mine": lambda: queue.list(assignee="tech07", limit=100),
            "sla report 30d": lambda: reports.report(NOW - timedelta(days=30), NOW),
            "interventions 30d": lambda: interventions.report(NOW - timedelta(days=30), NOW),
        }
        found: dict[str, list[float]] = {name: [] for name in ways}
        for way in ways.values():  # warm: statements compiled, pages cached
            await way()
        for _ in range(queries):
            for name, way in ways.items():
                found[name].append(await _timed(way))
        return found
    finally:
        await db.close()


async def _postgres(count: int, queries: int) -> dict[str, list[float]]:
    name = f"sonde_bench_queue_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+asyncpg://127.0.0.1:5432/{name}"
        await asyncio.to_thread(migrate, url)
        return await _measure(url, count, queries)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _rows_of(engine: str, found: dict[str, list[float]]) -> list[Row]:
    reference = percentile(found["list L1 (reference)"], 0.5)
    return [
        Row.of(
            f"{engine}: {name} (ms)",
            values,
            "" if "reference" in name else f"{percentile(values, 0.5) / reference:.2f}x p50",
        )
        for name, values in found.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sonde-bench-queue-") as scratch:
        url = f"sqlite+aiosqlite:///{Path(scratch) / 'sonde.db'}"
        migrate(url)
        results["sqlite"] = asyncio.run(_measure(url, args.tickets, args.queries))
    if not args.no_postgres:
        results["postgresql"] = asyncio.run(_postgres(args.tickets, args.queries))
    if args.json:
        print(json.dumps(results))
        return
    rows = [row for engine, found in results.items() for row in _rows_of(engine, found)]
    print(f"{args.tickets:,} tickets, {args.queries} queries of each")
    print(format_table(rows))


if __name__ == "__main__":
    main()
