"""A load-generator worker whose simulated agents also take run orders (bench/run_dispatch.py).

Each agent is bench/fleet_agent.py's (its own mTLS session, Hello, heartbeats, Collect
answered) and, on a ServerMessage.run_script, does what the real agent does before a script
starts: sonde.catalog.envelope.verify_order with the dispatch and catalog keys its own
enrollment answer gave it to pin, its id, the linux platform, the default policy and the
commands it has already run. A verified order is answered as agent/remediation/orders.py
answers a run: one ScriptOutput chunk, then a Result(script_run) built by the same
script_run(); a refused one with the same refused(). The script itself is not started (1,000
bash processes would measure fork, not dispatch) and nothing is written to a run record.

Per order it notes, on CLOCK_MONOTONIC (one clock for every process of the machine), when
the order arrived, when it verified and when its Result's ResultAck came back; at the end
it writes them to the spec's orders_path for the parent to join with its own times.

    python -m bench.dispatch_agent --spec FILE --summary FILE --lifetime S --parent-pid PID
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.fleet_agent import Fleet, SimulatedAgent, WorkerStats, _Session, main
from sonde.agent.order_process import claimed_command_id
from sonde.agent.remediation.orders import refused, script_run
from sonde.agent.remediation.runner import RunOutcome
from sonde.catalog.envelope import OrderRefused, VerifiedOrder, verify_order
from sonde.catalog.manifest import Platform
from sonde.catalog.policy import AgentPolicy
from sonde.v1 import agent_pb2

Call = grpc.aio.StreamStreamCall[agent_pb2.AgentMessage, agent_pb2.ServerMessage]


@dataclass
class OrderBook:
    """What this worker's agents did with their run orders, by command id."""

    received: dict[str, float] = field(default_factory=dict)
    verified: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    verify_ms: list[float] = field(default_factory=list)
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class PinnedKeys:
    dispatch: ed25519.Ed25519PublicKey
    catalog: ed25519.Ed25519PublicKey


def finished_outcome(verified: VerifiedOrder, stdout: bytes) -> RunOutcome:
    """How the runner reports a script that printed `stdout` and exited 0 at once."""
    return RunOutcome(
        exit_code=0, timed_out=False, cancelled=False, stdout=stdout, stderr=b"",
        stdout_truncated=False, stderr_truncated=False, stdout_size=len(stdout),
        stderr_size=0, duration_s=0.001, stray_processes=0,
    )  # fmt: skip


class OrderSession(_Session):
    def __init__(
        self,
        agent: SimulatedAgent,
        call: Call,
        stats: WorkerStats,
        keys: PinnedKeys,
        ran: set[str],
        book: OrderBook,
    ) -> None:
        super().__init__(agent, call, stats)
        self.keys = keys
        self.ran = ran  # kept across sessions, as the agent's run record is
        self.book = book

    def acked(self, command_id: str) -> None:
        if command_id in self.book.verified:
            self.book.acked.setdefault(command_id, time.monotonic())

    async def other(self, message: agent_pb2.ServerMessage) -> None:
        if message.WhichOneof("kind") != "run_script":
            return
        received = time.monotonic()
        signed = message.run_script
        try:
            verified = verify_order(
                signed,
                dispatch_key=self.keys.dispatch,
                catalog_key=self.keys.catalog,
                agent_id=self.agent.agent_id,
                platform=Platform.LINUX,
                policy=AgentPolicy(),
                already_ran=self.ran.__contains__,
            )
        except OrderRefused as error:
            self.book.refusals[error.refusal.value] += 1
            command_id = error.command_id or claimed_command_id(signed)
            result = refused(command_id, error.refusal, str(error))
            await self.send(agent_pb2.AgentMessage(result=result))
            return
        checked = time.monotonic()
        command_id = verified.order.command_id
        self.ran.add(command_id)
        self.book.received[command_id] = received
        self.book.verified[command_id] = checked
        self.book.verify_ms.append((checked - received) * 1000)
        stdout = f"{verified.manifest.id} ran\n".encode()
        chunk = agent_pb2.ScriptOutput(
            command_id=command_id, stream=agent_pb2.SCRIPT_STREAM_STDOUT, offset=0, data=stdout
        )
        await self.send(agent_pb2.AgentMessage(script_output=chunk))
        ended = agent_pb2.Result(
            command_id=command_id,
            script_run=script_run(verified, finished_outcome(verified, stdout)),
        )
        self.unacked.add(command_id)
        await self.send(agent_pb2.AgentMessage(result=ended))


class OrderFleet(Fleet):
    def __init__(self, spec: dict[str, object], stats: WorkerStats) -> None:
        super().__init__(spec, stats)
        raw_agents = spec["agents"]
        assert isinstance(raw_agents, list)
        self.keys = {
            a["agent_id"]: PinnedKeys(
                ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(a["dispatch_public_key"])),
                ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(a["catalog_public_key"])),
            )
            for a in raw_agents
        }
        self.ran: dict[str, set[str]] = {a.agent_id: set() for a in self.agents}
        self.book = OrderBook()
        self.orders_path = Path(str(spec["orders_path"]))

    def session(self, agent: SimulatedAgent, call: Call) -> _Session:
        return OrderSession(
            agent, call, self.stats, self.keys[agent.agent_id], self.ran[agent.agent_id], self.book
        )

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await super().run(stop)
        finally:
            book = self.book
            self.orders_path.write_text(
                json.dumps(
                    {
                        "received": book.received,
                        "verified": book.verified,
                        "acked": book.acked,
                        "verify_ms": book.verify_ms,
                        "refusals": dict(book.refusals),
                    }
                )
            )


if __name__ == "__main__":
    sys.exit(main(OrderFleet))
