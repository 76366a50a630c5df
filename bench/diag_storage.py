"""SQL statements, transactions and thread hops per diagnostic, in process (db.counters).

A small harness over the real domain objects (server/domain/commands.py, diagnostics.py) on a
real SQLite file (WAL, synchronous=FULL, as shipped) and on PostgreSQL at 127.0.0.1:5432 (a
scratch database created next to `test` and dropped). One diagnostic is what the server does
for `sonde diag` to an online agent, in the order it happens:

    RunDiagnostics: Commands.queue, then Commands.wait_final (started at once, as the
    console waits while the agent works)
    the agent's stream on this replica takes it in the queueing unit (direct delivery, the
    usual case), or, with --path woken, as when another replica holds the agent's stream:
    the session is woken and runs Commands.claim_due
    the agent's Result: checks evaluated, Diagnostics.accept_result
    RunDiagnostics again: the snapshot handed over in process, else Diagnostics.get_snapshot

Prints per diagnostic the medians over the rounds of statements, transactions, thread hops and
the in-process time (p50/p95/p99), beside the "today" figures of issue 5 (17 / 5 / 69).

    python -m bench.diag_storage [--diagnostics 300] [--rounds 3] [--no-postgres]
        [--path direct|woken|both]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.fleet_agent import SimulatedAgent, small_snapshot
from bench.stats import Row, format_table, percentile
from sonde.agent.checks import CheckContext, evaluate
from sonde.server.domain.agents import AgentCertificate, AgentRegistry, HelloInfo
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.commands import CommandKind, CommandRecord, CommandState
from sonde.server.domain.diagnostics import Diagnostics, StoredSnapshotRecord
from sonde.server.domain.enrollment_tokens import EnrollmentTokens
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.sessions import SessionOpened, SessionRows
from sonde.server.domain.users import Users
from sonde.server.domain.wakeups import Wakeups
from sonde.server.storage.db import Database, StorageCounters, database_url, migrate
from sonde.v1 import agent_pb2

PG = {"host": "127.0.0.1", "port": 5432, "database": "test"}
PG_USERS = ("postgres", "root")
BENCH_ADMIN = Principal(user_id=0, name="bench", role=Role.ADMIN)
# Issue 5's figures per diagnostic before durable commands and units of work.
BEFORE = StorageCounters(statements=17, transactions=5, thread_hops=69)
WAIT_S = 10.0


@dataclass
class Round:
    spent: StorageCounters
    latencies_ms: list[float] = field(default_factory=list)
    handed: int = 0  # snapshots handed over in process (no get_snapshot)


@dataclass
class BenchStream:
    """The agent's stream as this replica's session registers it (LocalStream): it keeps what
    the queueing unit hands it, as the session would write it on the stream."""

    agent_id: str
    session_id: str
    closing: bool = False
    sent: list[str] = field(default_factory=list)

    def deliver(
        self, commands: Sequence[CommandRecord], orders: Mapping[str, object] | None = None
    ) -> None:
        self.sent += [command.id for command in commands]


@dataclass(frozen=True)
class _Presigned:
    """A certificate request for the simulated agent's key, signed as given (no CA here)."""

    certificate: AgentCertificate

    def checked_agent_id(self) -> str:
        return self.certificate.agent_id

    def sign(self) -> AgentCertificate:
        return self.certificate


async def _setup(
    db: Database, direct: bool
) -> tuple[Commands, Diagnostics, Principal, SimulatedAgent, BenchStream | None]:
    wakeups = Wakeups()
    audited = AuditedWrites(db)
    tokens = EnrollmentTokens(db, writes=audited)
    token = await tokens.create(BENCH_ADMIN, uses=1, ttl=timedelta(hours=1))
    agent_id = base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26]
    request = _Presigned(AgentCertificate(agent_id=agent_id, fingerprint="ab" * 32, der=b""))
    agent, _ = await AgentRegistry(db, writes=audited).enroll(
        token.token_id,
        token.secret,
        hostname="bench-pc-00001",
        platform="linux",
        request=request,
        at=datetime.now(UTC),
    )
    record, _ = await Users(db, writes=audited).add(BENCH_ADMIN, "ann", Role.L2)
    technician = Principal(user_id=record.id, name=record.name, role=record.role)
    # Online, as the agent's session leaves it (the batched session row).
    rows = SessionRows(db, "bench-replica")
    info = HelloInfo("bench-pc-00001", "linux", "Ubuntu 24.04 LTS", "6.8.0", "bench")
    rows.add(SessionOpened(agent.id, "session-1", info, "ipv4:127.0.0.1:1", datetime.now(UTC)))
    await rows.flush()
    simulated = SimulatedAgent(agent.id, agent.hostname, b"", b"")
    stream = BenchStream(agent.id, "session-1") if direct else None
    if stream is not None:
        wakeups.attach_stream(stream)
    return (
        Commands(db, audited, wakeups),
        Diagnostics(db, audited, wakeups),
        technician,
        simulated,
        stream,
    )


async def one_diagnostic(
    commands: Commands,
    diagnostics: Diagnostics,
    technician: Principal,
    agent: SimulatedAgent,
    stream: BenchStream | None,
) -> bool:
    """One `sonde diag` as the server runs it; True when the snapshot was handed over."""
    queued = await commands.queue(technician, agent.agent_id, CommandKind.COLLECT, ticket_id=None)
    waiting = asyncio.create_task(
        commands.wait_final(queued.command.id, WAIT_S, known=queued.command)
    )
    await asyncio.sleep(0)  # the waiter starts waiting, as in RunDiagnostics
    if stream is not None:  # delivered by the queueing unit itself
        claimed_ids, stream.sent = stream.sent, []
    else:  # the session, woken by the wake-up that names the command (api/agent_session.py)
        claimed = await commands.claim_due(
            agent.agent_id, "session-1", resend_delivered=False, known_due=True
        )
        claimed_ids = [c.id for c in claimed]
    if claimed_ids != [queued.command.id]:
        raise RuntimeError(f"delivered {claimed_ids}, expected {queued.command.id}")
    received_at = datetime.now(UTC)
    snapshot = small_snapshot(agent)
    found = evaluate(snapshot, CheckContext(reference_time=received_at))
    result = agent_pb2.Result(command_id=queued.command.id, snapshot=snapshot)
    await diagnostics.accept_result(agent.agent_id, result, found, received_at)
    record, handed = await waiting
    if record.state is not CommandState.SUCCEEDED or record.snapshot_id is None:
        raise RuntimeError(f"command {record.id} ended {record.state.value}")
    if isinstance(handed, StoredSnapshotRecord):
        return True
    await diagnostics.get_snapshot(record.snapshot_id)
    return False


async def measure(url: str, count: int, direct: bool) -> Round:
    db = await Database.open(url)
    try:
        commands, diagnostics, technician, agent, stream = await _setup(db, direct)
        for _ in range(10):  # warm: statement caches, pooled connections
            await one_diagnostic(commands, diagnostics, technician, agent, stream)
        before = db.counters.copy()
        latencies: list[float] = []
        handed = 0
        for _ in range(count):
            started = time.perf_counter()
            handed += await one_diagnostic(commands, diagnostics, technician, agent, stream)
            latencies.append((time.perf_counter() - started) * 1000)
        return Round(db.counters - before, latencies, handed)
    finally:
        await db.close()


async def _pg_admin() -> tuple[asyncpg.Connection, str]:
    errors = []
    for user in PG_USERS:
        try:
            return await asyncpg.connect(user=user, timeout=5, **PG), user
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            errors.append(f"{user}: {error}")
    raise RuntimeError(f"PostgreSQL is not reachable at 127.0.0.1:5432: {'; '.join(errors)}")


async def _pg_round(count: int, direct: bool) -> Round:
    name = f"sonde_bench_diag_{secrets.token_hex(4)}"
    admin, user = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://{user}@127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(migrate, url)
        return await measure(url, count, direct)
    finally:
        admin, _ = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _sqlite_round(count: int, direct: bool) -> Round:
    with tempfile.TemporaryDirectory(prefix="sonde-bench-diag-") as tmp:
        url = database_url(Path(tmp))
        await asyncio.to_thread(migrate, url)
        return await measure(url, count, direct)


def rows_for(engine: str, rounds: list[Round], count: int) -> list[Row]:
    def per(name: str) -> float:
        return float(statistics.median(getattr(r.spent, name) / count for r in rounds))

    p50 = statistics.median(statistics.median(r.latencies_ms) for r in rounds)
    p95 = statistics.median(percentile(r.latencies_ms, 0.95) for r in rounds)
    p99 = statistics.median(percentile(r.latencies_ms, 0.99) for r in rounds)
    n = count * len(rounds)
    handed = statistics.median(r.handed / count for r in rounds)
    return [
        Row(f"{engine}: statements per diagnostic", n, per("statements"),
            target=f"was {BEFORE.statements}"),
        Row(f"{engine}: transactions per diagnostic", n, per("transactions"),
            target=f"was {BEFORE.transactions}"),
        Row(f"{engine}: thread hops per diagnostic", n, per("thread_hops"),
            target=f"was {BEFORE.thread_hops}"),
        Row(f"{engine}: snapshot handed over in process, share", n, handed),
        Row(f"{engine}: in-process diagnostic ms", n, p50, p95, p99),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diagnostics", type=int, default=300, help="per round (300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per engine (3)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--path",
        choices=("direct", "woken", "both"),
        default="both",
        help="direct: the agent's stream is on this replica; woken: on another (both)",
    )
    args = parser.parse_args()
    if args.diagnostics < 1 or not 1 <= args.rounds <= 20:
        parser.error("--diagnostics must be >= 1, --rounds from 1 to 20")
    engines = [("sqlite", _sqlite_round)]
    if not args.no_postgres:
        engines.append(("postgresql", _pg_round))
    paths = [("direct", True), ("woken", False)]
    paths = [path for path in paths if args.path in (path[0], "both")]
    rows: list[Row] = []
    for (name, one_round), (path, direct) in itertools.product(engines, paths):
        engine = f"{name}, {path}"
        rounds = []
        for number in range(1, args.rounds + 1):
            done = asyncio.run(asyncio.wait_for(one_round(args.diagnostics, direct), 600))
            rounds.append(done)
            spent = done.spent
            print(
                f"{engine} round {number}: {spent.statements / args.diagnostics:.2f} statements, "
                f"{spent.transactions / args.diagnostics:.2f} transactions, "
                f"{spent.thread_hops / args.diagnostics:.2f} hops per diagnostic; "
                f"p50 {statistics.median(done.latencies_ms):.2f} ms",
                file=sys.stderr,
            )
        rows += rows_for(engine, rounds, args.diagnostics)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
