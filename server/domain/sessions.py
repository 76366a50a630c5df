"""Agent sessions: the streams this replica holds, and who holds which stream, for every replica.

One AgentConnection per open AgentService.Session on this replica (LocalSessions). Ownership
is written to the agent's row as (session_replica, session_id, online_since), in batches like
heartbeats, so Welcome never waits for a write (SessionRows). A session ends only its own
ownership: a disconnect clears the row only when the row still names that session, so a
reconnect on another replica is never marked offline by the old stream's end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.agents import MAX_HOSTNAME_CHARS, AgentRecord, HelloInfo
from sonde.server.domain.batching import flush_in_batches
from sonde.server.domain.commands import CommandKind, CommandRecord
from sonde.server.domain.text import sanitized
from sonde.server.domain.wakeups import Wake, WakeKind
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents
from sonde.v1 import agent_pb2, remediation_pb2

log = logging.getLogger(__name__)

# A stream that has sent nothing for this many heartbeat intervals is considered dead.
MISSED_HEARTBEATS = 2.5


def new_session_id() -> str:
    return uuid.uuid4().hex


def collect_message(command: CommandRecord) -> agent_pb2.ServerMessage:
    message = agent_pb2.ServerMessage()
    message.collect.command_id = command.id
    message.collect.expires_at.FromDatetime(command.expires_at)
    message.collect.collectors.extend(command.collectors)
    return message


@dataclass(eq=False)
class AgentConnection:
    """One open stream: what to send the agent, and when it last spoke."""

    agent_id: str
    hostname: str
    connected_at: dt.datetime
    session_id: str = field(default_factory=new_session_id)
    outbound: asyncio.Queue[agent_pb2.ServerMessage | None] = field(default_factory=asyncio.Queue)
    due: asyncio.Event = field(default_factory=asyncio.Event)  # commands may be waiting
    due_known: bool = False  # a wake-up named a command queued for the agent
    last_message_at: float = field(default_factory=time.monotonic)
    close_reason: str = ""
    revoked: bool = False
    boot_time: dt.datetime | None = None  # when the machine started, as its Hello said

    def send(self, message: agent_pb2.ServerMessage) -> None:
        self.outbound.put_nowait(message)

    def deliver(
        self,
        commands: Sequence[CommandRecord],
        orders: Mapping[str, remediation_pb2.SignedRunScript] | None = None,
    ) -> None:
        """Send commands claimed for this session, in the order given; a script run as its
        signed order from `orders` (server/domain/script_runs.py)."""
        for command in commands:
            if self.closing:
                continue
            if command.kind is CommandKind.RUN_SCRIPT:
                order = (orders or {}).get(command.id)
                if order is None:
                    continue  # no order could be made: the sweep ends it when it expires
                message = agent_pb2.ServerMessage()
                message.run_script.CopyFrom(order)
                self.send(message)
            else:
                self.send(collect_message(command))

    def heard_from(self) -> None:
        self.last_message_at = time.monotonic()

    def close(self, reason: str, *, revoked: bool = False) -> None:
        """Ask the session to end: it sends what is queued, then Revoked when revoked."""
        if self.close_reason:
            return
        self.close_reason = reason
        self.revoked = revoked
        self.outbound.put_nowait(None)
        self.due.set()

    @property
    def closing(self) -> bool:
        return bool(self.close_reason)

    def on_wake(self, wake: Wake) -> None:
        """What a wake-up for this agent does to its session here."""
        if wake.kind is WakeKind.COMMANDS_DUE:
            self.due_known = self.due_known or bool(wake.command_id)
            self.due.set()
        elif wake.kind is WakeKind.CANCEL:
            message = agent_pb2.ServerMessage()
            message.cancel.command_id = wake.command_id
            self.send(message)
        elif wake.kind is WakeKind.REVOKED:
            self.close("revoked by an admin", revoked=True)


def describe_offline(agent: AgentRecord, now: dt.datetime) -> str:
    name = f"agent {agent.hostname} ({agent.id})"
    if agent.revoked_at is not None:
        return f"{name} was revoked on {agent.revoked_at:%Y-%m-%d %H:%M} UTC"
    if agent.last_seen_at is None:
        return (
            f"{name} has not connected since it enrolled on {agent.enrolled_at:%Y-%m-%d %H:%M} UTC"
        )
    minutes = int((now - agent.last_seen_at).total_seconds() // 60)
    return f"{name} is offline since {agent.last_seen_at:%Y-%m-%d %H:%M:%S} UTC ({minutes} min ago)"


class LocalSessions:
    """The streams this replica holds, by agent id."""

    def __init__(self, heartbeat_interval_s: float) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self._connections: dict[str, AgentConnection] = {}

    def attach(self, agent_id: str, hostname: str, at: dt.datetime) -> AgentConnection:
        previous = self._connections.get(agent_id)
        if previous is not None:
            previous.close("replaced by a newer connection from the same agent")
        connection = AgentConnection(agent_id, hostname, at)
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


@dataclass(frozen=True)
class SessionOpened:
    agent_id: str
    session_id: str
    hello: HelloInfo
    remote_address: str
    at: dt.datetime


@dataclass(frozen=True)
class SessionClosed:
    agent_id: str
    session_id: str
    at: dt.datetime


SessionChange = SessionOpened | SessionClosed

_CLOSE_SESSION = (
    update(agents)
    .where(agents.c.id == bindparam("agent"))
    .where(agents.c.session_id == bindparam("session"))
    .values(
        connected=False,
        online_since=None,
        session_replica=None,
        session_id=None,
        last_seen_at=bindparam("at"),
    )
)


class SessionRows:
    """Who holds which stream, written in batches: every `flush_interval_s` or when full."""

    def __init__(
        self,
        db: Database,
        replica_id: str,
        flush_interval_s: float = 0.2,
        max_batch: int = 1000,
        on_unknown: Callable[[str], None] | None = None,
    ) -> None:
        self._db = db
        self._replica_id = replica_id
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._on_unknown = on_unknown
        self._pending: list[SessionChange] = []
        self._full = asyncio.Event()

    def add(self, change: SessionChange) -> None:
        self._pending.append(change)
        if len(self._pending) >= self._max_batch:
            self._full.set()

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        self._full.clear()
        try:
            unknown = await self._db.write(lambda connection: self._write(connection, batch))
        except BaseException:
            self._pending[:0] = batch
            raise
        for agent_id in unknown:
            if self._on_unknown is not None:
                self._on_unknown(agent_id)
        return len(batch)

    def _write(self, connection: Connection, batch: list[SessionChange]) -> list[str]:
        unknown: list[str] = []
        for change in batch:  # in order: an agent's close then its reopen stay in that order
            if isinstance(change, SessionClosed):
                connection.execute(
                    _CLOSE_SESSION,
                    {"agent": change.agent_id, "session": change.session_id, "at": change.at},
                )
                continue
            values = _opened_values(change, self._replica_id)
            found = connection.execute(
                update(agents).where(agents.c.id == change.agent_id).values(**values)
            )
            if found.rowcount == 0:
                unknown.append(change.agent_id)
        return unknown

    async def run(self) -> None:
        """Flush until cancelled; a failed write is logged and retried with the next batch."""
        await flush_in_batches(self.flush, self._full, self._flush_interval_s, "session changes")


def _opened_values(change: SessionOpened, replica_id: str) -> dict[str, object]:
    hello = change.hello
    values: dict[str, object] = {
        "platform": sanitized(hello.platform, max_chars=32),
        "os_name": sanitized(hello.os_name, max_chars=255),
        "os_version": sanitized(hello.os_version, max_chars=255),
        "agent_version": sanitized(hello.agent_version, max_chars=64),
        "connected": True,
        "online_since": change.at,
        "last_seen_at": change.at,
        "remote_address": sanitized(change.remote_address, max_chars=255),
        "session_replica": replica_id,
        "session_id": change.session_id,
    }
    hostname = sanitized(hello.hostname, max_chars=MAX_HOSTNAME_CHARS)
    if hostname:
        values |= {"hostname": hostname, "hostname_key": hostname.lower()}
    return values


class AgentAdmission:
    """Which agents may open a session, held in memory: revoked ids, and ids known enrolled.

    Loaded once at start; a revocation (here or, through a wake-up, on another replica) adds
    to it at once, and an id never seen is looked up once (a new enrollment).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._revoked: set[str] = set()
        self._known: set[str] = set()

    async def load(self) -> None:
        rows = await self._db.read(
            lambda connection: connection.execute(select(agents.c.id, agents.c.revoked_at)).all()
        )
        for row in rows:
            (self._revoked if row.revoked_at is not None else self._known).add(row.id)

    def revoked(self, agent_id: str) -> None:
        self._known.discard(agent_id)
        self._revoked.add(agent_id)

    def forget(self, agent_id: str) -> None:
        self._known.discard(agent_id)

    async def admits(self, agent_id: str) -> bool:
        if agent_id in self._revoked:
            return False
        if agent_id in self._known:
            return True
        row = await self._db.read(
            lambda connection: connection.execute(
                select(agents.c.revoked_at).where(agents.c.id == agent_id)
            ).first()
        )
        if row is None:
            return False
        if row.revoked_at is not None:
            self._revoked.add(agent_id)
            return False
        self._known.add(agent_id)
        return True
