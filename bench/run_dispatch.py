"""Script-run dispatch with N simulated agents connected to one real sonde-server.

1. `sonde-server init` in a temporary folder, then the catalog set up as in production: the
   bench makes its own catalog key (the offline one), puts its public half in place of
   pki/catalog.pub and removes the demo's catalog.key; `sonde-server run` (heartbeat 15 s).
2. A signed catalog bundle of one tiny low-risk Linux script, published with
   ConsoleService.PublishCatalog (the server checks its signature).
3. N agents enrolled for real (each pins the dispatch and catalog keys its Enroll answer
   carries) over W worker processes (bench/dispatch_agent.py): real mTLS sessions that check
   each run order with sonde.catalog.envelope.verify_order, as the agent does before a script
   starts, and answer with the script's output and Result.
4. `--runs` RunScript calls one after another to random agents, each beside a WhoAmI over the
   same console connection (interleaved, so the machine's load falls on both alike): the
   dispatch round trip is from the RunScript call to the order verified on the agent (the
   agent's CLOCK_MONOTONIC is the bench's: one machine). Printed as ratios to WhoAmI.
5. `--burst` runs with `--concurrency` in flight: runs dispatched (verified on their agent)
   per second, and their Results stored (ResultAck back on the agent) per second.

Target (PERFORMANCE.md, a command to an online agent): p50 <= 2x and p99 <= 4x the WhoAmI
round trip of the same run.

    .venv/bin/python -m bench.run_dispatch [--agents 1000] [--runs 500] [--burst 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import grpc
import grpc.aio

from bench import children
from bench.fleet import raise_file_limit, wait_all_online
from bench.fleet_enroll import enroll_fleet
from bench.fleet_workers import Worker, read_counts, start_worker
from bench.local_server import LocalServer, wait_for
from bench.procfs import footprint, mib
from bench.signed_catalog import SCRIPT_ID, publish, set_up_catalog
from bench.stats import Row, format_table
from sonde.enrollment_bundle import decode_bundle
from sonde.server.domain.enrollment_tokens import MAX_USES
from sonde.v1 import console_pb2, console_pb2_grpc

CALL_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 60.0
NOT_ENDED = [
    console_pb2.COMMAND_STATE_QUEUED,
    console_pb2.COMMAND_STATE_DELIVERED,
    console_pb2.COMMAND_STATE_RUNNING,
]


@dataclass
class Requests:
    """The bench's side of each run: when it was asked and when RunScript answered."""

    asked: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    whoami_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class AgentSide:
    """The workers' order books, joined (bench/dispatch_agent.py)."""

    verified: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    verify_ms: list[float] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)


async def ask_runs(
    server: LocalServer, targets: list[str], concurrency: int, with_whoami: bool
) -> tuple[Requests, float]:
    """RunScript to each target, `concurrency` in flight; with_whoami: a WhoAmI before each
    (sequential only). Returns the requests and the wall time of the pass."""
    requests = Requests()
    async with grpc.aio.secure_channel(server.console_address, server.console_credentials()) as ch:
        console = console_pb2_grpc.ConsoleServiceStub(ch)
        await console.WhoAmI(console_pb2.WhoAmIRequest(), timeout=10)  # connection up first
        done = 0
        started = time.monotonic()

        async def one(agent_id: str) -> None:
            nonlocal done
            if with_whoami:
                before = time.perf_counter()
                await console.WhoAmI(console_pb2.WhoAmIRequest(), timeout=10)
                requests.whoami_ms.append((time.perf_counter() - before) * 1000)
            asked = time.monotonic()
            try:
                reply = await console.RunScript(
                    console_pb2.RunScriptRequest(agent=agent_id, script_id=SCRIPT_ID),
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as error:
                requests.errors.append(f"{error.code().name}: {error.details()}")
                return
            command_id = reply.run.command.id
            requests.asked[command_id] = asked
            requests.answered[command_id] = time.monotonic()
            done += 1
            if done % 50 == 0 or done == len(targets):
                rate = done / (time.monotonic() - started)
                print(f"\r  runs asked {done:5d}/{len(targets)} ({rate:.0f}/s)", end="", flush=True)

        async def lane(share: list[str]) -> None:
            for agent_id in share:
                await one(agent_id)

        await asyncio.gather(*(lane(targets[i::concurrency]) for i in range(concurrency)))
        wall = time.monotonic() - started
    print()
    return requests, wall


def wait_until_ended(server: LocalServer) -> None:
    """Until the server holds no run that has not ended (each Result stored)."""

    def none_left() -> bool | None:
        with grpc.secure_channel(server.console_address, server.console_credentials()) as ch:
            reply = console_pb2_grpc.ConsoleServiceStub(ch).ListRuns(
                console_pb2.ListRunsRequest(states=NOT_ENDED, limit=1), timeout=CALL_TIMEOUT_S
            )
        return True if not reply.runs else None

    wait_for("every run to end", none_left, timeout=DRAIN_TIMEOUT_S, interval=0.5)


def read_books(workers: list[Worker], root: Path) -> AgentSide:
    side = AgentSide()
    for worker in workers:
        book = json.loads((root / f"{worker.summary_path.stem}.orders.json").read_text())
        side.verified.update(book["verified"])
        side.acked.update(book["acked"])
        side.verify_ms += book["verify_ms"]
        for code, count in book["refusals"].items():
            side.refusals[code] = side.refusals.get(code, 0) + count
    return side


def since_asked(requests: Requests, ends: dict[str, float]) -> list[float]:
    return [(ends[cid] - asked) * 1000 for cid, asked in requests.asked.items() if cid in ends]


def sequential_rows(requests: Requests, side: AgentSide) -> list[Row]:
    whoami = Row.of("WhoAmI round trip ms (reference)", requests.whoami_ms)
    dispatch = Row.of("dispatch: RunScript -> order verified on the agent ms",
                      since_asked(requests, side.verified))  # fmt: skip
    rows = [
        whoami,
        dispatch,
        Row.of("  RunScript answered ms", since_asked(requests, requests.answered)),
        Row.of(
            "  RunScript -> Result stored (ack on the agent) ms", since_asked(requests, side.acked)
        ),
    ]
    assert dispatch.p99 is not None
    assert whoami.p99 is not None
    rows.append(Row("dispatch / WhoAmI at p50 (ratio)", dispatch.n,
                    dispatch.median / whoami.median, target="<= 2"))  # fmt: skip
    rows.append(Row("dispatch / WhoAmI at p99 (ratio)", dispatch.n,
                    dispatch.p99 / whoami.p99, target="<= 4"))  # fmt: skip
    return rows


def burst_rows(requests: Requests, side: AgentSide, concurrency: int, wall: float) -> list[Row]:
    first = min(requests.asked.values())
    verified = [side.verified[cid] for cid in requests.asked if cid in side.verified]
    acked = [side.acked[cid] for cid in requests.asked if cid in side.acked]
    label = f"{concurrency} in flight"
    return [
        Row(
            f"RunScript calls per second, {label}", len(requests.asked), len(requests.asked) / wall
        ),
        Row(
            f"runs dispatched (verified on agents) per second, {label}",
            len(verified),
            len(verified) / (max(verified) - first),
        ),
        Row(
            f"runs ended (Result stored) per second, {label}",
            len(acked),
            len(acked) / (max(acked) - first),
        ),
        Row.of(f"dispatch round trip ms, {label}", since_asked(requests, side.verified)),
    ]


def run(root: Path, args: argparse.Namespace, budget_end: float) -> tuple[list[Row], list[str]]:
    server = LocalServer(root, heartbeat_interval_s=15)
    server.init()
    key = set_up_catalog(server)
    server.start()
    print(f"server pid {server.pid}, agents on {server.agent_address}, log {server.log_path}")
    publish(server, key)

    shares = [min(MAX_USES, args.agents - first) for first in range(0, args.agents, MAX_USES)]
    tokens = [server.enrollment(uses=share, ttl="1h") for share in shares]
    enrolled = asyncio.run(enroll_fleet(tokens, args.agents))
    server_name = decode_bundle(tokens[0]).server_name
    lifetime = budget_end - time.monotonic()
    workers = [
        start_worker(root, f"worker-{n}", server, server_name, enrolled[n :: args.workers],
                     ramp_s=args.ramp, lifetime_s=lifetime, module="bench.dispatch_agent",
                     extra={"orders_path": str(root / f"worker-{n}.summary.orders.json")})
        for n in range(args.workers)
    ]  # fmt: skip
    ids = {agent.agent_id for agent in enrolled}
    online_s, online = wait_all_online(server, ids, workers)
    if online != len(ids):
        raise RuntimeError(f"only {online} of {len(ids)} agents came online in {online_s:.0f} s")
    rows = [Row("server RSS MiB, all connected, before the runs", 1,
                mib(footprint(server.pid).rss_bytes))]  # fmt: skip

    chooser = random.Random(7)
    agent_ids = sorted(ids)
    print(f"{args.runs} runs one after another, each beside a WhoAmI")
    sequential, _ = asyncio.run(
        ask_runs(server, [chooser.choice(agent_ids) for _ in range(args.runs)], 1, True)
    )
    wait_until_ended(server)
    print(f"{args.burst} runs, {args.concurrency} in flight")
    burst, burst_wall = asyncio.run(
        ask_runs(server, [chooser.choice(agent_ids) for _ in range(args.burst)],
                 args.concurrency, False)
    )  # fmt: skip
    wait_until_ended(server)
    rows.append(Row("server RSS MiB after the runs", 1, mib(footprint(server.pid).rss_bytes)))
    for worker in workers:
        os.kill(worker.pid, signal.SIGTERM)
    children.stop_all()
    side = read_books(workers, root)
    fleet = read_counts(workers)

    rows[1:1] = sequential_rows(sequential, side)
    if burst.asked:
        rows[-1:-1] = burst_rows(burst, side, args.concurrency, burst_wall)
    rows.append(Row.of("order check on the agent (verify_order) ms", side.verify_ms))
    problems = [f"RunScript refused: {reason}" for reason in sorted(set(sequential.errors +
                                                                       burst.errors))]  # fmt: skip
    asked = sequential.asked.keys() | burst.asked.keys()
    if missing := len(asked - side.verified.keys()):
        problems.append(f"{missing} runs never verified on their agent")
    if unacked := len(asked - side.acked.keys()):
        problems.append(f"{unacked} Results never acknowledged")
    problems += [f"agents refused {count} orders: {code}" for code, count in side.refusals.items()]
    if fleet.counts["protocol_errors"]:
        problems.append(f"{fleet.counts['protocol_errors']} protocol errors on the agents")
    return rows, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="simulated agents (1000)")
    parser.add_argument("--workers", type=int, default=4, help="generator processes (4)")
    parser.add_argument("--runs", type=int, default=500, help="sequential runs (500)")
    parser.add_argument("--burst", type=int, default=1000, help="runs in the burst (1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="burst in flight (32)")
    parser.add_argument("--ramp", type=float, default=10, help="spread connects over (10 s)")
    parser.add_argument("--budget", type=float, default=480, help="hard end, seconds (480)")
    parser.add_argument("--json", action="store_true", help="the rows as JSON on stdout")
    args = parser.parse_args()
    if not 1 <= args.agents <= 20_000 or not 1 <= args.workers <= 64:
        parser.error("--agents from 1 to 20000, --workers from 1 to 64")
    if not 1 <= args.runs <= 10_000 or not 0 <= args.burst <= 20_000:
        parser.error("--runs from 1 to 10000, --burst from 0 to 20000")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency from 1 to 256")
    children.install_cleanup()

    def out_of_time(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"the benchmark ran past its {args.budget:.0f} s budget")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.budget))
    budget_end = time.monotonic() + args.budget
    raise_file_limit(args.agents * 2 + 1024)
    with tempfile.TemporaryDirectory(prefix="sonde-bench-dispatch-") as tmp:
        try:
            # With --json, stdout is the JSON alone: the progress lines go to stderr.
            with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
                rows, problems = run(Path(tmp), args, budget_end)
        finally:
            signal.alarm(0)
            children.stop_all()
    ratios = {row.what: row for row in rows if "(ratio)" in row.what}
    p50 = ratios["dispatch / WhoAmI at p50 (ratio)"].median
    p99 = ratios["dispatch / WhoAmI at p99 (ratio)"].median
    met = p50 <= 2 and p99 <= 4 and not problems
    verdict = (
        f"target {'met' if met else 'MISSED'}: dispatch {p50:.2f}x WhoAmI at p50 (<= 2), "
        f"{p99:.2f}x at p99 (<= 4), {args.agents} agents connected"
        + (f"; {len(problems)} problems" if problems else "")
    )
    if args.json:
        print(json.dumps({"rows": [asdict(row) for row in rows], "problems": problems,
                          "verdict": verdict, "met": met}, indent=2))  # fmt: skip
    else:
        print(format_table(rows))
        for problem in problems:
            print(f"  problem: {problem}")
        print(verdict)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
