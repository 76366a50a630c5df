"""The session runtime in this process, against the stand-in server, with a collect
function the test controls: cancellation, the two-at-a-time limit, oversized results."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sonde.agent.journal import Outbox
from sonde.agent.state import load_credentials, load_state
from sonde.agent.transport import MAX_CONCURRENT_COLLECTS, AgentRuntime, SessionTarget
from sonde.v1 import agent_pb2, diagnostics_pb2
from tests.integration.agent.fake_server import FakeServer, eventually


@dataclass
class GatedCollect:
    """Collections that wait until the test opens the gate."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    running: int = 0
    most_at_once: int = 0
    hostname: str = "pc-042"

    async def __call__(self, only: Sequence[str]) -> diagnostics_pb2.Snapshot:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        snapshot = diagnostics_pb2.Snapshot()
        snapshot.system.hostname = self.hostname
        return snapshot


@dataclass
class RunningRuntime:
    collect: GatedCollect
    outbox: Outbox
    stop: asyncio.Event
    task: asyncio.Task[int]


@pytest.fixture
async def runtime(fake_server: FakeServer, enrolled_state: Path) -> AsyncIterator[RunningRuntime]:
    state = load_state(enrolled_state)
    collect = GatedCollect()
    stop = asyncio.Event()
    with Outbox.in_state_dir(enrolled_state) as outbox:
        agent = AgentRuntime(
            state=state,
            target=SessionTarget.from_state(state, load_credentials(enrolled_state)),
            outbox=outbox,
            collect=collect,
            collectors=["system"],
        )
        task = asyncio.create_task(agent.run(stop))
        await eventually(lambda: len(fake_server.agents.hellos) == 1, 5.0, "a Hello")
        yield RunningRuntime(collect, outbox, stop, task)
        stop.set()
        assert await asyncio.wait_for(task, 5) == 0


def _collect(command_id: str) -> agent_pb2.ServerMessage:
    message = agent_pb2.ServerMessage()
    message.collect.command_id = command_id
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    message.collect.expires_at.FromDatetime(expires)
    return message


async def test_cancel_stops_a_running_collection_and_says_so(
    fake_server: FakeServer, runtime: RunningRuntime
) -> None:
    agents = fake_server.agents
    agents.to_agent.put_nowait(_collect("slow"))
    await eventually(lambda: runtime.collect.running == 1, 5.0, "the collection to start")
    cancel = agent_pb2.ServerMessage()
    cancel.cancel.command_id = "slow"
    agents.to_agent.put_nowait(cancel)
    await eventually(lambda: len(agents.results) == 1, 5.0, "a result")
    assert agents.results[0].failure.reason == "cancelled by the server before it finished"
    assert agents.results[0].failure.kind == agent_pb2.FAILURE_KIND_CANCELLED
    assert runtime.collect.running == 0


async def test_at_most_two_collections_run_at_once(
    fake_server: FakeServer, runtime: RunningRuntime
) -> None:
    agents = fake_server.agents
    for n in range(4):
        agents.to_agent.put_nowait(_collect(f"cmd-{n}"))
    await eventually(lambda: runtime.collect.running == 2, 5.0, "two collections running")
    # The other two wait for a slot; give them every chance to start (they must not).
    for _ in range(20):
        await asyncio.sleep(0)
    assert runtime.collect.running == MAX_CONCURRENT_COLLECTS
    runtime.collect.gate.set()
    await eventually(lambda: len(agents.results) == 4, 5.0, "four results")
    assert runtime.collect.most_at_once == 2
    assert sorted(r.command_id for r in agents.results) == [f"cmd-{n}" for n in range(4)]
    assert all(r.snapshot.system.hostname == "pc-042" for r in agents.results)
    assert all(len(r.snapshot.agent_id) == 26 for r in agents.results)


async def test_a_result_over_the_message_limit_becomes_a_failure_not_a_wedge(
    fake_server: FakeServer, runtime: RunningRuntime
) -> None:
    agents = fake_server.agents
    runtime.collect.hostname = "x" * (5 * 1024 * 1024)
    runtime.collect.gate.set()
    agents.to_agent.put_nowait(_collect("huge"))
    await eventually(lambda: len(agents.results) == 1, 10.0, "a result")
    reason = agents.results[0].failure.reason
    assert "over the 4128768-byte message limit" in reason
    await eventually(lambda: runtime.outbox.count() == 0, 5.0, "the ack")
    assert agents.sessions == 1  # the stream survived


async def test_a_command_id_the_outbox_cannot_keep_is_refused_before_it_runs(
    fake_server: FakeServer, runtime: RunningRuntime
) -> None:
    agents = fake_server.agents
    runtime.collect.gate.set()
    agents.to_agent.put_nowait(_collect("two words"))
    agents.to_agent.put_nowait(_collect("fine"))
    await eventually(lambda: len(agents.results) == 2, 5.0, "two results")
    refused, fine = agents.results
    assert refused.command_id == "two words"
    assert refused.failure.reason.startswith("refused: a command id is 1 to 200 printable")
    assert refused.failure.kind == agent_pb2.FAILURE_KIND_REFUSED
    assert fine.WhichOneof("outcome") == "snapshot"
    assert runtime.collect.most_at_once == 1  # only "fine" was collected
    await eventually(lambda: runtime.outbox.count() == 0, 5.0, "the ack")
    assert not runtime.outbox.is_completed("two words")
    assert agents.sessions == 1
