"""Ticket transactions per second on SQLite (as shipped: WAL, synchronous=FULL) and PostgreSQL.

Each comment is one durable transaction (lock the ticket, append the event, update the ticket).
Runs COMMENTS comments one after another, then the same spread over CONCURRENCY tasks, on a
fresh database per engine. Usage: python bench/tickets_tx.py [--comments N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.storage.db import Database, database_url, migrate

CONCURRENCY = 8
PG = {"host": "127.0.0.1", "port": 5432, "database": "test"}


async def _run(url: str, comments: int) -> dict[str, float]:
    db = await Database.open(url)
    try:
        record, _ = await Users(db).add("bench", Role.L2, created_by="bench")
        actor = Principal(record.id, record.name, record.role)
        tickets = Tickets(db)
        ticket = await tickets.open(actor, title="benchmark")
        latencies: list[float] = []
        started = time.perf_counter()
        for n in range(comments):
            t0 = time.perf_counter()
            await tickets.comment(actor, ticket.id, f"comment {n}")
            latencies.append(time.perf_counter() - t0)
        sequential = comments / (time.perf_counter() - started)

        others = [await tickets.open(actor, title=f"bench {i}") for i in range(CONCURRENCY)]

        async def worker(ticket_id: int, count: int) -> None:
            for n in range(count):
                await tickets.comment(actor, ticket_id, f"comment {n}")

        started = time.perf_counter()
        per_task = comments // CONCURRENCY
        await asyncio.gather(*(worker(t.id, per_task) for t in others))
        concurrent = per_task * CONCURRENCY / (time.perf_counter() - started)
        latencies.sort()
        return {
            "sequential": sequential,
            "concurrent": concurrent,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        }
    finally:
        await db.close()


async def _pg_database(name: str, *, create: bool) -> str:
    for user in ("postgres", "root"):
        try:
            connection = await asyncpg.connect(user=user, **PG)
        except (OSError, asyncpg.PostgresError):
            continue
        try:
            if create:
                await connection.execute(f'CREATE DATABASE "{name}"')
            else:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        return f"postgresql+asyncpg://{user}@{PG['host']}:{PG['port']}/{name}"
    raise SystemExit("PostgreSQL is not reachable on 127.0.0.1:5432 (use --no-postgres)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comments", type=int, default=3000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        url = database_url(Path(folder))
        migrate(url)
        results.append(("sqlite (WAL, FULL)", asyncio.run(_run(url, args.comments))))
    if not args.no_postgres:
        name = f"sonde_bench_{secrets.token_hex(4)}"
        url = asyncio.run(_pg_database(name, create=True))
        try:
            migrate(url)
            results.append(("postgresql", asyncio.run(_run(url, args.comments))))
        finally:
            asyncio.run(_pg_database(name, create=False))
    print(f"\nticket comment transactions, N={args.comments} per mode")
    tasks = f"{CONCURRENCY} tasks tx/s"
    print(f"{'engine':<20} {'seq tx/s':>9} {tasks:>14} {'p50 ms':>7} {'p99 ms':>7}")
    for engine, figures in results:
        print(
            f"{engine:<20} {figures['sequential']:>9.0f} {figures['concurrent']:>14.0f} "
            f"{figures['p50_ms']:>7.2f} {figures['p99_ms']:>7.2f}"
        )


if __name__ == "__main__":
    main()
