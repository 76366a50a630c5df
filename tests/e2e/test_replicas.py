"""Two sonde-server replicas on the machine's PostgreSQL, one agent that knows both.

Each replica has its own data folder (its own lock) with the same PKI, and they share the
database: a command asked through one reaches the agent on the other through LISTEN/NOTIFY,
a revocation through one cuts the stream held by the other, and kill -9 of the replica that
holds the agent, at random points with commands in flight, loses none and runs none twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sonde.v1 import console_pb2
from tests.integration.storage.databases import create_database, drop_database
from tests.support.deployment import Deployment, Process, deployment, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KILLS = 12
OPEN_STATES = (
    console_pb2.COMMAND_STATE_QUEUED,
    console_pb2.COMMAND_STATE_DELIVERED,
    console_pb2.COMMAND_STATE_RUNNING,
)


@dataclass
class Pair:
    a: Deployment
    b: Deployment
    agent_id: str
    agent: Process

    def holder(self) -> tuple[Deployment, Deployment]:
        """(the replica holding the agent's stream, the other one)."""
        for mine, other in ((self.a, self.b), (self.b, self.a)):
            if mine.server is not None and mine.server.alive() and holds(mine, self.agent_id):
                return mine, other
        raise AssertionError("no live replica holds the agent")


def holds(replica: Deployment, agent_id: str) -> bool:
    """Whether `replica`'s log says the agent's current stream is on it (last word wins)."""
    log = replica.server.log() if replica.server else ""
    log = log[log.rfind("sonde-server listening") :]  # this run only, not one killed before
    connected = [m.start() for m in re.finditer(rf"\({agent_id}\) connected", log)]
    disconnected = [m.start() for m in re.finditer(rf"agent {agent_id} disconnected", log)]
    return bool(connected) and (not disconnected or connected[-1] > disconnected[-1])


def holding(replica: Deployment, agent_id: str) -> Callable[[], bool | None]:
    """A wait_for probe: True once `replica` holds the agent's stream."""
    return lambda: holds(replica, agent_id) or None


def second_replica(first: Deployment, root: Path) -> Deployment:
    """A data folder of its own (its own lock) with the first one's PKI and settings."""
    replica = Deployment(root, db_url=first.db_url, admin_token=first.admin_token)
    replica.data.mkdir(parents=True)
    shutil.copytree(first.data / "pki", replica.data / "pki")
    shutil.copy2(first.data / "server.json", replica.data / "server.json")
    replica.data.chmod(0o700)
    replica.start_server()
    return replica


def point_agent_at(state: Path, *addresses: str) -> None:
    path = state / "agent.json"
    config = json.loads(path.read_text())
    config["agent_addresses"] = list(addresses)
    path.write_text(json.dumps(config))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    name = f"sonde_replicas_{secrets.token_hex(4)}"
    url = asyncio.run(create_database(name)).replace("+asyncpg", "")
    try:
        with deployment(tmp_path / "a", db_url=url) as a:
            b = second_replica(a, tmp_path / "b")
            try:
                state = tmp_path / "agent"
                agent_id = a.enroll_agent(state)
                point_agent_at(state, a.agent_address, b.agent_address)
                agent = a.start_agent(state)
                a.wait_online(agent_id)
                yield Pair(a, b, agent_id, agent)
            finally:
                b.stop()
    finally:
        asyncio.run(drop_database(name))


def command(replica: Deployment, command_id: str) -> console_pb2.Command:
    with replica.console() as console:
        return console.GetCommand(console_pb2.GetCommandRequest(id=command_id), timeout=10).command


def test_a_diagnostic_asked_through_b_runs_on_the_agent_held_by_a(pair: Pair) -> None:
    assert holds(pair.a, pair.agent_id)
    started = time.monotonic()
    with pair.b.console() as console:
        reply = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=pair.agent_id, timeout_s=30), timeout=45
        )
    assert reply.command.state == console_pb2.COMMAND_STATE_SUCCEEDED, reply.command.reason
    assert reply.snapshot.summary.agent_id == pair.agent_id
    assert time.monotonic() - started < 10
    assert holds(pair.a, pair.agent_id)  # it never moved: A delivered, B answered


def test_revoking_through_b_cuts_the_agent_on_a_within_5_s(pair: Pair) -> None:
    assert holds(pair.a, pair.agent_id)
    with pair.b.console() as console:
        console.RevokeAgent(
            console_pb2.RevokeAgentRequest(agent=pair.agent_id, reason="stolen laptop"),
            timeout=10,
        )
    revoked_at = time.monotonic()
    wait_for("the agent to stop", lambda: None if pair.agent.alive() else True, timeout=5)
    assert time.monotonic() - revoked_at <= 5
    assert pair.agent.popen.returncode == 4  # the agent's exit code for a revocation


# Many kills and restarts: longer than the suite's 120 s per test beside another xdist worker.
@pytest.mark.timeout(360)
def test_kill_9_of_the_holder_at_random_points_loses_and_repeats_nothing(pair: Pair) -> None:
    rng = random.Random(5)
    asked: list[str] = []
    for _ in range(KILLS):
        holder, survivor = pair.holder()
        with survivor.console() as console:
            for _ in range(2):
                asked.append(
                    console.RunDiagnostics(
                        console_pb2.RunDiagnosticsRequest(agent=pair.agent_id), timeout=10
                    ).command.id
                )
        time.sleep(rng.uniform(0.0, 0.4))  # the kill lands anywhere in the commands' flight
        holder.kill_server()
        wait_for(
            "the agent to move to the surviving replica",
            holding(survivor, pair.agent_id),
            timeout=30,
        )
        holder.start_server(same_ports=True)

    _, live = pair.holder()

    def all_final() -> list[console_pb2.Command] | None:
        found = [command(live, command_id) for command_id in asked]
        return None if any(c.state in OPEN_STATES for c in found) else found

    ended = wait_for("every command to end", all_final, timeout=120)
    states = Counter(console_pb2.CommandState.Name(c.state) for c in ended)
    assert states == {"COMMAND_STATE_SUCCEEDED": len(asked)}, states
    assert len({c.snapshot_id for c in ended}) == len(asked)  # one snapshot each
    runs = Counter(re.findall(r"running command ([0-9a-f]{32})", pair.agent.log()))
    assert set(runs) == set(asked)
    assert max(runs.values()) == 1, [c for c, n in runs.items() if n > 1]
