"""Full snapshot time at ~300 processes: p50, p95, max and each collector's p50.

Target (PERFORMANCE.md): p50 <= 150 ms, p95 <= 300 ms, software inventory refresh apart
(the cache is warmed first, as it is in a running agent).

    .venv/bin/python bench/snapshot_time.py [--runs 30] [--processes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from sonde.agent.collectors.runner import CollectContext, collect_snapshot

# Children end by themselves after this even if the benchmark is killed with -9.
_CHILD_LIFETIME_S = 300
_children: list[subprocess.Popen[bytes]] = []


def _stop_children() -> None:
    for child in _children:
        if child.poll() is None:
            child.kill()
    for child in _children:
        child.wait()
    _children.clear()


def _raise_process_count(target: int) -> None:
    sleeper = shutil.which("sleep")
    argv = (
        [sleeper, str(_CHILD_LIFETIME_S)]
        if sleeper
        else [sys.executable, "-c", f"import time; time.sleep({_CHILD_LIFETIME_S})"]
    )
    missing = max(0, target - len(psutil.pids()))
    for _ in range(missing):
        _children.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _measure(runs: int, state_dir: Path) -> tuple[list[float], dict[str, list[float]]]:
    ctx = CollectContext(state_dir=state_dir)
    await collect_snapshot(ctx)  # warms the software cache and psutil's first reads
    totals: list[float] = []
    per_collector: dict[str, list[float]] = {}
    for _ in range(runs):
        snapshot = await collect_snapshot(ctx)
        totals.append(float(snapshot.duration_ms))
        for report in snapshot.collectors:
            per_collector.setdefault(report.name, []).append(float(report.duration_ms))
    return totals, per_collector


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--processes", type=int, default=300)
    args = parser.parse_args()
    atexit.register(_stop_children)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        _raise_process_count(args.processes)
        with tempfile.TemporaryDirectory(prefix="sonde-bench-") as state:
            totals, per_collector = asyncio.run(_measure(args.runs, Path(state)))
        processes = len(psutil.pids())
    finally:
        _stop_children()
    print(f"full snapshot, {processes} processes, {psutil.cpu_count()} cores")
    print(f"{'what':<22}{'N':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    print(
        f"{'snapshot':<22}{len(totals):>5}{statistics.median(totals):>9.0f}"
        f"{_percentile(totals, 0.95):>9.0f}{max(totals):>9.0f}"
    )
    for name, values in per_collector.items():
        print(
            f"{'  ' + name:<22}{len(values):>5}{statistics.median(values):>9.0f}"
            f"{_percentile(values, 0.95):>9.0f}{max(values):>9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
