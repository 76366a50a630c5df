"""`sonde-agent run` with several server addresses (replicas), and the server's retry hint.

Real agent processes against stand-in servers on 127.0.0.1:0 that share one CA, as the
replicas of one Sonde deployment do.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from sonde.wire_limits import RETRY_AFTER_MS_KEY
from tests.integration.agent.fake_server import (
    FakeServer,
    Refusal,
    StartAgent,
    eventually,
    run_agent_command,
    start_fake_server,
)


@pytest.fixture
def dead_address() -> Iterator[str]:
    """A loopback port that is bound but not listening: every connection is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture
async def replica(fake_server: FakeServer) -> AsyncIterator[FakeServer]:
    """A second stand-in server with a certificate from the same CA."""
    second = await start_fake_server(fake_server.ca)
    yield second
    await second.server.stop(grace=None)


def _delays(log: str) -> list[float]:
    return [float(d) for d in re.findall(r"reconnecting in (\d+\.\d) s", log)]


async def test_an_agent_enrolled_with_a_dead_first_address_connects_to_the_second(
    fake_server: FakeServer,
    dead_address: str,
    agent_command: list[str],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    addresses = [dead_address, fake_server.agent_address]
    enrollment = fake_server.enrollment_string(
        agent_address=dead_address, agent_addresses=addresses
    )
    code, out, err = await run_agent_command(
        agent_command, "enroll", enrollment, "--state", str(state), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["agent_addresses"] == addresses
    assert json.loads((state / "agent.json").read_text())["agent_addresses"] == addresses

    agent = await start_agent("run", "--state", str(state))
    # Straight on to the second address: no backoff step in between.
    await eventually(lambda: len(fake_server.agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    online = f"online: {fake_server.agent_address} as agent"
    await eventually(lambda: online in agent.log(), 5.0, f"the agent online\n{agent.log()}")
    log = agent.log()
    assert f"disconnected from {dead_address} (UNAVAILABLE: " in log
    assert f"; trying {fake_server.agent_address} now" in log
    assert _delays(log) == []


async def test_when_its_server_dies_the_agent_moves_to_the_next_address(
    fake_server: FakeServer, replica: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    # The addresses an admin wrote into agent.json by hand.
    recorded = json.loads((enrolled_state / "agent.json").read_text())
    assert recorded["agent_addresses"] == [fake_server.agent_address]
    recorded["agent_addresses"] = [fake_server.agent_address, replica.agent_address]
    (enrolled_state / "agent.json").write_text(json.dumps(recorded))

    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(fake_server.agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    await eventually(lambda: len(fake_server.agents.heartbeats) >= 1, 5.0, "a heartbeat")
    assert replica.agents.sessions == 0

    await fake_server.server.stop(grace=None)
    await eventually(lambda: len(replica.agents.hellos) == 1, 5.0, f"the move\n{agent.log()}")
    await eventually(lambda: len(replica.agents.heartbeats) >= 1, 5.0, "a heartbeat")
    log = agent.log()
    assert f"disconnected from {fake_server.agent_address} (" in log
    assert f"; trying {replica.agent_address} now" in log
    assert f"online: {replica.agent_address} as agent" in log
    assert _delays(log) == []
    assert agent.process.returncode is None

    # The replica goes too: back to the first at once, which is gone; after that full round
    # the agent waits one backoff step.
    await replica.server.stop(grace=None)
    await eventually(lambda: len(_delays(agent.log())) >= 1, 10.0, f"a round\n{agent.log()}")
    assert f"disconnected from {replica.agent_address} (" in agent.log()
    assert f"; trying {fake_server.agent_address} now" in agent.log()
    line = next(line for line in agent.log().splitlines() if "reconnecting in" in line)
    assert f"disconnected from {fake_server.agent_address} (UNAVAILABLE: " in line
    assert "; all 2 addresses failed; reconnecting in " in line
    assert line.endswith(f" to {replica.agent_address}")
    assert 0.8 <= _delays(line)[0] <= 1.2


async def test_a_retry_hint_is_waited_out_and_does_not_grow_the_backoff(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    agents.refusals = [
        Refusal(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many agents are connecting",
            ((RETRY_AFTER_MS_KEY, "2000"),),
        ),
        # No hint: the agent's own backoff, whose first step shows the hint did not count.
        Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "still busy"),
    ]
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 30.0, f"a Hello\n{agent.log()}")

    assert agents.sessions == 3
    assert agents.session_times[1] - agents.session_times[0] >= 2.0
    lines = [line for line in agent.log().splitlines() if "reconnecting in" in line]
    assert len(lines) == 2, agent.log()
    assert (
        "disconnected (RESOURCE_EXHAUSTED: too many agents are connecting); "
        "the server asks to wait 2.0 s; reconnecting in "
    ) in lines[0]
    assert 2.0 <= _delays(lines[0])[0] <= 2.4
    assert "disconnected (RESOURCE_EXHAUSTED: still busy); reconnecting in " in lines[1]
    assert 0.8 <= _delays(lines[1])[0] <= 1.2
    assert agent.process.returncode is None


async def test_a_retry_hint_on_another_status_is_ignored(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent
) -> None:
    agents = fake_server.agents
    hint = ((RETRY_AFTER_MS_KEY, "30000"),)
    agents.refusals = [Refusal(grpc.StatusCode.UNAVAILABLE, "restarting", hint)]
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.hellos) == 1, 5.0, f"a Hello\n{agent.log()}")
    delays = _delays(agent.log())
    assert len(delays) == 1
    assert 0.8 <= delays[0] <= 1.2
