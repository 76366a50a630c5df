"""N simulated agents on real mTLS streams against one real sonde-server.

1. Start sonde-server (heartbeat every 15 s) in a temporary folder on 127.0.0.1.
2. Enroll N keys for real (a CSR each, EnrollmentService.Enroll over grpc.aio).
3. Spread the agents over W worker processes (bench/fleet_agent.py), each agent with its
   own TCP connection; wait until ConsoleService.ListAgents shows all N online.
4. Measure the server's RSS and CPU over an idle window, then the `diag` round trip
   (ConsoleService.RunDiagnostics to random agents), sequentially and with concurrency.

Targets (PERFORMANCE.md): 20,000 streams in <= 2 GiB (about 100 KiB a stream);
command round trip p50 <= 5 ms, p99 <= 15 ms on loopback with 10k connected.

    .venv/bin/python -m bench.fleet [--agents 1000] [--workers 4] [--diag-calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import grpc
import grpc.aio

from bench import children
from bench.fleet_enroll import enroll_fleet
from bench.fleet_workers import Worker, read_counts, start_worker
from bench.local_server import LocalServer
from bench.procfs import cpu_seconds, footprint, mib
from bench.stats import Row, format_table
from sonde.enrollment_bundle import decode_bundle
from sonde.v1 import console_pb2, console_pb2_grpc

DIAG_TIMEOUT_S = 30.0
ONLINE_TIMEOUT_S = 180.0


def raise_file_limit(needed: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards the hard limit; the children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        print(f"warning: RLIMIT_NOFILE hard limit {hard} is below the {needed} needed")


def wait_all_online(server: LocalServer, ids: set[str], workers: list[Worker]) -> float:
    """Seconds until every simulated agent shows online; fails with the reason if not."""
    started = time.monotonic()
    deadline = started + ONLINE_TIMEOUT_S
    while True:
        online = len(server.online_ids() & ids)
        elapsed = time.monotonic() - started
        print(f"\ronline {online:5d}/{len(ids)} after {elapsed:5.1f} s", end="", flush=True)
        if online == len(ids):
            print()
            return elapsed
        for worker in workers:
            if not Path(f"/proc/{worker.pid}").exists():
                raise RuntimeError(f"worker {worker.pid} died:\n{worker.log_path.read_text()}")
        if time.monotonic() > deadline:
            print()
            raise TimeoutError(
                f"only {online} of {len(ids)} agents online after {ONLINE_TIMEOUT_S:.0f} s; "
                f"see {server.log_path} and the worker logs"
            )
        time.sleep(1)


def idle_window(server_pid: int, worker_pids: list[int], seconds: float) -> list[Row]:
    """Server RSS each second and CPU over the window; the generator's CPU beside it."""
    rss: list[float] = []
    first = footprint(server_pid)
    generator_first = sum(cpu_seconds(pid) for pid in worker_pids)
    started = time.monotonic()
    for tick in range(1, int(seconds) + 1):
        time.sleep(max(0.0, started + tick - time.monotonic()))
        rss.append(mib(footprint(server_pid).rss_bytes))
        print(f"\ridle window {tick:3d}/{int(seconds)} s", end="", flush=True)
    print()
    wall = time.monotonic() - started
    server_cpu = (footprint(server_pid).cpu_s - first.cpu_s) / wall * 100
    generator_cpu = (sum(cpu_seconds(pid) for pid in worker_pids) - generator_first) / wall * 100
    return [
        Row("server RSS MiB, all connected, idle", len(rss), statistics.median(rss),
            maximum=max(rss), target="20k in <= 2048"),
        Row(f"server CPU % of a core, idle {wall:.0f} s", 1, server_cpu),
        Row(f"generator CPU % ({len(worker_pids)} workers)", 1, generator_cpu),
    ]  # fmt: skip


async def diag_round_trips(
    server: LocalServer, ids: list[str], calls: int, concurrency: int, reference: list[float]
) -> tuple[list[float], list[str]]:
    """RunDiagnostics to random agents: latencies in ms and the errors, if any.

    With concurrency 1, WhoAmI round trips are first added to `reference`.
    """
    latencies: list[float] = []
    errors: list[str] = []
    chooser = random.Random(2)
    targets = [chooser.choice(ids) for _ in range(calls)]
    async with grpc.aio.secure_channel(server.console_address, server.console_credentials()) as ch:
        console = console_pb2_grpc.ConsoleServiceStub(ch)
        await console.WhoAmI(console_pb2.WhoAmIRequest(), timeout=10)  # connection up first
        if concurrency == 1:
            # The floor of any console call (TLS stream, auth, servicer) on this server now.
            floor: list[float] = []
            for _ in range(calls):
                started = time.perf_counter()
                await console.WhoAmI(console_pb2.WhoAmIRequest(), timeout=10)
                floor.append((time.perf_counter() - started) * 1000)
            reference.extend(floor)

        async def one(agent_id: str) -> None:
            started = time.perf_counter()
            try:
                reply = await console.RunDiagnostics(
                    console_pb2.RunDiagnosticsRequest(agent=agent_id), timeout=DIAG_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
                return
            latencies.append((time.perf_counter() - started) * 1000)
            if reply.snapshot.summary.agent_id != agent_id:
                errors.append(f"asked {agent_id}, got {reply.snapshot.summary.agent_id}")

        async def lane(share: list[str]) -> None:
            for agent_id in share:
                await one(agent_id)

        await asyncio.gather(*(lane(targets[i::concurrency]) for i in range(concurrency)))
    return latencies, errors


def run(root: Path, args: argparse.Namespace, budget_end: float) -> list[Row]:
    rows: list[Row] = []
    server = LocalServer(root, heartbeat_interval_s=15)
    server.init()
    server.start()
    print(f"server pid {server.pid}, agents on {server.agent_address}, log {server.log_path}")
    time.sleep(2)  # its start-up allocations done, before the empty-server figure
    empty_rss = mib(footprint(server.pid).rss_bytes)
    rows.append(Row("server RSS MiB, no agent", 1, empty_rss))

    token = server.enrollment(uses=args.agents, ttl="1h")
    started = time.monotonic()
    enrolled = asyncio.run(enroll_fleet(token, args.agents))
    enroll_s = time.monotonic() - started
    rows.append(Row("enrollments per second", args.agents, args.agents / enroll_s))

    lifetime = budget_end - time.monotonic()
    server_name = decode_bundle(token).server_name
    workers = [
        start_worker(root, f"worker-{n}", server, server_name, enrolled[n :: args.workers],
                     ramp_s=args.ramp, lifetime_s=lifetime)
        for n in range(args.workers)
    ]  # fmt: skip
    ids = {agent.agent_id for agent in enrolled}
    online_s = wait_all_online(server, ids, workers)
    rows.append(Row(f"seconds until all online (ramp {args.ramp:g} s)", len(ids), online_s))

    rows += idle_window(server.pid, [w.pid for w in workers], args.idle_seconds)
    rss_n = rows[-3].median
    rows.append(Row("server KiB per stream", len(ids), (rss_n - empty_rss) * 1024 / len(ids),
                    target="<= 100"))  # fmt: skip

    all_errors: list[str] = []
    whoami: list[float] = []
    for concurrency in sorted({1, args.concurrency} - {0}):
        latencies, errors = asyncio.run(
            diag_round_trips(server, sorted(ids), args.diag_calls, concurrency, whoami)
        )
        all_errors += errors
        if whoami and concurrency == 1:
            rows.append(Row.of("WhoAmI round trip ms (reference)", whoami))
        if latencies:
            rows.append(Row.of(f"diag round trip ms, concurrency {concurrency}", latencies,
                               target="p50 <= 5, p99 <= 15"))  # fmt: skip
    rows.append(Row("server RSS MiB after the diag calls", 1, mib(footprint(server.pid).rss_bytes)))
    still_online = len(server.online_ids() & ids)

    for worker in workers:
        os.kill(worker.pid, signal.SIGTERM)
    children.stop_all()
    fleet = read_counts(workers)
    if fleet.welcome_seconds:
        rows.append(Row.of("Hello -> Welcome seconds", fleet.welcome_seconds))
    print(f"online at the end: {still_online}/{len(ids)}; diag errors: {len(all_errors)}")
    for reason in sorted(set(all_errors))[:5]:
        print(f"  diag error: {reason}")
    print(f"workers: { ({k: v for k, v in fleet.counts.items() if k != 'online'}) }")
    for reason, count in fleet.errors.most_common(5):
        print(f"  stream error x{count}: {reason}")
    for log_path in fleet.missing:
        print(f"  a worker left no summary; see {log_path}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="simulated agents (1000)")
    parser.add_argument("--workers", type=int, default=4, help="generator processes (4)")
    parser.add_argument("--diag-calls", type=int, default=200, help="RunDiagnostics calls (200)")
    parser.add_argument("--concurrency", type=int, default=8, help="second diag pass; 0: none")
    parser.add_argument("--idle-seconds", type=float, default=20, help="idle window (20)")
    parser.add_argument("--ramp", type=float, default=10, help="spread connects over (10 s)")
    parser.add_argument("--budget", type=float, default=540, help="hard end, seconds (540)")
    args = parser.parse_args()
    if args.agents < 1 or not 1 <= args.workers <= 64 or args.diag_calls < 1:
        parser.error("--agents and --diag-calls must be >= 1, --workers from 1 to 64")
    children.install_cleanup()

    def out_of_time(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"the benchmark ran past its {args.budget:.0f} s budget")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.budget))
    budget_end = time.monotonic() + args.budget
    # Each agent costs a descriptor here and one in its worker, plus grpc's own.
    raise_file_limit(args.agents * 2 + 1024)
    with tempfile.TemporaryDirectory(prefix="sonde-bench-fleet-") as tmp:
        try:
            rows = run(Path(tmp), args, budget_end)
        finally:
            signal.alarm(0)
            children.stop_all()
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
