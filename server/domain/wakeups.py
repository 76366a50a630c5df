"""Wake-ups: telling the replica that cares that something changed for an agent or a command.

A unit of work that queues or cancels a command, revokes an agent or finishes a command
records a Wake with `emit`. On PostgreSQL, emit also issues pg_notify inside the transaction,
so every replica's listener (server/domain/wake_listener.py) hears it exactly when the change
commits, and never for a change that rolled back; on SQLite, where one process holds the data
folder, the caller publishes the wakes in process once the unit returned. Receivers must be
idempotent: a replica also hears its own notifications.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from sonde.server.domain.commands import CommandRecord
    from sonde.v1 import remediation_pb2

log = logging.getLogger(__name__)

CHANNEL = "sonde_wake"


class WakeKind(enum.StrEnum):
    COMMANDS_DUE = "due"  # a command was queued for the agent
    CANCEL = "cancel"  # stop a delivered command on the agent
    REVOKED = "revoked"  # close the agent's stream and refuse it from now on
    FINAL = "final"  # a command reached its final state
    USERS = "users"  # users or API tokens changed: drop cached principals


@dataclass(frozen=True)
class Wake:
    kind: WakeKind
    agent_id: str = ""
    command_id: str = ""

    def encode(self) -> str:
        return f"{self.kind.value}|{self.agent_id}|{self.command_id}"

    @classmethod
    def decode(cls, text: str) -> Wake | None:
        parts = text.split("|")
        if len(parts) != 3:
            return None
        try:
            kind = WakeKind(parts[0])
        except ValueError:
            return None
        return cls(kind, parts[1][:64], parts[2][:64])


def emit(connection: Connection, wakes: list[Wake], wake: Wake) -> None:
    """Record `wake` for after the commit (and notify other replicas on PostgreSQL)."""
    wakes.append(wake)
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_notify(CHANNEL, wake.encode())))


AgentReceiver = Callable[[Wake], None]


class LocalStream(Protocol):
    """An agent's stream on this replica that takes its commands as they are queued, once its
    session has sent what was due when it opened (server/domain/sessions.py, AgentConnection)."""

    @property
    def agent_id(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def closing(self) -> bool: ...

    def deliver(
        self,
        commands: Sequence[CommandRecord],
        orders: Mapping[str, remediation_pb2.SignedRunScript] | None = None,
    ) -> None: ...


class Wakeups:
    """This replica's receivers: each local agent session, and callers waiting for a command."""

    def __init__(self) -> None:
        self._sessions: dict[str, AgentReceiver] = {}
        self._streams: dict[str, LocalStream] = {}
        self._final: defaultdict[str, list[asyncio.Future[object]]] = defaultdict(list)
        self._revoked: list[Callable[[str], None]] = []
        # Moves on every USERS wake-up (and after a missed notification): caches of principals
        # compare it (server/domain/users.py, Users.generation).
        self.users_generation = 0

    def attach_session(self, agent_id: str, receiver: AgentReceiver) -> None:
        self._sessions[agent_id] = receiver

    def detach_session(self, agent_id: str, receiver: AgentReceiver) -> None:
        if self._sessions.get(agent_id) is receiver:
            del self._sessions[agent_id]

    def attach_stream(self, stream: LocalStream) -> None:
        self._streams[stream.agent_id] = stream

    def detach_stream(self, stream: LocalStream) -> None:
        if self._streams.get(stream.agent_id) is stream:
            del self._streams[stream.agent_id]

    def local_stream(self, agent_id: str) -> LocalStream | None:
        """The agent's open stream here that takes commands directly, if this replica has one.
        A plain lookup, so a unit of work may call it from the SQLite writer thread."""
        stream = self._streams.get(agent_id)
        return None if stream is None or stream.closing else stream

    def on_revoked(self, listener: Callable[[str], None]) -> None:
        self._revoked.append(listener)

    def publish(self, wakes: list[Wake], outcome: object = None) -> None:
        """Deliver wakes here; `outcome` (what the unit returned) goes to local final waiters."""
        for wake in wakes:
            self.receive(wake, outcome)

    def receive(self, wake: Wake, outcome: object = None) -> None:
        if wake.kind is WakeKind.USERS:
            self.users_generation += 1
            return
        if wake.kind is WakeKind.FINAL:
            for waiter in self._final.pop(wake.command_id, []):
                if not waiter.done():
                    waiter.set_result(outcome)
            return
        if wake.kind is WakeKind.REVOKED:
            for listener in self._revoked:
                listener(wake.agent_id)
        receiver = self._sessions.get(wake.agent_id)
        if receiver is not None:
            receiver(wake)

    def wake_all_sessions(self) -> None:
        """After a missed notification (the listener reconnected): every session looks again,
        and cached principals are dropped."""
        self.users_generation += 1
        for agent_id, receiver in list(self._sessions.items()):
            receiver(Wake(WakeKind.COMMANDS_DUE, agent_id))
        for command_id in list(self._final):
            self.receive(Wake(WakeKind.FINAL, "", command_id))

    def final_waiter(self, command_id: str) -> asyncio.Future[object]:
        waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._final[command_id].append(waiter)
        return waiter

    def forget_waiter(self, command_id: str, waiter: asyncio.Future[object]) -> None:
        waiters = self._final.get(command_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._final[command_id]

    @property
    def local_sessions(self) -> int:
        return len(self._sessions)
