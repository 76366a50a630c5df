"""An agentless snapshot over SSH against the local agent's snapshot of the same machine.

One real OpenSSH sshd on 127.0.0.1 (tests/support/sshd.py: throwaway ed25519 host and user
keys, the user running the bench let in), and this machine measured three ways, in turns so
that the machine's load falls on each alike:

- **local**: the agent's own collection in this process (`collect_snapshot`, the software
  inventory cache warmed first, as in a running agent): the reference;
- **ssh collectors**: what `sonde diag NAME --ssh` does on a host with python3 and psutil: log
  in (key exchange, host key checked against the trusted one, public-key authentication),
  probe the interpreter, send the agent's collectors on stdin, read the Snapshot back, log out;
- **ssh shell**: the same on a host without a usable python3: one `sh -c` collection parsed on
  the server (`--shell-only`).

Each SSH figure is also given over a connection already open (the login apart), and as a
ratio to the local p50 of the same run. PERFORMANCE.md sets no target for the agentless path;
the ratio says what a technician waits for compared with a machine that has the agent.

    .venv/bin/python -m bench.agentless_ssh [--runs 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.stats import Row, format_table
from sonde.agent.collectors.runner import CollectContext, collect_snapshot
from sonde.server.remote.host_keys import TrustedHostKey
from sonde.server.remote.remote_snapshot import collect_remote_snapshot
from sonde.server.remote.ssh import SshShell
from sonde.v1 import diagnostics_pb2
from tests.support.sshd import Sshd, sshd_available_or_reason, start_sshd


@dataclass(frozen=True)
class Figures:
    runs: int
    local_p50_ms: float
    ssh_collectors_p50_ms: float
    ssh_collectors_open_p50_ms: float
    ssh_shell_p50_ms: float
    ssh_shell_open_p50_ms: float
    login_p50_ms: float
    collectors_ratio_p50: float
    shell_ratio_p50: float


async def _timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return (time.perf_counter() - started) * 1000


async def _measure(sshd: Sshd, runs: int) -> tuple[Figures, list[Row]]:
    trusted = [TrustedHostKey("127.0.0.1", sshd.port, sshd.host_key, "bench", datetime.now(UTC))]
    state = Path(tempfile.mkdtemp(prefix="sonde-bench-state-"))
    context = CollectContext(state_dir=state)
    await collect_snapshot(context)  # the software inventory cache, as a running agent has it

    async def local() -> None:
        await collect_snapshot(context)

    async def over_ssh(shell_only: bool) -> None:
        shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
        try:
            remote = await collect_remote_snapshot(
                shell, python=sys.executable, shell_only=shell_only
            )
        finally:
            await shell.close()
        expected = (
            diagnostics_pb2.COLLECTED_BY_SSH_SHELL
            if shell_only
            else diagnostics_pb2.COLLECTED_BY_SSH_PYTHON
        )
        if remote.snapshot.collected_by != expected:
            raise SystemExit(f"collected the wrong way: {remote.note or remote.snapshot}")

    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    await over_ssh(False)  # the collectors' payload is built once per server process
    timings: dict[str, list[float]] = {
        name: [] for name in ("local", "collectors", "collectors open", "shell", "shell open")
    }
    logins: list[float] = []
    try:
        for number in range(runs):
            timings["local"].append(await _timed(local))
            timings["collectors"].append(await _timed(lambda: over_ssh(False)))
            timings["shell"].append(await _timed(lambda: over_ssh(True)))
            timings["collectors open"].append(
                await _timed(lambda: collect_remote_snapshot(shell, python=sys.executable))
            )
            timings["shell open"].append(
                await _timed(lambda: collect_remote_snapshot(shell, shell_only=True))
            )
            started = time.perf_counter()
            login = await SshShell.open(sshd.target(), sshd.credential(), trusted)
            logins.append((time.perf_counter() - started) * 1000)
            await login.close()
            print(f"\rrun {number + 1}/{runs}", end="", file=sys.stderr, flush=True)
    finally:
        await shell.close()
        print(file=sys.stderr)

    def p50(name: str) -> float:
        return statistics.median(timings[name])

    figures = Figures(
        runs=runs,
        local_p50_ms=p50("local"),
        ssh_collectors_p50_ms=p50("collectors"),
        ssh_collectors_open_p50_ms=p50("collectors open"),
        ssh_shell_p50_ms=p50("shell"),
        ssh_shell_open_p50_ms=p50("shell open"),
        login_p50_ms=statistics.median(logins),
        collectors_ratio_p50=p50("collectors") / p50("local"),
        shell_ratio_p50=p50("shell") / p50("local"),
    )
    rows = [
        Row.of("local agent collection (ms)", timings["local"], "reference"),
        Row.of("ssh: login + collectors (ms)", timings["collectors"]),
        Row.of("ssh: collectors, open connection (ms)", timings["collectors open"]),
        Row.of("ssh: login + shell (ms)", timings["shell"]),
        Row.of("ssh: shell, open connection (ms)", timings["shell open"]),
        Row.of("ssh: login alone (ms)", logins),
    ]
    return figures, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="samples of each way (default 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    missing = sshd_available_or_reason()
    if missing:
        raise SystemExit(missing)
    sshd = start_sshd(Path(tempfile.mkdtemp(prefix="sonde-bench-sshd-")))
    try:
        figures, rows = asyncio.run(_measure(sshd, max(1, args.runs)))
    finally:
        sshd.stop()
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
        return
    print(format_table(rows))
    print(
        f"agentless over SSH / local agent, p50: collectors {figures.collectors_ratio_p50:.2f}x, "
        f"shell {figures.shell_ratio_p50:.2f}x (login alone {figures.login_p50_ms:.0f} ms)"
    )


if __name__ == "__main__":
    main()
