"""Start load-generator workers (bench/fleet_agent.py) and add up what they report."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import children
from bench.fleet_enroll import EnrolledAgent
from bench.local_server import LocalServer
from sonde.agent.backoff import CAP_S, FIRST_DELAY_S, GROWTH, JITTER
from sonde.agent.transport import KEEPALIVE_OPTIONS, WELCOME_TIMEOUT_S

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Worker:
    pid: int
    summary_path: Path
    log_path: Path
    progress_path: Path


@dataclass
class FleetCounts:
    """The workers' own counts, added up (read after they have stopped)."""

    counts: Counter[str]
    errors: Counter[str]
    welcome_seconds: list[float]
    missing: list[Path]
    connect_seconds: list[float] = field(default_factory=list)
    hello_to_welcome_seconds: list[float] = field(default_factory=list)
    # Per agent: its attempts until its first Welcome, the retry hints (ms) of the
    # RESOURCE_EXHAUSTED answers among them, and the seconds from its first attempt to Welcome.
    attempts: list[int] = field(default_factory=list)
    retry_hints_ms: list[int] = field(default_factory=list)
    first_attempt_to_welcome_s: list[float] = field(default_factory=list)
    never_welcomed: int = 0


def start_worker(
    root: Path,
    name: str,
    server: LocalServer,
    server_name: str,
    agents: list[EnrolledAgent],
    *,
    ramp_s: float,
    lifetime_s: float,
    module: str = "bench.fleet_agent",
    extra: dict[str, object] | None = None,
) -> Worker:
    """A worker process running `module` (bench/fleet_agent.py or one built on it), its
    spec holding these agents and `extra`."""
    spec: dict[str, object] = {
        "agent_address": server.agent_address,
        "server_name": server_name,
        "ca_pem": server.ca_pem.decode(),
        "ramp_s": ramp_s,
        # The real agent's keepalive, so the server's ping policy is exercised as shipped.
        "keepalive": [list(option) for option in KEEPALIVE_OPTIONS],
        # And its reconnect backoff (agent/backoff.py): 1 s, x1.6, +-20 %, at most 120 s.
        "backoff": [FIRST_DELAY_S, GROWTH, JITTER, CAP_S],
        # And how long it waits for Welcome once its Hello is written.
        "welcome_timeout_s": WELCOME_TIMEOUT_S,
        "agents": [asdict(agent) for agent in agents],
        "progress_path": str(root / f"{name}.progress.json"),
        **(extra or {}),
    }
    spec_path = root / f"{name}.json"
    spec_path.touch(mode=0o600)  # it holds private keys
    spec_path.write_text(json.dumps(spec))
    summary_path = root / f"{name}.summary.json"
    log_path = root / f"{name}.log"
    argv = [
        sys.executable, "-m", module, "--spec", str(spec_path),
        "--summary", str(summary_path), "--lifetime", f"{lifetime_s:.0f}",
        "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
    process = children.start(argv, log_path, on_parent_death=signal.SIGKILL, cwd=REPO)
    return Worker(process.pid, summary_path, log_path, root / f"{name}.progress.json")


def welcomed_so_far(workers: list[Worker]) -> int:
    """Agents that have had their first Welcome, as the workers last wrote it."""
    welcomed = 0
    for worker in workers:
        try:
            welcomed += int(json.loads(worker.progress_path.read_text())["welcomed"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            continue
    return welcomed


def read_counts(workers: list[Worker]) -> FleetCounts:
    total = FleetCounts(Counter(), Counter(), [], [])
    for worker in workers:
        try:
            data = json.loads(worker.summary_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            total.missing.append(worker.log_path)
            continue
        total.welcome_seconds += data.pop("welcome_seconds")
        total.connect_seconds += data.pop("connect_seconds")
        total.hello_to_welcome_seconds += data.pop("hello_to_welcome_seconds")
        total.errors.update(data.pop("errors"))
        for record in data.pop("records").values():
            total.attempts.append(int(record["attempts"]))
            total.retry_hints_ms += [int(hint) for hint in record["retry_hints_ms"]]
            if record["first_attempt_to_welcome_s"] is None:
                total.never_welcomed += 1
            else:
                total.first_attempt_to_welcome_s.append(float(record["first_attempt_to_welcome_s"]))
        total.counts.update({key: int(value) for key, value in data.items()})
    return total
