"""Dispatch: the agents' open streams, and pushing a diagnostic to one of them.

One AgentConnection per open AgentService.Session. A command's waiter is keyed by command id, not
by connection, so a result that arrives on a new stream after a reconnect still answers the
technician who asked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field

from sonde.agent.checks import CheckContext, evaluate
from sonde.server.domain.agents import AgentRecord, AgentRegistry
from sonde.server.domain.clock import utc_now
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.errors import DeadlineExceeded, NotFound, PermissionDenied, Unavailable
from sonde.v1 import agent_pb2

log = logging.getLogger(__name__)

# A stream that has sent nothing for this many heartbeat intervals is considered dead.
MISSED_HEARTBEATS = 2.5


@dataclass(eq=False)
class AgentConnection:
    """One open stream: what to send the agent, and when it last spoke."""

    agent_id: str
    hostname: str
    connected_at: dt.datetime
    outbound: asyncio.Queue[agent_pb2.ServerMessage | None] = field(default_factory=asyncio.Queue)
    last_message_at: float = field(default_factory=time.monotonic)
    close_reason: str = ""
    revoked: bool = False

    def send(self, message: agent_pb2.ServerMessage) -> None:
        self.outbound.put_nowait(message)

    def heard_from(self) -> None:
        self.last_message_at = time.monotonic()

    def close(self, reason: str, *, revoked: bool = False) -> None:
        """Ask the session to end: it sends what is queued, then Revoked when revoked."""
        if self.close_reason:
            return
        self.close_reason = reason
        self.revoked = revoked
        self.outbound.put_nowait(None)

    @property
    def closing(self) -> bool:
        return bool(self.close_reason)


def describe_offline(agent: AgentRecord, now: dt.datetime) -> str:
    name = f"agent {agent.hostname} ({agent.id})"
    if agent.revoked_at is not None:
        return f"{name} was revoked on {agent.revoked_at:%Y-%m-%d %H:%M} UTC"
    if agent.last_seen_at is None:
        return (
            f"{name} has not connected since it enrolled on {agent.enrolled_at:%Y-%m-%d %H:%M} UTC"
        )
    minutes = int((now - agent.last_seen_at).total_seconds() // 60)
    return (
        f"{name} is offline since {agent.last_seen_at:%Y-%m-%d %H:%M:%S} UTC "
        f"({minutes} min ago); queueing for offline agents comes in a later release"
    )


class Dispatcher:
    """Implements server.services.Dispatcher for agents connected to this server process."""

    def __init__(
        self, agents: AgentRegistry, diagnostics: Diagnostics, heartbeat_interval_s: float
    ) -> None:
        self._agents = agents
        self._diagnostics = diagnostics
        self.heartbeat_interval_s = heartbeat_interval_s
        self._connections: dict[str, AgentConnection] = {}
        self._waiting: dict[str, asyncio.Future[int]] = {}

    # -- connections -----------------------------------------------------------------------

    def attach(self, agent_id: str, hostname: str) -> AgentConnection:
        previous = self._connections.get(agent_id)
        if previous is not None:
            previous.close("replaced by a newer connection from the same agent")
        connection = AgentConnection(agent_id, hostname, utc_now())
        self._connections[agent_id] = connection
        return connection

    def detach(self, connection: AgentConnection) -> bool:
        """Forget a finished stream; True when it was the agent's current one."""
        if self._connections.get(connection.agent_id) is connection:
            del self._connections[connection.agent_id]
            return True
        return False

    def connection(self, agent_id: str) -> AgentConnection | None:
        return self._connections.get(agent_id)

    def online_count(self) -> int:
        return len(self._connections)

    async def disconnect(self, agent_id: str, reason: str) -> None:
        connection = self._connections.get(agent_id)
        if connection is not None:
            connection.close(reason, revoked=True)

    def close_silent_connections(self) -> list[str]:
        """Close every stream that missed its heartbeats; returns their agent ids."""
        limit = self.heartbeat_interval_s * MISSED_HEARTBEATS
        now = time.monotonic()
        silent = [c for c in self._connections.values() if now - c.last_message_at > limit]
        for connection in silent:
            connection.close(f"no heartbeat for {limit:.0f} s")
        return [c.agent_id for c in silent]

    async def watch_heartbeats(self) -> None:
        """Run until cancelled: close streams whose agent went silent."""
        while True:
            await asyncio.sleep(max(self.heartbeat_interval_s / 2, 0.5))
            for agent_id in self.close_silent_connections():
                log.info("agent %s missed its heartbeats; closing its stream", agent_id)

    def close_all(self, reason: str) -> None:
        for connection in list(self._connections.values()):
            connection.close(reason)

    # -- diagnostics -----------------------------------------------------------------------

    async def run_diagnostics(
        self, agent_id: str, *, ticket_id: int | None, requested_by: str, timeout_s: float
    ) -> int:
        connection = self._connections.get(agent_id)
        if connection is None or connection.closing:
            agent = await self._agents.get(agent_id)
            raise Unavailable(describe_offline(agent, utc_now()))
        command_id = uuid.uuid4().hex
        expires_at = utc_now() + dt.timedelta(seconds=timeout_s)
        await self._diagnostics.create_command(
            command_id,
            agent_id,
            kind="collect",
            ticket_id=ticket_id,
            requested_by=requested_by,
            expires_at=expires_at,
        )
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = waiter
        message = agent_pb2.ServerMessage()
        message.collect.command_id = command_id
        message.collect.expires_at.FromDatetime(expires_at)
        connection.send(message)
        try:
            return await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(
                f"agent {connection.hostname} did not send its diagnostic within "
                f"{timeout_s:.0f} s; it will be stored when it arrives (command {command_id})"
            ) from None
        finally:
            self._waiting.pop(command_id, None)

    async def accept_result(
        self, agent_id: str, result: agent_pb2.Result, received_at: dt.datetime
    ) -> None:
        """Store a result from `agent_id` (the certificate's id) and answer whoever waits."""
        waiter = self._waiting.get(result.command_id)
        try:
            if result.HasField("snapshot"):
                snapshot = result.snapshot
                snapshot.agent_id = agent_id
                findings = evaluate(snapshot, CheckContext(reference_time=received_at))
                snapshot_id = await self._diagnostics.store_result(
                    result.command_id, agent_id, snapshot, findings, received_at
                )
                if waiter is not None and not waiter.done():
                    waiter.set_result(snapshot_id)
            else:
                reason = result.failure.reason or "the agent gave no reason"
                await self._diagnostics.fail_command(result.command_id, agent_id, reason)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(
                        Unavailable(f"the agent could not run the diagnostic: {reason}")
                    )
        except (NotFound, PermissionDenied) as refused:
            # A result for a command this agent was never sent: drop it, change nothing.
            log.warning("refused a result from agent %s: %s", agent_id, refused)
