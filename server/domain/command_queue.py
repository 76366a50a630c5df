"""The durable queue of commands: asked by technicians, claimed by the agent's session, swept.

What a command is and how its state moves is server/domain/commands.py; this is what happens to
commands: queue (audited), cancel (audited), list and read, wait for a final state by watching
the row, claim an agent's due ones for its session, and end the overdue ones.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.agent_reach import require_agent_of
from sonde.server.domain.agents import resolve_agent
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.command_refs import resolve_command_id
from sonde.server.domain.commands import (
    COLUMNS,
    DELIVERABLE_STATES,
    JOINED,
    MAX_COMMAND_ID_CHARS,
    CommandKind,
    CommandRecord,
    CommandState,
    FinishedCommand,
    QueuedCommand,
    check_transition,
    finish,
    insert_command,
    is_open,
    load_command,
    lock_command,
    never_connected,
    new_command,
    record_from_row,
)
from sonde.server.domain.roles import Principal
from sonde.server.domain.sessions import describe_offline
from sonde.server.domain.text import checked_text
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.ticket_waiting import require_ticket_of
from sonde.server.domain.wakeups import LocalStream, Wake, WakeKind, Wakeups, emit
from sonde.server.errors import Conflict, InvalidArgument, Unavailable
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, commands
from sonde.server.storage.types import AnyRow
from sonde.v1 import remediation_pb2

Orders = Mapping[str, remediation_pb2.SignedRunScript]
OrderSigner = Callable[[Connection, Sequence[CommandRecord]], Orders]

DEFAULT_EXPIRY = timedelta(hours=24)
MAX_EXPIRY = timedelta(days=30)
# A delivered command whose result has not come this long after its expiry is interrupted.
RESULT_GRACE = timedelta(minutes=10)
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
WAIT_POLL_S = 1.0  # the row is re-read this often while waiting, whatever the wake-ups do

_OPEN_FOR_AGENT = (
    select(commands.c.id, commands.c.agent_id, commands.c.state, commands.c.expires_at)
    .where(commands.c.agent_id == bindparam("agent_id"))
    .where(commands.c.state.in_(sorted(state.value for state in DELIVERABLE_STATES)))
    .order_by(commands.c.created_at, commands.c.id)
)
_CLAIMABLE = _OPEN_FOR_AGENT.with_for_update()


class Commands:
    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        wakeups: Wakeups,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._audited = audited
        self._wakeups = wakeups
        self._clock = clock
        # Signs the script runs among commands claimed inside a unit of work (their orders go
        # out with them on the direct path): server/domain/script_runs.py, ScriptRuns.sign_in.
        self.sign_orders: OrderSigner | None = None

    # -- asking ----------------------------------------------------------------------------

    async def queue(
        self,
        principal: Principal,
        agent_ref: str,
        kind: CommandKind,
        *,
        ticket_id: int | None,
        expires_in: timedelta = DEFAULT_EXPIRY,
        require_online: bool = False,
    ) -> QueuedCommand:
        """Record a command for the agent `agent_ref` names (an id first, then a name) and
        wake its session. Audited as `diagnostics.run`, refusals included.

        When this replica holds the agent's current stream, the same unit also marks the
        command (after any older queued ones) delivered by that session, and they are sent on
        the stream once it commits: no wake-up, no claim of its own."""
        wakes: list[Wake] = []
        now = self._clock()

        def unit(
            connection: Connection, entry: AuditEntry
        ) -> tuple[QueuedCommand, LocalStream | None, builtins.list[CommandRecord], Orders]:
            if not timedelta(seconds=1) <= expires_in <= MAX_EXPIRY:
                raise InvalidArgument(f"a command expires after 1 s to {MAX_EXPIRY.days} days")
            agent = resolve_agent(connection, agent_ref)
            entry.agent_id = agent.id
            if agent.revoked_at is not None:
                raise Conflict(f"agent {agent.hostname} ({agent.id}) is revoked")
            require_agent_of(agent, doing="sonde diag")
            if require_online and not agent.online:
                raise Unavailable(describe_offline(agent, now))
            if ticket_id is not None:  # refused before anything is written or sent
                require_ticket_of(load_ticket(connection, ticket_id), agent.id, agent.hostname)
            stream = self._wakeups.local_stream(agent.id)
            if stream is not None and (not agent.online or agent.session_id != stream.session_id):
                stream = None  # the agent's row names another stream (or none yet): wake it
            sent = (
                []
                if stream is None
                else claim_in(
                    connection, agent.id, stream.session_id, now, wakes, resend_delivered=False
                )
            )
            record = new_command(
                agent_id=agent.id,
                agent_hostname=agent.hostname,
                kind=kind,
                ticket_id=ticket_id,
                requested_by=principal.name,
                now=now,
                expires_at=now + expires_in,
            )
            if stream is None:
                emit(connection, wakes, Wake(WakeKind.COMMANDS_DUE, agent.id, record.id))
            else:
                check_transition(record.id, CommandState.QUEUED, CommandState.DELIVERED)
                record = replace(
                    record, state=CommandState.DELIVERED, delivered_at=now, deliveries=1
                )
                sent.append(record)
            insert_command(
                connection, record, delivered_session=stream.session_id if stream else ""
            )
            entry.detail |= {"command_id": record.id, "kind": kind.value}
            entry.detail["expires_in_s"] = int(expires_in.total_seconds())
            # What was just written, not read back (ARCHITECTURE.md: a hot path does not
            # re-read what it just wrote).
            if stream is not None:
                audit_dispatch(self._audited, connection, sent, stream.session_id)
            orders = self.sign_orders(connection, sent) if self.sign_orders and sent else {}
            return QueuedCommand(record, agent.online), stream, sent, orders

        queued, stream, sent, orders = await self._audited.run(
            principal.name,
            "diagnostics.run",
            unit,
            ticket_id=ticket_id,
            peer=principal.peer,
        )
        self._wakeups.publish(wakes)
        if stream is not None:
            stream.deliver(sent, orders)
        return queued

    async def cancel(self, principal: Principal, command_id: str, reason: str) -> CommandRecord:
        """Cancel a command that has not finished: a queued one never runs; a delivered one is
        told to stop. Audited as `command.cancel`."""
        command_id = _checked_id(command_id)
        reason = checked_text("the reason", reason, max_chars=500)
        wakes: list[Wake] = []
        now = self._clock()

        def unit(connection: Connection, entry: AuditEntry) -> CommandRecord:
            found = resolve_command_id(connection, command_id)
            row = lock_command(connection, found)
            entry.agent_id, entry.ticket_id = row.agent_id, row.ticket_id
            entry.detail["command_id"] = found
            state = CommandState(row.state)
            if state.final:
                raise Conflict(
                    f"command {found} already ended {state.value}; there is nothing to cancel"
                )
            finish(
                connection,
                row,
                CommandState.CANCELLED,
                now,
                wakes,
                reason=reason or f"cancelled by {principal.name}",
                cancelled_by=principal.name,
            )
            if state not in (CommandState.QUEUED, CommandState.PENDING_APPROVAL):
                emit(connection, wakes, Wake(WakeKind.CANCEL, row.agent_id, found))
            return load_command(connection, found)

        cancelled = await self._audited.run(
            principal.name, "command.cancel", unit, peer=principal.peer
        )
        self._wakeups.publish(wakes, FinishedCommand(cancelled))
        return cancelled

    # -- reading ---------------------------------------------------------------------------

    async def get(self, command_id: str) -> CommandRecord:
        command_id = _checked_id(command_id)
        return await self._db.read(
            lambda connection: load_command(connection, resolve_command_id(connection, command_id))
        )

    async def list(
        self,
        *,
        agent_id: str | None = None,
        states: Iterable[CommandState] = (),
        ticket_id: int | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[CommandRecord]:
        """Newest first."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
        query = select(*COLUMNS).select_from(JOINED)
        if agent_id is not None:
            query = query.where(commands.c.agent_id == agent_id)
        wanted = sorted({state.value for state in states})
        if wanted:
            query = query.where(commands.c.state.in_(wanted))
        if ticket_id is not None:
            query = query.where(commands.c.ticket_id == ticket_id)
        query = query.order_by(commands.c.created_at.desc(), commands.c.id.desc()).limit(limit)
        rows = await self._db.read(lambda connection: connection.execute(query).all())
        return [record_from_row(row) for row in rows]

    async def wait_final(
        self, command_id: str, timeout_s: float, *, known: CommandRecord | None = None
    ) -> tuple[CommandRecord, object]:
        """Wait until the command is final or `timeout_s` passed; returns the row as it is then,
        and what the finishing unit handed over in process (None when it finished elsewhere).
        `known`: the command as the caller has just seen it (queue's answer), so the first look
        needs no read; the row is read every WAIT_POLL_S after that, whatever the wake-ups do."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            waiter = self._wakeups.final_waiter(command_id)
            try:
                if known is not None and known.id == command_id:
                    record, known = known, None
                else:
                    record = await self.get(command_id)
                if record.state.final:
                    return record, None
                left = deadline - loop.time()
                if left <= 0:
                    return record, None
                # The waiter itself, not wait_for(shield(...)): the task resumes in the loop
                # iteration after the finishing unit hands over, not two or three later.
                timer = loop.call_later(min(left, WAIT_POLL_S), _look_again, waiter)
                try:
                    outcome = await waiter
                finally:
                    timer.cancel()
                if isinstance(outcome, FinishedCommand):
                    return outcome.command, outcome.detail
            finally:
                self._wakeups.forget_waiter(command_id, waiter)

    # -- delivery (called by the session that holds the agent's stream) --------------------

    async def claim_due(
        self, agent_id: str, session_id: str, *, resend_delivered: bool, known_due: bool = False
    ) -> builtins.list[CommandRecord]:
        """The agent's commands to send now, in creation order, marked delivered by this
        session. Queued ones past their expiry end `expired` here and are never sent.
        `resend_delivered` (a new session) also resends what an earlier session delivered.
        Without `known_due` (a wake-up that names a queued command) a read looks first, so a
        session with nothing to send costs no write transaction."""
        now = self._clock()
        wakes: list[Wake] = []

        def unit(connection: Connection) -> builtins.list[CommandRecord]:
            claimed = claim_in(
                connection, agent_id, session_id, now, wakes, resend_delivered=resend_delivered
            )
            audit_dispatch(self._audited, connection, claimed, session_id)
            return claimed

        if not known_due and not await self._db.read(
            lambda connection: (
                connection.execute(_OPEN_FOR_AGENT.limit(1), {"agent_id": agent_id}).first()
                is not None
            )
        ):
            return []
        claimed = await self._db.write(unit)
        self._wakeups.publish(wakes)
        return claimed

    async def agents_with_queued(self, replica_id: str) -> builtins.list[str]:
        """Agents held by `replica_id` with a queued command: the fallback for a lost wake-up."""
        query = (
            select(commands.c.agent_id)
            .distinct()
            .select_from(commands.join(agents, agents.c.id == commands.c.agent_id))
            .where(commands.c.state == CommandState.QUEUED.value)
            .where(agents.c.session_replica == replica_id)
        )
        rows = await self._db.read(lambda connection: connection.execute(query).all())
        return [str(row.agent_id) for row in rows]

    async def end_overdue(self) -> int:
        """Queued commands past their expiry end `expired`; delivered ones with no result
        RESULT_GRACE after it end `interrupted`. Safe on every replica at once."""
        now = self._clock()
        wakes: list[Wake] = []

        def unit(connection: Connection) -> int:
            overdue = connection.execute(
                select(commands.c.id, commands.c.state).where(
                    (
                        (commands.c.state == CommandState.QUEUED.value)
                        & (commands.c.expires_at <= now)
                    )
                    | (
                        commands.c.state.in_(
                            [CommandState.DELIVERED.value, CommandState.RUNNING.value]
                        )
                        & (commands.c.expires_at <= now - RESULT_GRACE)
                    )
                )
            ).all()
            ended = 0
            for overdue_row in overdue:
                row = lock_command(connection, overdue_row.id)
                if not is_open(row.state):
                    continue  # ended meanwhile, by its result or on another replica
                ended += 1
                if row.state == CommandState.QUEUED.value:
                    _expire(connection, row, now, wakes)
                else:
                    finish(
                        connection,
                        row,
                        CommandState.INTERRUPTED,
                        now,
                        wakes,
                        reason="the agent took the command but sent no result before "
                        f"{row.expires_at + RESULT_GRACE:%Y-%m-%d %H:%M} UTC",
                    )
            return ended

        ended = await self._db.write(unit)
        self._wakeups.publish(wakes)
        return ended


def _look_again(waiter: asyncio.Future[object]) -> None:
    """A wait's poll interval passed with no hand-over: its caller reads the row again."""
    if not waiter.done():
        waiter.set_result(None)


def _checked_id(command_id: str) -> str:
    command_id = command_id.strip()
    if not command_id or len(command_id) > MAX_COMMAND_ID_CHARS:
        raise InvalidArgument(f"a command id is 1 to {MAX_COMMAND_ID_CHARS} characters")
    return command_id


def audit_dispatch(
    audited: AuditedWrites,
    connection: Connection,
    claimed: Iterable[CommandRecord],
    session_id: str,
) -> None:
    """A `script.dispatch` audit row for each script run among `claimed`, in the claim's own
    transaction (a diagnostic's delivery is not audited: its request and result are)."""
    for command in claimed:
        if command.kind is CommandKind.RUN_SCRIPT:
            audited.append_in(
                connection,
                "server",
                "script.dispatch",
                AuditEntry(
                    command.agent_id,
                    command.ticket_id,
                    {
                        "command_id": command.id,
                        "session": session_id,
                        "deliveries": command.deliveries,
                    },
                ),
            )


def claim_in(
    connection: Connection,
    agent_id: str,
    session_id: str,
    now: datetime,
    wakes: list[Wake],
    *,
    resend_delivered: bool,
) -> list[CommandRecord]:
    """Mark the agent's due commands delivered by `session_id`, inside the caller's unit."""
    due: list[str] = []
    # Locked (PostgreSQL): a cancel that commits first is seen here and never sent;
    # one that comes after waits for this claim, then tells the agent to stop.
    for row in connection.execute(_CLAIMABLE, {"agent_id": agent_id}).all():
        state = CommandState(row.state)
        if state is CommandState.QUEUED and row.expires_at <= now:
            _expire(connection, row, now, wakes)  # the row is locked already
        elif state is CommandState.QUEUED or resend_delivered:
            due.append(row.id)
    if not due:
        return []
    connection.execute(
        update(commands)
        .where(commands.c.id.in_(due))
        .where(commands.c.state == CommandState.QUEUED.value)
        .values(state=CommandState.DELIVERED.value, delivered_at=now)
    )
    connection.execute(
        update(commands)
        .where(commands.c.id.in_(due))
        .values(deliveries=commands.c.deliveries + 1, delivered_session=session_id)
    )
    return [load_command(connection, command_id) for command_id in due]


def _expire(connection: Connection, row: AnyRow, now: datetime, wakes: list[Wake]) -> None:
    """A queued command whose agent did not connect before its expiry: it never runs."""
    finish(
        connection, row, CommandState.EXPIRED, now, wakes, reason=never_connected(row.expires_at)
    )
