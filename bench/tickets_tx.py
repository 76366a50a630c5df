"""Ticket comments per second in process, beside the raw commit rate of the same run.

A comment is one unit of work: the ticket touched and read back, the timeline event, the audit
row (server/domain/tickets.py). The reference is what the driver alone does on the same machine
at the same moment: one INSERT per transaction, sqlite3 with WAL and synchronous=FULL (as Sonde
ships) and asyncpg; the figure that matters is the ratio. Each round measures the reference and
Sonde back to back; the table shows medians over the rounds, with SQL statements, transactions
and thread hops per comment from Database.counters.

PostgreSQL: 127.0.0.1:5432, trust auth; a scratch database is created next to `test` and
dropped. Usage: python bench/tickets_tx.py [--comments N] [--rounds R] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.storage.db import Database, StorageCounters, database_url, migrate

CONCURRENCY = 8
PG = {"host": "127.0.0.1", "port": 5432, "database": "test"}
BENCH_ADMIN = Principal(user_id=0, name="bench", role=Role.ADMIN)
TARGETS = {"sqlite": 0.25, "postgresql": 0.5}


@dataclass
class Round:
    raw: float  # transactions/s
    sequential: float  # comments/s
    concurrent: float  # comments/s over CONCURRENCY tasks
    latencies: list[float]
    spent: StorageCounters  # over the sequential comments


@dataclass
class Engine:
    name: str
    rounds: list[Round] = field(default_factory=list)


def _raw_sqlite(path: Path, count: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body TEXT NOT NULL, at TEXT)"
        )
        started = time.perf_counter()
        for n in range(count):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO raw (body, at) VALUES (?, ?)", (f"comment {n}", "2026-03-02 09:00")
            )
            connection.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        connection.close()


async def _raw_asyncpg(dsn: str, count: int) -> float:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS raw "
            "(id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL)"
        )
        started = time.perf_counter()
        for n in range(count):
            # One statement outside a transaction block is one transaction (autocommit).
            await connection.execute(
                "INSERT INTO raw (body, at) VALUES ($1, now())", f"comment {n}"
            )
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


async def _sonde(db: Database, comments: int) -> Round:
    tickets = Tickets(db)
    users = Users(db)
    record, _ = await users.add(BENCH_ADMIN, f"bench{secrets.token_hex(3)}", Role.L2)
    actor = Principal(record.id, record.name, record.role)
    ticket = await tickets.open(actor, title="benchmark")
    latencies: list[float] = []
    before = db.counters.copy()
    started = time.perf_counter()
    for n in range(comments):
        t0 = time.perf_counter()
        await tickets.comment(actor, ticket.id, f"comment {n}")
        latencies.append(time.perf_counter() - t0)
    sequential = comments / (time.perf_counter() - started)
    spent = db.counters - before

    others = [await tickets.open(actor, title=f"bench {i}") for i in range(CONCURRENCY)]

    async def worker(ticket_id: int, count: int) -> None:
        for n in range(count):
            await tickets.comment(actor, ticket_id, f"comment {n}")

    per_task = comments // CONCURRENCY
    started = time.perf_counter()
    await asyncio.gather(*(worker(t.id, per_task) for t in others))
    concurrent = per_task * CONCURRENCY / (time.perf_counter() - started)
    return Round(0.0, sequential, concurrent, sorted(latencies), spent)


async def _measure(
    url: str,
    reference: Callable[[], Awaitable[float]],
    engine: Engine,
    comments: int,
    rounds: int,
) -> None:
    db = await Database.open(url)
    try:
        await _sonde(db, min(comments, 200))  # warm up: compiled statements, pools
        for _ in range(rounds):
            raw = await reference()
            measured = await _sonde(db, comments)
            measured.raw = raw
            engine.rounds.append(measured)
    finally:
        await db.close()


async def _pg_database(name: str, *, create: bool) -> tuple[str, str]:
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
        where = f"{user}@{PG['host']}:{PG['port']}/{name}"
        return f"postgresql+asyncpg://{where}", f"postgresql://{where}"
    raise SystemExit("PostgreSQL is not reachable on 127.0.0.1:5432 (use --no-postgres)")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _report(engines: list[Engine], comments: int) -> None:
    print(f"\nticket comments in process, N={comments} per round, medians over the rounds")
    header = (
        f"{'engine':<11} {'raw tx/s':>9} {'Sonde seq/s':>12} {'x raw':>6} {'target':>7} "
        f"{f'{CONCURRENCY} tasks/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'stmts':>6} {'tx':>5} {'hops':>5}"
    )
    print(header)
    for engine in engines:
        rounds = engine.rounds
        ratios = [r.sequential / r.raw for r in rounds]
        latencies = [value for r in rounds for value in r.latencies]
        latencies.sort()
        spent = rounds[-1].spent
        print(
            f"{engine.name:<11} {_median([r.raw for r in rounds]):>9.0f} "
            f"{_median([r.sequential for r in rounds]):>12.0f} {_median(ratios):>6.3f} "
            f"{TARGETS[engine.name]:>7.2f} {_median([r.concurrent for r in rounds]):>10.0f} "
            f"{statistics.median(latencies) * 1000:>7.2f} "
            f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:>7.2f} "
            f"{spent.statements / comments:>6.2f} {spent.transactions / comments:>5.2f} "
            f"{spent.thread_hops / comments:>5.2f}"
        )
        each = ", ".join(f"{ratio:.3f}" for ratio in ratios)
        print(f"{'':<11} x raw per round: {each}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comments", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    engines: list[Engine] = []
    with tempfile.TemporaryDirectory() as folder:
        url = database_url(Path(folder))
        migrate(url)
        sqlite = Engine("sqlite")

        async def raw_sqlite() -> float:
            return _raw_sqlite(Path(folder) / "raw.db", args.comments)

        asyncio.run(_measure(url, raw_sqlite, sqlite, args.comments, args.rounds))
        engines.append(sqlite)
    if not args.no_postgres:
        name = f"sonde_bench_{secrets.token_hex(4)}"
        url, dsn = asyncio.run(_pg_database(name, create=True))
        try:
            migrate(url)
            postgresql = Engine("postgresql")
            asyncio.run(
                _measure(
                    url,
                    lambda: _raw_asyncpg(dsn, args.comments),
                    postgresql,
                    args.comments,
                    args.rounds,
                )
            )
            engines.append(postgresql)
        finally:
            asyncio.run(_pg_database(name, create=False))
    _report(engines, args.comments)


if __name__ == "__main__":
    main()
