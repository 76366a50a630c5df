"""The agent's memory after script runs: RSS of a real `sonde-agent run`, idle before its
first run, after it, and after `--runs` (20) runs.

A real sonde-server (heartbeat 15 s) with a signed catalog (bench/signed_catalog.py: the
bench's own catalog key, one tiny low-risk Linux script) and one agent enrolled for real,
so it pins the dispatch and catalog keys. Once online and settled, /proc is sampled once a
second over `--seconds`; then one run (ConsoleService.RunScript, waited for with GetRun
until it has ended succeeded), the same settle and window; then the other runs, one after
another, and the window again. Each run is the whole path: the signed order checked, the
run recorded, the script started under the runner, its output streamed, the Result
delivered through the outbox.

Target (PERFORMANCE.md): agent idle RSS <= 40 MiB, also after a script run.

    .venv/bin/python -m bench.agent_run_rss [--runs 20] [--seconds 20] [--settle 10] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bench import children
from bench.agent_idle import RSS_TARGET_MIB, Samples, enroll_agent, sample
from bench.local_server import LocalServer, wait_for
from bench.signed_catalog import SCRIPT_ID, publish, set_up_catalog
from bench.stats import Row, format_table
from sonde.v1 import console_pb2, console_pb2_grpc

RUN_TIMEOUT_S = 60.0


def run_once(server: LocalServer, agent_id: str) -> console_pb2.ScriptRunInfo:
    """One run of the catalog script on the agent, waited for until it has ended."""
    with grpc.secure_channel(server.console_address, server.console_credentials()) as channel:
        console = console_pb2_grpc.ConsoleServiceStub(channel)
        asked = console.RunScript(
            console_pb2.RunScriptRequest(agent=agent_id, script_id=SCRIPT_ID), timeout=30
        )
        run_id = asked.run.command.id

        def ended() -> console_pb2.ScriptRunInfo | None:
            run = console.GetRun(console_pb2.GetRunRequest(id=run_id), timeout=30).run
            return run if run.ended else None

        run = wait_for(f"run {run_id} to end", ended, timeout=RUN_TIMEOUT_S, interval=0.1)
    if run.command.state != console_pb2.COMMAND_STATE_SUCCEEDED or run.stdout != (
        f"{SCRIPT_ID} ran\n".encode()
    ):
        raise RuntimeError(f"run {run_id} did not succeed as expected: {run}")
    return run


def timing_rows(runs: list[console_pb2.ScriptRunInfo]) -> list[Row]:
    """The server's own timestamps of each run: asked, its first output stored (the script
    started on the agent: it prints at once), its Result stored."""

    def ms(start: Timestamp, end: Timestamp) -> float:
        return (end.ToNanoseconds() - start.ToNanoseconds()) / 1e6

    return [
        Row.of("run: asked -> first output stored ms",
               [ms(r.command.created_at, r.command.started_at) for r in runs]),
        Row.of("run: asked -> Result stored ms",
               [ms(r.command.created_at, r.command.finished_at) for r in runs]),
    ]  # fmt: skip


def window(name: str, pid: int, settle: float, seconds: float) -> Samples:
    # Settling is part of the method (PERFORMANCE.md), not a wait for readiness.
    print(f"{name}: settling {settle:g} s", file=sys.stderr)
    time.sleep(settle)
    samples = Samples("sonde-agent", pid)
    sample([samples], seconds)
    return samples


def rss_rows(label: str, samples: Samples) -> list[Row]:
    rss, pss, _cpu = samples.rows()
    return [
        Row(f"RSS MiB, {label}", rss.n, rss.median, maximum=rss.maximum,
            target=f"<= {RSS_TARGET_MIB:g}"),
        Row(f"PSS MiB, {label}", pss.n, pss.median, maximum=pss.maximum),
    ]  # fmt: skip


def measure(root: Path, args: argparse.Namespace) -> list[Row]:
    server = LocalServer(root, heartbeat_interval_s=15)
    server.init()
    key = set_up_catalog(server)
    server.start()
    publish(server, key)
    state = root / "agent"
    agent_id = enroll_agent(server, state)
    agent = children.start(
        [*children.program("sonde-agent"), "run", "--state", str(state)],
        root / "agent.log",
        env={**os.environ, **args.agent_env},
    )
    wait_for(
        "the agent to be online",
        lambda: True if agent_id in server.online_ids() else None,
        timeout=30,
    )
    rows = rss_rows("idle, before any run", window("idle", agent.pid, args.settle, args.seconds))
    runs = [run_once(server, agent_id)]
    rows += rss_rows("after the first run", window("1 run", agent.pid, args.settle, args.seconds))
    for number in range(2, args.runs + 1):
        runs.append(run_once(server, agent_id))
        print(f"\rrun {number}/{args.runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if args.runs > 1:
        after = window(f"{args.runs} runs", agent.pid, args.settle, args.seconds)
        rows += rss_rows(f"after {args.runs} runs", after)
    rows += timing_rows(runs)
    if agent.poll() is not None:
        raise RuntimeError(f"the agent exited:\n{(root / 'agent.log').read_text()}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs in all (20)")
    parser.add_argument("--seconds", type=float, default=20, help="each sampling window (20)")
    parser.add_argument("--settle", type=float, default=10, help="quiet time before each window")
    parser.add_argument("--json", action="store_true", help="the rows as JSON on stdout")
    parser.add_argument(
        "--agent-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for sonde-agent only, to try a fix",
    )  # fmt: skip
    args = parser.parse_args()
    if not 1 <= args.runs <= 500 or not 2 <= args.seconds <= 600 or not 0 <= args.settle <= 600:
        parser.error("--runs from 1 to 500, --seconds from 2 to 600, --settle from 0 to 600")
    args.agent_env = dict(item.split("=", 1) for item in args.agent_env if "=" in item)
    children.install_cleanup()
    with tempfile.TemporaryDirectory(prefix="sonde-bench-run-rss-") as tmp:
        try:
            with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
                rows = measure(Path(tmp), args)
        finally:
            children.stop_all()
    worst = max(row.median for row in rows if row.what.startswith("RSS"))
    met = worst <= RSS_TARGET_MIB
    verdict = f"target {'met' if met else 'MISSED'}: RSS at most {worst:.1f} MiB (<= 40)"
    if args.json:
        print(json.dumps({"rows": [asdict(row) for row in rows], "verdict": verdict,
                          "met": met}, indent=2))  # fmt: skip
    else:
        print(format_table(rows))
        print(verdict)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
