"""An enrolled agent that names itself after another never receives that agent's diagnostic.

SECURITY.md, "an agent names itself after another to receive its commands": a rogue agent
(enrolled, hand-driven here) reports host names that collide with a real agent's id or name.
Through the real console API and the real `sonde` CLI, each reference reaches the real agent
or is refused as ambiguous with the candidates; the rogue is sent nothing, and its made-up
"all fine" snapshot is never stored, let alone as the other machine's.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import subprocess
import threading
from collections.abc import Iterator

import grpc
import pytest

from sonde.v1 import agent_pb2, agent_pb2_grpc, console_pb2
from tests.e2e.conftest import OnlineAgent
from tests.e2e.test_security import enroll_in_process
from tests.support.deployment import Deployment, run, wait_for

BEAT_S = 0.5  # well inside the server's 2.5 missed heartbeats of 1 s (tests/support)


class RogueAgent:
    """An enrolled agent's stream driven by hand: it reports `hostname` in its Hello, beats,
    and answers every Collect it is sent with a made-up 'all fine' snapshot."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials, hostname: str) -> None:
        self.collects: list[str] = []
        self._outbox: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self._outbox.put(
            agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname=hostname, platform="linux"))
        )
        options = [("grpc.ssl_target_name_override", "localhost")]
        self._channel = grpc.secure_channel(address, credentials, options=options)
        stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._replies = stub.Session(self._messages())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _messages(self) -> Iterator[agent_pb2.AgentMessage]:
        while True:
            try:
                message = self._outbox.get(timeout=BEAT_S)
            except queue.Empty:
                message = agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(cpu_percent=1.0))
            if message is None:
                return
            yield message

    def _read(self) -> None:
        try:
            for reply in self._replies:
                if reply.HasField("collect"):
                    self.collects.append(reply.collect.command_id)
                    forged = agent_pb2.AgentMessage(
                        result=agent_pb2.Result(command_id=reply.collect.command_id)
                    )
                    forged.result.snapshot.system.hostname = "all fine here"
                    self._outbox.put(forged)
        except grpc.RpcError:
            pass  # the stream ended: closed here, or by the server

    def close(self) -> None:
        self._outbox.put(None)
        self._reader.join(timeout=10)
        self._channel.close()


@pytest.fixture(scope="module")
def rogue(shared_sonde: Deployment) -> tuple[str, grpc.ChannelCredentials]:
    """An agent enrolled with a real token and a key of its own: its id and credentials."""
    return enroll_in_process(shared_sonde, shared_sonde.enrollment())


def reporting(
    sonde: Deployment, rogue: tuple[str, grpc.ChannelCredentials], hostname: str
) -> RogueAgent:
    """The rogue connected, its Hello's host name stored as its name."""
    rogue_id, credentials = rogue
    agent = RogueAgent(sonde.agent_address, credentials, hostname)

    def stored() -> bool:
        record = sonde.agent_record(rogue_id)
        return record is not None and record.online and record.hostname == hostname

    wait_for(f"the rogue online as {hostname!r}", stored, timeout=10)
    return agent


def cli(sonde: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    # Wide enough that rich wraps no table cell: the lines are read as printed.
    return run("sonde", *args, env={**sonde.cli_env(), "COLUMNS": "300"}, timeout=120)


def snapshots_of(sonde: Deployment, agent_id: str) -> int:
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM snapshots WHERE agent_id = ?", (agent_id,)
        ).fetchone()
    return int(count)


def test_sonde_diag_by_a_prefix_the_rogue_took_as_its_name_is_refused_or_reaches_the_victim(
    shared_sonde: Deployment,
    shared_agent: OnlineAgent,
    rogue: tuple[str, grpc.ChannelCredentials],
) -> None:
    victim_id, rogue_id = shared_agent.agent_id, rogue[0]
    victim = shared_sonde.agent_record(victim_id)
    assert victim is not None
    prefix = victim_id[:4]
    agent = reporting(shared_sonde, rogue, prefix)
    try:
        # The name the rogue took is also the start of the victim's id: refused, both named.
        refused = cli(shared_sonde, "diag", prefix, "--json")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        error = json.loads(refused.stdout)["error"]
        assert error["code"] == "INVALID_ARGUMENT"
        assert f"{prefix!r} is ambiguous" in error["message"]
        assert f"{victim.hostname} ({victim_id})" in error["message"]
        assert f"{prefix} ({rogue_id})" in error["message"]
        shown = cli(shared_sonde, "diag", prefix)
        assert shown.returncode == 1
        assert victim_id in shown.stderr
        assert rogue_id in shown.stderr
        ticket = cli(shared_sonde, "ticket", "open", "--title", "PC is slow", "--agent", prefix)
        assert ticket.returncode == 1
        assert "is ambiguous" in ticket.stderr

        # One character more of the id reaches the victim, and says so: its name and its id.
        opened = cli(
            shared_sonde, "ticket", "open", "--title", "PC is slow", "--agent", victim_id[:5]
        )
        assert opened.returncode == 0, opened.stdout + opened.stderr
        assert f"agent {victim.hostname} ({victim_id})" in opened.stdout
        ticket_id = opened.stdout.split("#", 1)[1].split(" ", 1)[0]
        done = cli(shared_sonde, "diag", victim_id[:5], "--ticket", ticket_id)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f" of {victim.hostname} ({victim_id}) at " in done.stdout
        assert "all fine here" not in done.stdout
        reply = json.loads(cli(shared_sonde, "diag", victim_id[:5], "--json").stdout)
        assert reply["command"]["agent_id"] == victim_id
        assert reply["snapshot"]["summary"]["agent_id"] == victim_id
        assert reply["snapshot"]["snapshot"]["system"]["hostname"] == victim.hostname
        show = cli(shared_sonde, "ticket", "show", ticket_id)
        assert show.returncode == 0, show.stdout + show.stderr
        assert f" of {victim.hostname} ({victim_id}) at " in show.stdout
        # And the rogue stays reachable as what it is: its own id.
        mine = cli(shared_sonde, "agent", "show", rogue_id, "--json")
        assert json.loads(mine.stdout)["agent"]["id"] == rogue_id
    finally:
        agent.close()
    # The rogue was sent nothing; nothing it made up was stored, under any machine.
    assert agent.collects == []
    assert snapshots_of(shared_sonde, rogue_id) == 0
    with shared_sonde.console() as console:
        commands = console.ListCommands(console_pb2.ListCommandsRequest(agent=rogue_id)).commands
    assert list(commands) == []
    # Offline, the rogue keeps its last name: the prefix stays refused, never the rogue's.
    shared_sonde.wait_offline(rogue_id)
    still = cli(shared_sonde, "diag", prefix, "--json")
    assert json.loads(still.stdout)["error"]["code"] == "INVALID_ARGUMENT"


def test_every_colliding_name_leaves_each_reference_with_the_right_agent_or_refused(
    shared_sonde: Deployment,
    shared_agent: OnlineAgent,
    rogue: tuple[str, grpc.ChannelCredentials],
) -> None:
    victim_id, rogue_id = shared_agent.agent_id, rogue[0]
    victim = shared_sonde.agent_record(victim_id)
    assert victim is not None
    name = victim.hostname
    # What the rogue reports on each Hello, and whom each reference must then reach.
    cases: list[tuple[str, dict[str, str]]] = [
        (victim_id[:6], {victim_id[:6]: "ambiguous", victim_id[:7]: victim_id}),
        (victim_id[:6].upper(), {victim_id[:6]: "ambiguous", victim_id[:4]: victim_id}),
        (victim_id, {victim_id: victim_id, victim_id.upper(): victim_id, victim_id[:8]: victim_id}),
        (victim_id.upper(), {victim_id: victim_id, victim_id[:8]: victim_id}),
        (name.upper(), {name: "ambiguous", victim_id[:8]: victim_id}),
        ("innocent", {name: victim_id, victim_id[:6]: victim_id, "innocent": rogue_id}),
    ]
    with shared_sonde.console() as console:
        for reported, expected in cases:
            agent = reporting(shared_sonde, rogue, reported)
            try:
                for ref, who in expected.items():
                    request = console_pb2.GetAgentRequest(agent=ref)
                    if who != "ambiguous":
                        found = console.GetAgent(request, timeout=10).agent
                        assert found.id == who, (reported, ref)
                        continue
                    with pytest.raises(grpc.RpcError) as refused:
                        console.GetAgent(request, timeout=10)
                    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (reported, ref)
                    assert victim_id in (refused.value.details() or "")
                    assert rogue_id in (refused.value.details() or "")
                assert (
                    console.GetAgent(
                        console_pb2.GetAgentRequest(agent=rogue_id), timeout=10
                    ).agent.id
                    == rogue_id
                )
            finally:
                agent.close()
            shared_sonde.wait_offline(rogue_id)
    assert agent.collects == []
