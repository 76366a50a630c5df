"""N simulated agents on real mTLS streams against one real sonde-server.

1. Start sonde-server (heartbeat every 15 s) in a temporary folder on 127.0.0.1.
2. Enroll N keys for real (a CSR each, EnrollmentService.Enroll over grpc.aio), with as
   many enrollment tokens as N needs (a token holds at most MAX_USES uses).
3. Spread the agents over W worker processes (bench/fleet_agent.py), each agent with its
   own TCP connection, their first attempts spread over --ramp seconds (0: all at once);
   wait until ConsoleService.ListAgents shows all N online.
4. Measure the server's RSS and CPU over an idle window, then the `diag` round trip
   (ConsoleService.RunDiagnostics to random agents), sequentially and with concurrency,
   beside the WhoAmI round trip of the same run, and print their ratio.

Targets (PERFORMANCE.md): 20,000 streams in <= 2 GiB (about 100 KiB a stream); command round
trip p50 <= 2x and p99 <= 4x the WhoAmI round trip of the same run; agents connecting at
once: all online, Hello -> Welcome p99 <= 2 s, no agent retrying more than twice.

    .venv/bin/python -m bench.fleet [--agents 1000] [--workers 4] [--diag-calls 200]
    .venv/bin/python -m bench.fleet --agents 5000 --ramp 0 --diag-calls 0   # all at once
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
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
from bench.fleet_workers import FleetCounts, Worker, read_counts, start_worker, welcomed_so_far
from bench.local_server import LocalServer
from bench.procfs import cpu_seconds, footprint, mib
from bench.stats import Row, format_table
from sonde.enrollment_bundle import decode_bundle
from sonde.server.domain.enrollment_tokens import MAX_USES
from sonde.v1 import console_pb2, console_pb2_grpc

DIAG_TIMEOUT_S = 30.0
ONLINE_TIMEOUT_S = 180.0
MAX_RETRIES = 2  # target: no agent retries more than twice before its Welcome


def raise_file_limit(needed: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards the hard limit; the children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        print(f"warning: RLIMIT_NOFILE hard limit {hard} is below the {needed} needed")


def wait_all_online(server: LocalServer, ids: set[str], workers: list[Worker]) -> tuple[float, int]:
    """Seconds until every simulated agent shows online, and how many are; after
    ONLINE_TIMEOUT_S it says so and returns how many made it.

    Until the workers say every agent has had its Welcome, only their progress files are
    read: a ListAgents of the whole fleet (and a TLS connection for it) every second or two
    took 15 % of the server's event loop during a connect storm. Then ListAgents is asked
    each 0.5 s until the server shows all of them online; that moment is the figure.
    """
    started = time.monotonic()
    deadline = started + ONLINE_TIMEOUT_S
    online = 0
    welcomed = 0
    while True:
        elapsed = time.monotonic() - started
        if welcomed < len(ids):
            welcomed = welcomed_so_far(workers)
            print(f"\rwelcomed {welcomed:5d}/{len(ids)} after {elapsed:5.1f} s", end="", flush=True)
        if welcomed >= len(ids) or time.monotonic() > deadline:
            try:
                online = len(server.online_ids() & ids)
            except grpc.RpcError as error:  # the console's own handshake waits behind the storm
                print(f"\nListAgents failed ({error.code().name}); trying again", flush=True)
            elapsed = time.monotonic() - started
            print(f"\ronline {online:5d}/{len(ids)} after {elapsed:5.1f} s  ", end="", flush=True)
        if online == len(ids):
            print()
            return elapsed, online
        for worker in workers:
            if not Path(f"/proc/{worker.pid}").exists():
                raise RuntimeError(f"worker {worker.pid} died:\n{worker.log_path.read_text()}")
        if time.monotonic() > deadline:
            print(f"\nonly {online} of {len(ids)} agents online after {ONLINE_TIMEOUT_S:.0f} s")
            return elapsed, online
        time.sleep(0.5 if welcomed >= len(ids) else 0.2)


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


def ratio_rows(diag: Row, floor: Row) -> list[Row]:
    """The round-trip target as ratios to the WhoAmI floor of the same run."""
    assert diag.p99 is not None
    assert floor.p99 is not None
    return [
        Row("diag / WhoAmI at p50 (ratio)", diag.n, diag.median / floor.median, target="<= 2"),
        Row("diag / WhoAmI at p99 (ratio)", diag.n, diag.p99 / floor.p99, target="<= 4"),
    ]


def connect_rows(fleet: FleetCounts, agents: int) -> list[Row]:
    """Each agent's way online: attempts, refusals with their hints, time to Welcome."""
    rows: list[Row] = []
    if fleet.welcome_seconds:
        rows.append(Row.of("connect start -> Welcome s, each session", fleet.welcome_seconds))
        rows.append(Row.of("  connect: start -> Hello written s", fleet.connect_seconds))
        rows.append(Row.of("  Hello written -> Welcome s", fleet.hello_to_welcome_seconds))
    if fleet.first_attempt_to_welcome_s:
        rows.append(Row.of("first attempt -> Welcome s, per agent",
                           fleet.first_attempt_to_welcome_s, target="p99 <= 2"))  # fmt: skip
    if fleet.attempts:
        over = sum(1 for attempts in fleet.attempts if attempts > MAX_RETRIES + 1)
        retried = sum(1 for attempts in fleet.attempts if attempts > 1)
        rows.append(Row.of("attempts until Welcome, per agent", fleet.attempts))
        rows.append(Row("agents that retried at all", len(fleet.attempts), retried))
        rows.append(Row(f"agents that retried more than {MAX_RETRIES} times",
                        len(fleet.attempts), over, target="0"))  # fmt: skip
    hints = fleet.retry_hints_ms
    rows.append(Row("RESOURCE_EXHAUSTED answers before Welcome", agents, len(hints)))
    if hints:
        rows.append(Row.of("  their retry hints ms", [float(hint) for hint in hints]))
    if fleet.never_welcomed:
        rows.append(Row("agents never welcomed", agents, fleet.never_welcomed, target="0"))
    return rows


def run(root: Path, args: argparse.Namespace, budget_end: float) -> list[Row]:
    rows: list[Row] = []
    server = LocalServer(root, heartbeat_interval_s=15)
    server.init()
    server.start()
    print(f"server pid {server.pid}, agents on {server.agent_address}, log {server.log_path}")
    time.sleep(2)  # its start-up allocations done, before the empty-server figure
    empty_rss = mib(footprint(server.pid).rss_bytes)
    rows.append(Row("server RSS MiB, no agent", 1, empty_rss))

    shares = [min(MAX_USES, args.agents - first) for first in range(0, args.agents, MAX_USES)]
    tokens = [server.enrollment(uses=share, ttl="1h") for share in shares]
    started = time.monotonic()
    enrolled = asyncio.run(enroll_fleet(tokens, args.agents))
    enroll_s = time.monotonic() - started
    rows.append(Row(f"enrollments per second ({len(tokens)} tokens)", args.agents,
                    args.agents / enroll_s))  # fmt: skip

    lifetime = budget_end - time.monotonic()
    server_cpu_before = footprint(server.pid).cpu_s
    server_name = decode_bundle(tokens[0]).server_name
    workers = [
        start_worker(root, f"worker-{n}", server, server_name, enrolled[n :: args.workers],
                     ramp_s=args.ramp, lifetime_s=lifetime)
        for n in range(args.workers)
    ]  # fmt: skip
    ids = {agent.agent_id for agent in enrolled}
    online_s, online = wait_all_online(server, ids, workers)
    # Both sides' CPU while connecting, against the machine's (os.cpu_count() cores x wall).
    connect_cpu = [footprint(server.pid).cpu_s - server_cpu_before,
                   sum(cpu_seconds(worker.pid) for worker in workers)]  # fmt: skip
    ramp = f"ramp {args.ramp:g} s" if args.ramp else "all at once"
    if online == len(ids):
        rows.append(Row(f"seconds until all online ({ramp})", len(ids), online_s))
        rows += idle_window(server.pid, [w.pid for w in workers], args.idle_seconds)
        rss_n = rows[-3].median
        rows.append(Row("server KiB per stream", len(ids), (rss_n - empty_rss) * 1024 / len(ids),
                        target="<= 100"))  # fmt: skip
    cores = os.cpu_count() or 1
    rows.append(Row(f"CPU s while connecting: server (of {cores} x {online_s:.0f} s)", 1,
                    connect_cpu[0]))  # fmt: skip
    rows.append(Row(f"CPU s while connecting: generator ({args.workers} workers)", 1,
                    connect_cpu[1]))  # fmt: skip
    if online != len(ids):  # the connect figures below still say what happened; no idle window
        rows.append(Row(f"agents online after {online_s:.0f} s ({ramp})", len(ids), online,
                        target=f"{len(ids)}"))  # fmt: skip

    all_errors: list[str] = []
    whoami: list[float] = []
    passes = sorted({1, args.concurrency} - {0}) if args.diag_calls and online == len(ids) else []
    for concurrency in passes:
        latencies, errors = asyncio.run(
            diag_round_trips(server, sorted(ids), args.diag_calls, concurrency, whoami)
        )
        all_errors += errors
        if not latencies:
            continue
        diag = Row.of(f"diag round trip ms, concurrency {concurrency}", latencies)
        if concurrency == 1 and whoami:
            floor = Row.of("WhoAmI round trip ms (reference)", whoami)
            rows += [floor, diag, *ratio_rows(diag, floor)]
        else:
            rows.append(diag)
    rows.append(Row("server RSS MiB after the diag calls", 1, mib(footprint(server.pid).rss_bytes)))
    still_online = len(server.online_ids() & ids)

    for worker in workers:
        os.kill(worker.pid, signal.SIGTERM)
    children.stop_all()
    fleet = read_counts(workers)
    rows += connect_rows(fleet, len(ids))
    print(f"online at the end: {still_online}/{len(ids)}; diag errors: {len(all_errors)}")
    for reason in sorted(set(all_errors))[:5]:
        print(f"  diag error: {reason}")
    print(f"workers: { ({k: v for k, v in fleet.counts.items() if k != 'online'}) }")
    if fleet.counts["protocol_errors"] or fleet.counts["acks"] != fleet.counts["collects_answered"]:
        print("  PROTOCOL: an unexpected message, or a Result without its ResultAck")
    for reason, count in fleet.errors.most_common(5):
        print(f"  stream error x{count}: {reason}")
    for log_path in fleet.missing:
        print(f"  a worker left no summary; see {log_path}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="simulated agents (1000)")
    parser.add_argument("--workers", type=int, default=4, help="generator processes (4)")
    parser.add_argument(
        "--diag-calls", type=int, default=200, help="RunDiagnostics calls (200); 0: none"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="second diag pass; 0: none")
    parser.add_argument("--idle-seconds", type=float, default=20, help="idle window (20)")
    parser.add_argument(
        "--ramp", type=float, default=10, help="spread connects over (10 s); 0: at once"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the server's and workers' logs here")
    parser.add_argument("--budget", type=float, default=540, help="hard end, seconds (540)")
    args = parser.parse_args()
    if not 1 <= args.agents <= 20_000 or not 1 <= args.workers <= 64 or args.diag_calls < 0:
        parser.error("--agents from 1 to 20000, --diag-calls >= 0, --workers from 1 to 64")
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
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log_path in Path(tmp).glob("*.log"):
                    shutil.copy(log_path, args.keep_logs / log_path.name)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
