"""Ticket comments per second in process, beside the raw commit rate of the same run.

A comment is one unit of work: the ticket touched and read back, the timeline event, the audit
row (server/domain/tickets.py). The reference is what the driver alone does on the same machine
at the same moment: one INSERT per transaction, with sqlite3 (WAL, synchronous=FULL, as Sonde
ships) and with asyncpg; the figure that matters is the ratio. The machine is shared and its
disk and CPU come and go, so the two are interleaved in slices of SLICE (reference, Sonde,
reference, ...) and each rate is the total count over the total time of its slices. A round is
COMMENTS of each; the table shows medians over the rounds, then SQL statements, transactions
and thread hops per comment (Database.counters) and the rate over CONCURRENCY tasks. On
PostgreSQL a third slice runs a comment's own round trips (BEGIN, the chain lock, the three
statements, COMMIT) through asyncpg alone: what any code issuing that transaction would get.

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
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from sonde.server.domain.audit_rows import audit_values
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.ticket_comments import COMMENT_ALONE, comment_values
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.storage.db import Database, StorageCounters, database_url, migrate

CONCURRENCY = 8
SLICE = 100
PG = {"host": "127.0.0.1", "port": 5432, "database": "test"}
BENCH_ADMIN = Principal(user_id=0, name="bench", role=Role.ADMIN)
TARGETS = {"sqlite": 0.25, "postgresql": 0.5}
_ASYNCPG = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

# Runs `count` reference transactions (on the given ticket); returns the seconds they took.
Reference = Callable[[int, int], Awaitable[float]]


@dataclass
class Round:
    raw: float  # reference transactions/s
    shape: float | None  # a comment's round trips through the driver alone, per second
    sequential: float  # comments/s, one after another
    concurrent: float  # comments/s over CONCURRENCY tasks
    latencies: list[float]
    spent: StorageCounters  # over the sequential comments


@dataclass
class Engine:
    name: str
    rounds: list[Round] = field(default_factory=list)


class RawSqlite:
    """sqlite3 alone: one INSERT per transaction, WAL, synchronous=FULL."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body TEXT NOT NULL, at TEXT)"
        )

    async def run(self, count: int, _ticket_id: int) -> float:
        execute = self._connection.execute
        started = time.perf_counter()
        for n in range(count):
            execute("BEGIN IMMEDIATE")
            execute("INSERT INTO raw (body, at) VALUES (?, ?)", (f"comment {n}", "2026-03-02"))
            execute("COMMIT")
        return time.perf_counter() - started

    def close(self) -> None:
        self._connection.close()


class RawAsyncpg:
    """asyncpg alone: one INSERT per transaction (a statement outside a block commits alone)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, dsn: str) -> RawAsyncpg:
        connection = await asyncpg.connect(dsn)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS raw "
            "(id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL)"
        )
        return cls(connection)

    async def run(self, count: int, _ticket_id: int) -> float:
        started = time.perf_counter()
        for n in range(count):
            await self._connection.execute(
                "INSERT INTO raw (body, at) VALUES ($1, now())", f"comment {n}"
            )
        return time.perf_counter() - started

    async def comment_shape(self, count: int, ticket_id: int) -> float:
        """A comment's statement as SQL alone: Sonde's own SQL and values, sent by asyncpg."""
        connection = self._connection
        started = time.perf_counter()
        for n in range(count):
            now = datetime.now(UTC)
            values = {
                **comment_values(ticket_id, now, "bench", f"comment {n}"),
                **audit_values(now, "bench", "ticket.comment", ticket_id=ticket_id),
            }
            compiled = COMMENT_ALONE[False].compiled_for(_ASYNCPG, values)
            await connection.fetch(compiled.sql, *compiled.parameters(values))
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._connection.close()


async def _round(
    db: Database, reference: Reference, shape: Reference | None, comments: int
) -> Round:
    tickets = Tickets(db)
    record, _ = await Users(db).add(BENCH_ADMIN, f"bench{secrets.token_hex(3)}", Role.L2)
    actor = Principal(record.id, record.name, record.role)
    ticket = await tickets.open(actor, title="benchmark")
    shape_ticket = await tickets.open(actor, title="the same SQL alone")
    latencies: list[float] = []
    raw_s = shape_s = sonde_s = 0.0
    before = db.counters.copy()
    for first in range(0, comments, SLICE):
        count = min(SLICE, comments - first)
        raw_s += await reference(count, ticket.id)
        if shape is not None:
            shape_s += await shape(count, shape_ticket.id)
        started = time.perf_counter()
        for n in range(first, first + count):
            sent = time.perf_counter()
            await tickets.comment(actor, ticket.id, f"comment {n}")
            latencies.append(time.perf_counter() - sent)
        sonde_s += time.perf_counter() - started
    spent = db.counters - before

    others = [await tickets.open(actor, title=f"bench {i}") for i in range(CONCURRENCY)]

    async def worker(ticket_id: int, count: int) -> None:
        for n in range(count):
            await tickets.comment(actor, ticket_id, f"comment {n}")

    per_task = comments // CONCURRENCY
    started = time.perf_counter()
    await asyncio.gather(*(worker(t.id, per_task) for t in others))
    concurrent = per_task * CONCURRENCY / (time.perf_counter() - started)
    shaped = comments / shape_s if shape is not None else None
    return Round(comments / raw_s, shaped, comments / sonde_s, concurrent, sorted(latencies), spent)


async def _measure(
    url: str,
    reference: Reference,
    shape: Reference | None,
    engine: Engine,
    comments: int,
    rounds: int,
) -> None:
    db = await Database.open(url)
    try:
        await _round(db, reference, shape, min(comments, 2 * SLICE))  # warm up
        for _ in range(rounds):
            engine.rounds.append(await _round(db, reference, shape, comments))
    finally:
        await db.close()


async def _sqlite(folder: Path, engine: Engine, comments: int, rounds: int) -> None:
    url = database_url(folder)
    migrate(url)
    raw = RawSqlite(folder / "raw.db")
    try:
        await _measure(url, raw.run, None, engine, comments, rounds)
    finally:
        raw.close()


async def _postgresql(url: str, dsn: str, engine: Engine, comments: int, rounds: int) -> None:
    raw = await RawAsyncpg.open(dsn)
    try:
        await _measure(url, raw.run, raw.comment_shape, engine, comments, rounds)
    finally:
        await raw.close()


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


def _report(engines: list[Engine], comments: int) -> None:
    print(
        f"\nticket comments in process: N={comments} per round, interleaved with the raw "
        f"reference in slices of {SLICE}; medians over {len(engines[0].rounds)} rounds"
    )
    print(
        f"{'engine':<11} {'raw tx/s':>9} {'Sonde/s':>8} {'x raw':>6} {'target':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'stmts':>6} {'tx':>5} {'hops':>5} "
        f"{f'{CONCURRENCY} tasks/s':>10}"
    )
    for engine in engines:
        rounds = engine.rounds
        ratios = [r.sequential / r.raw for r in rounds]
        latencies = sorted(value for r in rounds for value in r.latencies)
        spent = rounds[-1].spent
        print(
            f"{engine.name:<11} {statistics.median(r.raw for r in rounds):>9.0f} "
            f"{statistics.median(r.sequential for r in rounds):>8.0f} "
            f"{statistics.median(ratios):>6.3f} {TARGETS[engine.name]:>7.2f} "
            f"{statistics.median(latencies) * 1000:>7.2f} "
            f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:>7.2f} "
            f"{spent.statements / comments:>6.2f} {spent.transactions / comments:>5.2f} "
            f"{spent.thread_hops / comments:>5.2f} "
            f"{statistics.median(r.concurrent for r in rounds):>10.0f}"
        )
        print(f"{'':<11} x raw per round: {', '.join(f'{ratio:.3f}' for ratio in ratios)}")
        shaped = [(r.shape, r) for r in rounds if r.shape is not None]
        if shaped:
            floor = statistics.median(shape for shape, _ in shaped)
            floor_ratio = statistics.median(shape / r.raw for shape, r in shaped)
            share = statistics.median(r.sequential / shape for shape, r in shaped)
            print(
                f"{'':<11} a comment's statement through asyncpg alone: {floor:.0f}/s = "
                f"{floor_ratio:.3f}x raw; Sonde gets {share:.2f} of that"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comments", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    engines: list[Engine] = []
    with tempfile.TemporaryDirectory() as folder:
        sqlite = Engine("sqlite")
        asyncio.run(_sqlite(Path(folder), sqlite, args.comments, args.rounds))
        engines.append(sqlite)
    if not args.no_postgres:
        name = f"sonde_bench_{secrets.token_hex(4)}"
        url, dsn = asyncio.run(_pg_database(name, create=True))
        try:
            migrate(url)
            postgresql = Engine("postgresql")
            asyncio.run(_postgresql(url, dsn, postgresql, args.comments, args.rounds))
            engines.append(postgresql)
        finally:
            asyncio.run(_pg_database(name, create=False))
    _report(engines, args.comments)


if __name__ == "__main__":
    main()
