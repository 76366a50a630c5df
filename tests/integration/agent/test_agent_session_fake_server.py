"""`sonde-agent run` against a stand-in server: hello, heartbeats, commands, results,
acknowledgement, reconnection, revocation, shutdown, and a server it must not trust."""

from __future__ import annotations

import datetime
import json
import signal
import time
from pathlib import Path

import grpc

import sonde
from sonde.agent.journal import Outbox
from sonde.v1 import agent_pb2
from tests.integration.agent.fake_server import (
    FakeServer,
    ScratchCA,
    StartAgent,
    eventually,
    start_fake_server,
)


def _collect(
    command_id: str, *, expires_in_s: float = 60, only: tuple[str, ...] = ("system",)
) -> agent_pb2.ServerMessage:
    message = agent_pb2.ServerMessage()
    message.collect.command_id = command_id
    message.collect.collectors.extend(only)
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=expires_in_s)
    message.collect.expires_at.FromDatetime(expires)
    return message


def _agent_id(state: Path) -> str:
    return str(json.loads((state / "agent.json").read_text())["agent_id"])


async def test_online_within_2_s_with_a_truthful_hello_and_heartbeats(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 2.0, f"a Hello\n{agent.log()}")

    hello = agents.hellos[0]
    assert agents.peer_ids == [_agent_id(enrolled_state)]  # mTLS with the enrolled key
    assert hello.agent_id == _agent_id(enrolled_state)
    assert hello.agent_version == sonde.__version__
    assert hello.platform == "linux"
    assert hello.hostname
    assert "system" in hello.collectors
    assert "sh" in hello.interpreters
    assert abs(hello.agent_time.ToDatetime().timestamp() - time.time()) < 60

    await eventually(lambda: len(agents.heartbeats) >= 2, 5.0, f"two heartbeats\n{agent.log()}")
    beat = agents.heartbeats[-1]
    assert 0 < beat.memory_percent < 100
    assert 0 < beat.system_disk_percent <= 100
    assert 0 <= beat.cpu_percent <= 100
    assert beat.outbox_pending == 0
    assert agent.process.returncode is None


async def test_the_first_heartbeat_comes_with_the_session_not_an_interval_later(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    """`sonde agents` shows a machine's gauges as soon as it is online, not 0 % for 15 s."""
    agents = fake_server.agents
    agents.heartbeat_interval_s = 60
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    await eventually(lambda: len(agents.heartbeats) == 1, 5.0, f"a heartbeat\n{agent.log()}")
    assert 0 < agents.heartbeats[0].memory_percent < 100
    assert 0 < agents.heartbeats[0].system_disk_percent <= 100


async def test_collect_returns_a_snapshot_and_the_ack_empties_the_outbox(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    agents.to_agent.put_nowait(_collect("cmd-1"))
    await eventually(lambda: len(agents.results) == 1, 15.0, f"a result\n{agent.log()}")

    result = agents.results[0]
    assert result.command_id == "cmd-1"
    assert result.WhichOneof("outcome") == "snapshot", result
    assert result.snapshot.agent_id == _agent_id(enrolled_state)
    assert result.snapshot.agent_version == sonde.__version__
    assert [report.name for report in result.snapshot.collectors] == ["system"]
    assert result.snapshot.system.hostname == agents.hellos[0].hostname

    # The running agent owns the outbox; from outside, its folder is what shows.
    results = enrolled_state / "outbox"
    await eventually(lambda: not list(results.glob("*.result")), 5.0, "the ack to empty the outbox")
    with Outbox.in_state_dir(enrolled_state) as outbox:
        assert outbox.count() == 0
        assert outbox.is_completed("cmd-1")
        assert outbox.is_completed("cmd-1")


async def test_an_expired_collect_is_answered_with_a_failure(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    agents.to_agent.put_nowait(_collect("late", expires_in_s=-5))
    await eventually(lambda: len(agents.results) == 1, 5.0, f"a result\n{agent.log()}")
    assert agents.results[0].WhichOneof("outcome") == "failure"
    assert agents.results[0].failure.reason.startswith("expired at ")
    assert agents.results[0].failure.kind == agent_pb2.FAILURE_KIND_EXPIRED


async def test_unacknowledged_results_are_resent_and_never_collected_twice(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agents.auto_ack = False
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    agents.to_agent.put_nowait(_collect("cmd-1"))
    await eventually(lambda: len(agents.results) == 1, 15.0, f"a result\n{agent.log()}")
    first = agents.results[0].SerializeToString()

    agents.to_agent.put_nowait(None)  # the server ends the stream without acknowledging
    await eventually(lambda: agents.sessions == 2, 5.0, f"a reconnect\n{agent.log()}")
    await eventually(lambda: len(agents.results) == 2, 5.0, f"the resend\n{agent.log()}")
    assert agents.results[1].SerializeToString() == first
    assert "disconnected (the server ended the stream); reconnecting in" in agent.log()

    # The server asks again (it never stored the result): answered from the outbox.
    agents.to_agent.put_nowait(_collect("cmd-1"))
    await eventually(lambda: len(agents.results) == 3, 5.0, f"the answer\n{agent.log()}")
    assert agents.results[2].SerializeToString() == first

    ack = agent_pb2.ServerMessage()
    ack.ack.command_id = "cmd-1"
    agents.to_agent.put_nowait(ack)
    # The running agent owns the outbox; from outside, its folder is what shows.
    results = enrolled_state / "outbox"
    await eventually(lambda: not list(results.glob("*.result")), 5.0, "the ack to empty the outbox")
    with Outbox.in_state_dir(enrolled_state) as outbox:
        assert outbox.count() == 0
        assert outbox.is_completed("cmd-1")
    await eventually(
        lambda: bool(agents.heartbeats) and agents.heartbeats[-1].outbox_pending == 0,
        5.0,
        "a heartbeat reporting an empty outbox",
    )


async def test_a_revoked_message_stops_the_agent_with_exit_code_4(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    revoked = agent_pb2.ServerMessage()
    revoked.revoked.reason = "stolen laptop"
    agents.to_agent.put_nowait(revoked)
    assert await agent.exit_code(timeout=5) == 4
    assert "revoked by the server (stolen laptop); not reconnecting" in agent.log()
    assert agents.sessions == 1


async def test_a_permission_denied_revocation_status_stops_the_agent_with_exit_code_4(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agents.end_status_details = "agent abc was revoked"
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    agents.to_agent.put_nowait(grpc.StatusCode.PERMISSION_DENIED)
    assert await agent.exit_code(timeout=5) == 4
    assert agents.sessions == 1


async def test_other_errors_reconnect_with_a_one_line_reason_and_delay(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agents.end_status_details = "server is restarting"
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    agents.to_agent.put_nowait(grpc.StatusCode.UNAVAILABLE)
    await eventually(lambda: agents.sessions == 2, 5.0, f"a reconnect\n{agent.log()}")
    lines = [line for line in agent.log().splitlines() if "reconnecting in" in line]
    assert len(lines) == 1
    assert "disconnected (UNAVAILABLE: server is restarting); reconnecting in" in lines[0]
    delay = float(lines[0].rsplit("reconnecting in ", 1)[1].split(" s")[0])
    assert 0.8 <= delay <= 1.2
    assert "Traceback" not in agent.log()


async def test_sigterm_closes_the_stream_and_exits_0_at_once(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    started = time.monotonic()
    assert await agent.stop(signal.SIGTERM, timeout=5) == 0
    # Well before a heartbeat (15 s) or the 5 s stop deadline; the bound leaves room for the
    # process writing its coverage data at exit beside another busy test worker.
    assert time.monotonic() - started < 3.0
    assert "stopping: stream closed" in agent.log()


async def test_the_agent_refuses_a_server_that_does_not_chain_to_its_pinned_ca(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    # A rogue server with real TLS, the right name, and a certificate from its own CA,
    # listening where the agent expects its server (agent.json points there).
    rogue = await start_fake_server(fake_server.ca, presented_by=ScratchCA("Rogue CA"))
    try:
        recorded = json.loads((enrolled_state / "agent.json").read_text())
        recorded["agent_addresses"] = [rogue.agent_address]
        (enrolled_state / "agent.json").write_text(json.dumps(recorded))
        agent = await start_agent("run", "--state", str(enrolled_state))
        await eventually(
            lambda: agent.log().count("reconnecting in") >= 2, 10.0, f"two refusals\n{agent.log()}"
        )
        assert rogue.agents.sessions == 0
        assert rogue.agents.hellos == []
        assert "CERTIFICATE_VERIFY_FAILED" in agent.log()
        assert agent.process.returncode is None  # it keeps trying, with backoff
    finally:
        await rogue.server.stop(grace=None)


async def test_stop_during_backoff_exits_promptly(
    enrolled_state: Path, start_agent: StartAgent, fake_server: FakeServer
) -> None:
    await fake_server.server.stop(grace=None)  # nobody listens any more
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: "reconnecting in" in agent.log(), 10.0, f"a retry\n{agent.log()}")
    started = time.monotonic()
    assert await agent.stop(signal.SIGINT, timeout=5) == 0
    # Well before a heartbeat (15 s) or the 5 s stop deadline; the bound leaves room for the
    # process writing its coverage data at exit beside another busy test worker.
    assert time.monotonic() - started < 3.0
