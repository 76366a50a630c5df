"""Agent idle footprint: RSS, PSS and CPU of a real `sonde-agent run` over a quiet window.

A real sonde-server (heartbeat every 15 s, the default) and one enrolled agent process;
once the agent is online and has settled, /proc is sampled once a second. Two references
are measured in the same run, so the agent's own share shows: "imports" (Python, asyncio,
grpc, psutil and the generated protos, idling) and "minimal agent" (bench/fleet_agent.py
with one enrolled agent: the same mTLS stream, Hello and heartbeats, and nothing else).

Targets (PERFORMANCE.md): RSS <= 40 MiB, CPU <= 0.2 % of one core.

    .venv/bin/python -m bench.agent_idle [--seconds 60] [--settle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import children
from bench.fleet_enroll import enroll_fleet
from bench.fleet_workers import start_worker
from bench.local_server import LocalServer, wait_for
from bench.procfs import Footprint, footprint, mib
from bench.stats import Row, format_table
from sonde.enrollment_bundle import decode_bundle

RSS_TARGET_MIB = 40.0
CPU_TARGET_PERCENT = 0.2

# The floor: what the agent's libraries cost before any Sonde code runs.
_REFERENCE = """
import asyncio, grpc, grpc.aio, psutil
from sonde.v1 import agent_pb2_grpc, diagnostics_pb2
asyncio.run(asyncio.sleep(3600))
"""


@dataclass
class Samples:
    name: str
    pid: int
    points: list[tuple[float, Footprint]] = field(default_factory=list)

    def take(self) -> None:
        self.points.append((time.monotonic(), footprint(self.pid)))

    def rows(self) -> list[Row]:
        rss = [mib(point.rss_bytes) for _, point in self.points]
        pss = [mib(point.pss_bytes) for _, point in self.points]
        (t0, first), (t1, last) = self.points[0], self.points[-1]
        cpu_percent = (last.cpu_s - first.cpu_s) / (t1 - t0) * 100
        is_agent = self.name == "sonde-agent"
        rss_target = f"<= {RSS_TARGET_MIB:g}" if is_agent else "reference"
        cpu_target = f"<= {CPU_TARGET_PERCENT:g}" if is_agent else "reference"
        return [
            Row(f"{self.name} RSS MiB", len(rss), statistics.median(rss), maximum=max(rss),
                target=rss_target),
            Row(f"{self.name} PSS MiB", len(pss), statistics.median(pss), maximum=max(pss)),
            Row(f"{self.name} CPU % of a core ({t1 - t0:.0f} s)", 1, cpu_percent,
                target=cpu_target),
        ]  # fmt: skip


def enroll_agent(server: LocalServer, state: Path) -> str:
    done = subprocess.run(
        [*children.program("sonde-agent"), "enroll", server.enrollment(), "--state", str(state),
         "--json"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"sonde-agent enroll failed: {done.stderr}")
    return str(json.loads(done.stdout)["agent_id"])


def sample(targets: list[Samples], seconds: float) -> None:
    """One sample of each target per second, on a fixed schedule (no drift)."""
    started = time.monotonic()
    for tick in range(int(seconds) + 1):
        delay = started + tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for target in targets:
            target.take()
        progress = f"\rsampling: {tick:3d}/{int(seconds)} s"
        print(progress, end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def measure(
    root: Path, seconds: float, settle: float, reference: bool, agent_env: dict[str, str]
) -> list[Row]:
    server = LocalServer(root, heartbeat_interval_s=15)
    server.init()
    server.start()
    state = root / "agent"
    agent_id = enroll_agent(server, state)
    agent = children.start(
        [*children.program("sonde-agent"), "run", "--state", str(state)],
        root / "agent.log",
        env={**os.environ, **agent_env},
    )
    started = time.monotonic()
    wait_for(
        "the agent to be online",
        lambda: True if agent_id in server.online_ids() else None,
        timeout=30,
    )
    print(f"agent {agent_id[:12]} online after {time.monotonic() - started:.2f} s", file=sys.stderr)
    targets = [Samples("sonde-agent", agent.pid)]
    if reference:
        floor = children.start([sys.executable, "-c", _REFERENCE], root / "imports.log")
        targets.append(Samples("imports", floor.pid))
        token = server.enrollment()
        minimal = asyncio.run(enroll_fleet([token], 1))
        worker = start_worker(
            root, "minimal-agent", server, decode_bundle(token).server_name, minimal,
            ramp_s=0, lifetime_s=settle + seconds + 120,
        )  # fmt: skip
        wait_for(
            "the minimal agent to be online",
            lambda: True if minimal[0].agent_id in server.online_ids() else None,
            timeout=30,
        )
        targets.append(Samples("minimal agent", worker.pid))
    # Settling is part of the method (PERFORMANCE.md), not a wait for readiness.
    print(f"settling {settle:g} s", file=sys.stderr)
    time.sleep(settle)
    sample(targets, seconds)
    if agent.poll() is not None:
        log = (root / "agent.log").read_text()
        raise RuntimeError(f"the agent exited during the window:\n{log}")
    if agent_id not in server.online_ids():
        raise RuntimeError("the agent went offline during the window")
    return [row for target in targets for row in target.rows()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="sampling window (default 60)")
    parser.add_argument("--settle", type=float, default=10, help="quiet time before sampling")
    parser.add_argument("--no-reference", action="store_true", help="skip the two references")
    parser.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for sonde-agent only, to try a fix (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = parser.parse_args()
    if args.seconds < 2:
        parser.error("--seconds must be at least 2: CPU use needs two samples")
    agent_env = dict(item.split("=", 1) for item in args.agent_env if "=" in item)
    if len(agent_env) != len(args.agent_env):
        parser.error("--agent-env takes NAME=VALUE")
    children.install_cleanup()
    with tempfile.TemporaryDirectory(prefix="sonde-bench-idle-") as tmp:
        try:
            rows = measure(Path(tmp), args.seconds, args.settle, not args.no_reference, agent_env)
        finally:
            children.stop_all()
    print(format_table(rows))
    agent_rss = rows[0].median
    agent_cpu = rows[2].median
    met = agent_rss <= RSS_TARGET_MIB and agent_cpu <= CPU_TARGET_PERCENT
    print(f"targets {'met' if met else 'MISSED'}: RSS {agent_rss:.1f} MiB, CPU {agent_cpu:.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
