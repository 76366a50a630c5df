"""A load-generator worker: many simulated agents, each a real mTLS AgentService.Session.

Every simulated agent has its own key and enrolled certificate and its own TCP connection
(a local subchannel pool per channel; PERFORMANCE.md pitfall). It says Hello, waits for
Welcome, sends a Heartbeat every interval, answers Collect with a small valid Snapshot and
checks that each Result gets its ResultAck. It reconnects with the real agent's backoff (1 s,
x1.6, +-20 %, at most 120 s; reset by a Welcome), and a RESOURCE_EXHAUSTED answer is retried
after the server's `sonde-retry-after-ms` hint, as the real agent does. Per agent it records its
attempts, the refusals with their hints and the time from its first attempt to Welcome. The
worker ends by itself at its deadline, when its parent dies, or on SIGTERM, and then writes
a JSON summary.

    python -m bench.fleet_agent --spec FILE --summary FILE --lifetime S --parent-pid PID
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

import sonde
from bench.children import die_with_parent
from sonde.v1 import agent_pb2, agent_pb2_grpc, diagnostics_pb2
from sonde.wire_limits import RETRY_AFTER_MS_KEY

COLLECTORS = ("system", "cpu", "memory", "disks")
GiB = 1024**3


@dataclass
class AgentRecord:
    """One simulated agent's way online: every attempt until its first Welcome."""

    attempts: int = 0
    retry_hints_ms: list[int] = field(default_factory=list)  # one per RESOURCE_EXHAUSTED
    first_attempt_to_welcome_s: float | None = None
    other_failures: int = 0


@dataclass
class WorkerStats:
    agents: int = 0
    online: int = 0
    max_online: int = 0
    sessions_opened: int = 0
    welcomes: int = 0
    heartbeats_sent: int = 0
    collects_answered: int = 0
    acks: int = 0
    protocol_errors: int = 0  # Collect before Welcome, an ack for no Result sent
    unacked_at_end: int = 0  # Results still waiting for their ack when the session ended
    welcome_seconds: list[float] = field(default_factory=list)  # session start -> Welcome
    # The same sessions split: start -> Hello written (TCP, TLS and HTTP/2 done: grpc.aio
    # completes the write only on an open stream), then Hello written -> Welcome.
    connect_seconds: list[float] = field(default_factory=list)
    hello_to_welcome_seconds: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    records: dict[str, AgentRecord] = field(default_factory=dict)

    def came_online(self, opened: float, hello_written: float, welcomed: float) -> None:
        self.welcomes += 1
        self.online += 1
        self.max_online = max(self.max_online, self.online)
        self.welcome_seconds.append(welcomed - opened)
        self.connect_seconds.append(hello_written - opened)
        self.hello_to_welcome_seconds.append(welcomed - hello_written)


@dataclass(frozen=True)
class SimulatedAgent:
    agent_id: str
    hostname: str
    key_pem: bytes
    certificate_pem: bytes


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def small_snapshot(agent: SimulatedAgent) -> diagnostics_pb2.Snapshot:
    """A few hundred bytes that every check can read: one healthy workstation."""
    snapshot = diagnostics_pb2.Snapshot(
        agent_id=agent.agent_id,
        collected_at=_now(),
        duration_ms=42,
        agent_version=sonde.__version__,
        collectors=[
            diagnostics_pb2.CollectorReport(
                name=name, state=diagnostics_pb2.COLLECTOR_STATE_OK, duration_ms=5
            )
            for name in COLLECTORS
        ],
    )
    snapshot.system.hostname = agent.hostname
    snapshot.system.os_family = "linux"
    snapshot.system.os_name = "Ubuntu 24.04 LTS"
    snapshot.system.uptime_seconds = 3600
    snapshot.system.boot_time.FromSeconds(int(time.time()) - 3600)
    snapshot.cpu.model = "Simulated CPU"
    snapshot.cpu.physical_cores = snapshot.cpu.logical_cores = 4
    snapshot.cpu.usage_percent = 7.5
    snapshot.memory.total_bytes = 16 * GiB
    snapshot.memory.available_bytes = 10 * GiB
    snapshot.memory.used_bytes = 6 * GiB
    snapshot.memory.used_percent = 37.5
    root = diagnostics_pb2.Partition(device="/dev/nvme0n1p2", mountpoint="/", filesystem="ext4")
    root.total_bytes, root.used_bytes, root.free_bytes = 256 * GiB, 100 * GiB, 156 * GiB
    root.used_percent = 39.1
    root.is_system = True
    snapshot.disks.partitions.append(root)
    return snapshot


def retry_after_ms(error: grpc.aio.AioRpcError) -> int | None:
    """The server's retry hint on a RESOURCE_EXHAUSTED answer, in ms (None: no hint)."""
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_AFTER_MS_KEY:
            text = (value.decode() if isinstance(value, bytes) else value).strip()
            if text.isdigit() and len(text) <= 12:
                return int(text)
    return None


def _heartbeat() -> agent_pb2.AgentMessage:
    beat = agent_pb2.Heartbeat(
        agent_time=_now(), cpu_percent=7.5, memory_percent=37.5, system_disk_percent=39.1
    )
    return agent_pb2.AgentMessage(heartbeat=beat)


class _Session:
    """One open stream; writes are serialised (one outstanding write per grpc.aio stream)."""

    def __init__(
        self,
        agent: SimulatedAgent,
        call: grpc.aio.StreamStreamCall[agent_pb2.AgentMessage, agent_pb2.ServerMessage],
        stats: WorkerStats,
    ) -> None:
        self.agent = agent
        self.call = call
        self.stats = stats
        self._lock = asyncio.Lock()
        self.unacked: set[str] = set()  # Results sent, no ResultAck yet

    async def send(self, message: agent_pb2.AgentMessage) -> None:
        async with self._lock:
            await self.call.write(message)

    async def heartbeats(self, interval_s: int) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.send(_heartbeat())
            self.stats.heartbeats_sent += 1

    async def serve(self) -> None:
        while True:
            message = await self.call.read()
            if message is grpc.aio.EOF:
                return
            assert isinstance(message, agent_pb2.ServerMessage)
            kind = message.WhichOneof("kind")
            if kind == "collect":
                command_id = message.collect.command_id
                result = agent_pb2.Result(
                    command_id=command_id, snapshot=small_snapshot(self.agent)
                )
                self.unacked.add(command_id)
                await self.send(agent_pb2.AgentMessage(result=result))
                self.stats.collects_answered += 1
            elif kind == "ack":
                self.stats.acks += 1
                if message.ack.command_id not in self.unacked:
                    self.stats.protocol_errors += 1
                    self.stats.errors["an ack for no Result sent"] += 1
                self.unacked.discard(message.ack.command_id)
                self.acked(message.ack.command_id)
            elif kind == "welcome":
                self.stats.protocol_errors += 1
                self.stats.errors["a second Welcome"] += 1
            elif kind == "revoked":
                raise RuntimeError("revoked")
            else:
                await self.other(message)

    def acked(self, command_id: str) -> None:
        """A ResultAck arrived; a subclass may note when (bench/dispatch_agent.py)."""

    async def other(self, message: agent_pb2.ServerMessage) -> None:
        """A message the minimal agent ignores (Cancel, a run order); a subclass may not."""


class Fleet:
    def __init__(self, spec: dict[str, object], stats: WorkerStats) -> None:
        self.agent_address = str(spec["agent_address"])
        self.server_name = str(spec["server_name"])
        self.ca_pem = str(spec["ca_pem"]).encode()
        self.ramp_s = float(str(spec.get("ramp_s", 0)))
        # Given by the parent (sonde.agent.transport's), so this process imports no agent code
        # and, run with one agent, is the floor a minimal agent sits on.
        raw_keepalive = spec["keepalive"]
        assert isinstance(raw_keepalive, list)
        self.keepalive = [(str(name), int(value)) for name, value in raw_keepalive]
        self.welcome_timeout_s = float(str(spec.get("welcome_timeout_s", 30.0)))
        raw_backoff = spec.get("backoff", [1.0, 1.6, 0.2, 120.0])
        assert isinstance(raw_backoff, list)
        self.backoff = tuple(float(value) for value in raw_backoff)
        raw_agents = spec["agents"]
        assert isinstance(raw_agents, list)
        self.agents = [
            SimulatedAgent(a["agent_id"], a["hostname"], a["key_pem"].encode(),
                           a["certificate_pem"].encode())
            for a in raw_agents
        ]  # fmt: skip
        self.stats = stats
        stats.agents = len(self.agents)
        self._first_attempt: dict[str, float] = {}
        self._phase: dict[str, str] = {}  # where the current session of each agent is

    def session(
        self,
        agent: SimulatedAgent,
        call: grpc.aio.StreamStreamCall[agent_pb2.AgentMessage, agent_pb2.ServerMessage],
    ) -> _Session:
        return _Session(agent, call, self.stats)

    def _channel(self, agent: SimulatedAgent) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=agent.key_pem,
            certificate_chain=agent.certificate_pem,
        )
        options = [
            *self.keepalive,
            ("grpc.ssl_target_name_override", self.server_name),
            # Without it channels with equal options share one TCP connection.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        return grpc.aio.secure_channel(self.agent_address, credentials, options=options)

    async def _one_session(self, agent: SimulatedAgent) -> None:
        async with self._channel(agent) as channel:
            call = agent_pb2_grpc.AgentServiceStub(channel).Session()
            session = self.session(agent, call)
            self.stats.sessions_opened += 1
            opened = time.monotonic()
            hello = agent_pb2.Hello(
                agent_id=agent.agent_id, agent_version=sonde.__version__,
                hostname=agent.hostname, platform="linux", os_name="Ubuntu 24.04 LTS",
                os_version="6.8.0-bench", collectors=COLLECTORS, agent_time=_now(),
            )  # fmt: skip
            self._phase[agent.agent_id] = "hello"  # connect, TLS, the stream, Hello
            await session.send(agent_pb2.AgentMessage(hello=hello))
            hello_written = time.monotonic()
            self._phase[agent.agent_id] = "welcome"
            first = await asyncio.wait_for(call.read(), self.welcome_timeout_s)
            if first is grpc.aio.EOF:  # a refusal raised AioRpcError (with its status) instead
                raise RuntimeError("the stream ended before Welcome")
            if not isinstance(first, agent_pb2.ServerMessage) or not first.HasField("welcome"):
                self.stats.protocol_errors += 1
                raise RuntimeError("no Welcome as the first server message")
            welcomed = time.monotonic()
            self.stats.came_online(opened, hello_written, welcomed)
            record = self.stats.records[agent.agent_id]
            if record.first_attempt_to_welcome_s is None:
                record.first_attempt_to_welcome_s = welcomed - self._first_attempt[agent.agent_id]
            self._phase[agent.agent_id] = "online"
            beats = asyncio.create_task(session.heartbeats(first.welcome.heartbeat_interval_s))
            try:
                await session.serve()
            finally:
                self.stats.online -= 1
                self.stats.unacked_at_end += len(session.unacked)
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await beats

    def _backoff_s(self, failures: int) -> float:
        """The real agent's reconnect delay after `failures` failed attempts in a row."""
        first, growth, jitter, cap = self.backoff
        nominal = min(first * growth ** min(failures, 64), cap)
        high = 1.0 + jitter if nominal < cap else 1.0
        return min(nominal * random.uniform(1.0 - jitter, high), cap)

    async def keep_online(self, index: int, agent: SimulatedAgent) -> None:
        await asyncio.sleep(self.ramp_s * index / max(1, len(self.agents)))
        record = self.stats.records[agent.agent_id] = AgentRecord()
        self._first_attempt[agent.agent_id] = time.monotonic()
        failures_in_a_row = 0
        while True:
            hint_ms: int | None = None
            if record.first_attempt_to_welcome_s is None:
                record.attempts += 1
            try:
                await self._one_session(agent)
                self.stats.errors["stream ended by the server"] += 1
            except grpc.aio.AioRpcError as error:
                hint_ms = retry_after_ms(error)
                if record.first_attempt_to_welcome_s is None:
                    if hint_ms is not None:
                        record.retry_hints_ms.append(hint_ms)
                    else:
                        record.other_failures += 1
                phase = self._phase.get(agent.agent_id, "")
                if hint_ms is not None:
                    self.stats.errors[f"{phase}: {error.code().name} with a retry hint"] += 1
                else:
                    details = (error.details() or "")[:80]
                    self.stats.errors[f"{phase}: {error.code().name}: {details}"] += 1
            except (TimeoutError, RuntimeError) as error:
                if record.first_attempt_to_welcome_s is None:
                    record.other_failures += 1
                phase = self._phase.get(agent.agent_id, "")
                self.stats.errors[f"{phase}: {type(error).__name__}: {error}"[:100]] += 1
            if self._phase.get(agent.agent_id) == "online":
                failures_in_a_row = 0  # a Welcome resets the backoff, as in the real agent
            if hint_ms is not None:
                # As the real agent does: the server's hint plus up to 20 %; no backoff step.
                await asyncio.sleep(hint_ms / 1000 * random.uniform(1.0, 1.2))
            else:
                await asyncio.sleep(self._backoff_s(failures_in_a_row))
                failures_in_a_row += 1

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self.keep_online(index, agent))
            for index, agent in enumerate(self.agents)
        ]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _write_progress(path: Path, stats: WorkerStats) -> None:
    """How many of this worker's agents have had their first Welcome, for the parent to
    watch without asking the server (a ListAgents of the whole fleet is work for it)."""
    welcomed = sum(1 for r in stats.records.values() if r.first_attempt_to_welcome_s is not None)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"agents": stats.agents, "welcomed": welcomed}))
    partial.replace(path)


async def _watch_parent(
    parent_pid: int, stop: asyncio.Event, stats: WorkerStats, progress: Path | None
) -> None:
    while not stop.is_set():
        if os.getppid() != parent_pid:
            stop.set()
        if progress is not None:
            _write_progress(progress, stats)
        await asyncio.sleep(0.5)


async def amain(
    spec: dict[str, object],
    lifetime_s: float,
    parent_pid: int,
    make_fleet: Callable[[dict[str, object], WorkerStats], Fleet] = Fleet,
) -> WorkerStats:
    stats = WorkerStats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.call_later(lifetime_s, stop.set)
    progress = Path(str(spec["progress_path"])) if "progress_path" in spec else None
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop, stats, progress))
    fleet = make_fleet(spec, stats)
    try:
        await asyncio.wait_for(fleet.run(stop), lifetime_s + 10)
    finally:
        watcher.cancel()
    return stats


def main(make_fleet: Callable[[dict[str, object], WorkerStats], Fleet] = Fleet) -> int:
    parser = argparse.ArgumentParser(description="simulated Sonde agents (one worker process)")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--lifetime", type=float, required=True, help="hard deadline, seconds")
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args()
    die_with_parent(signal.SIGKILL, args.parent_pid)
    # Last resort if the event loop wedges: the process ends anyway.
    watchdog = threading.Timer(args.lifetime + 30, os._exit, args=(3,))
    watchdog.daemon = True
    watchdog.start()
    spec = json.loads(args.spec.read_text())
    stats = asyncio.run(amain(spec, args.lifetime, args.parent_pid, make_fleet))
    summary = asdict(stats)
    summary["errors"] = dict(stats.errors)
    summary["records"] = {agent_id: asdict(r) for agent_id, r in stats.records.items()}
    args.summary.write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
