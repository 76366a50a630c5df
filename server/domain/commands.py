"""Commands: everything the server asks of an agent, durable from the moment it is asked.

    queued -> delivered -> running -> succeeded | failed | timed_out | cancelled | refused
                                      | interrupted
    queued -> expired | cancelled    (never delivered: offline past expires_at, or cancelled)
    pending_approval -> queued | rejected | expired | cancelled
                                     (a high-risk script run: a second person approves first)

The row in `commands` is the truth, not a future in some process's memory: any replica's
session delivers an agent's due commands in creation order when it connects and as they are
queued (woken through server/domain/wakeups.py), and whoever waits for a result watches the
row. A final state is final: a late result for it is acknowledged and dropped. At-least-once
delivery, at-most-once execution: a reconnect resends what was delivered and not finished,
and the agent's executed-id journal answers a resent command from its outbox.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.wakeups import Wake, WakeKind, emit
from sonde.server.errors import Conflict, NotFound
from sonde.server.storage.driver import DriverStatement
from sonde.server.storage.tables import agents, commands, snapshots
from sonde.server.storage.types import AnyRow

MAX_COMMAND_ID_CHARS = 64
MAX_REASON_CHARS = 2000


class CommandKind(enum.StrEnum):
    COLLECT = "collect"
    RUN_SCRIPT = "run_script"  # a catalog script (server/domain/script_runs.py)


class CommandState(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    QUEUED = "queued"
    DELIVERED = "delivered"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    REFUSED = "refused"
    INTERRUPTED = "interrupted"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        return self not in TRANSITIONS


_AFTER_DELIVERY = frozenset(
    {
        CommandState.RUNNING,
        CommandState.SUCCEEDED,
        CommandState.FAILED,
        CommandState.TIMED_OUT,
        CommandState.CANCELLED,
        CommandState.REFUSED,
        CommandState.INTERRUPTED,
    }
)

# The state machine, written once: every change of state goes through `check_transition`.
TRANSITIONS: Mapping[CommandState, frozenset[CommandState]] = {
    # Never sent until approved; rejected, or not approved in time (expired), it never runs.
    CommandState.PENDING_APPROVAL: frozenset(
        {
            CommandState.QUEUED,
            CommandState.REJECTED,
            CommandState.EXPIRED,
            CommandState.CANCELLED,
        }
    ),
    CommandState.QUEUED: frozenset(
        {CommandState.DELIVERED, CommandState.EXPIRED, CommandState.CANCELLED}
    ),
    CommandState.DELIVERED: _AFTER_DELIVERY,
    CommandState.RUNNING: _AFTER_DELIVERY - {CommandState.RUNNING},
}
FINAL_STATES = frozenset(state for state in CommandState if state.final)
OPEN_STATES = frozenset(TRANSITIONS)
# What an agent's session may send: never a run that still waits for its approval.
DELIVERABLE_STATES = OPEN_STATES - {CommandState.PENDING_APPROVAL}


def check_transition(command_id: str, current: CommandState, target: CommandState) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise Conflict(f"command {command_id} is {current.value}; it cannot become {target.value}")


@dataclass(frozen=True)
class CommandRecord:
    id: str
    agent_id: str
    agent_hostname: str
    kind: CommandKind
    state: CommandState
    ticket_id: int | None
    requested_by: str
    created_at: datetime
    expires_at: datetime
    delivered_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    reason: str
    cancelled_by: str
    deliveries: int
    snapshot_id: int | None
    collectors: tuple[str, ...] = ()  # a diagnostic's; (): every collector


@dataclass(frozen=True)
class QueuedCommand:
    command: CommandRecord
    agent_online: bool


COLUMNS = (
    commands,
    agents.c.hostname.label("agent_hostname"),
    snapshots.c.id.label("snapshot_id"),
)
JOINED = commands.join(agents, agents.c.id == commands.c.agent_id).outerjoin(
    snapshots, snapshots.c.command_id == commands.c.id
)
_ONE = select(*COLUMNS).select_from(JOINED).where(commands.c.id == bindparam("command_id"))
_ONE_LOCKED = _ONE.with_for_update(of=commands)
# Built once and run on SQLite's own cursor: every command ends through it.
_FINISH = DriverStatement(
    update(commands)
    .where(commands.c.id == bindparam("finished_id"))
    .values(
        state=bindparam("finished_state"),
        finished_at=bindparam("finished_at_"),
        failure_reason=bindparam("finished_reason"),
        cancelled_by=bindparam("finished_by"),
    )
)


# Built once and run on SQLite's own cursor: every command asked is one row.
_INSERT = DriverStatement(commands.insert())  # every column given: no defaults to run


def insert_command(
    connection: Connection, record: CommandRecord, *, delivered_session: str = ""
) -> None:
    """Write `record` as a new row, inside the caller's unit (`delivered_session`: the
    session it was handed to in the same unit, if any)."""
    _INSERT.rows(
        connection,
        {
            "id": record.id,
            "agent_id": record.agent_id,
            "kind": record.kind.value,
            "ticket_id": record.ticket_id,
            "requested_by": record.requested_by,
            "created_at": record.created_at,
            "expires_at": record.expires_at,
            "state": record.state.value,
            "delivered_at": record.delivered_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "failure_reason": record.reason,
            "cancelled_by": record.cancelled_by,
            "deliveries": record.deliveries,
            "delivered_session": delivered_session,
            "collectors": ",".join(record.collectors),
        },
    )


def record_from_row(row: AnyRow) -> CommandRecord:
    return CommandRecord(
        id=row.id,
        agent_id=row.agent_id,
        agent_hostname=row.agent_hostname,
        kind=CommandKind(row.kind),
        state=CommandState(row.state),
        ticket_id=row.ticket_id,
        requested_by=row.requested_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        delivered_at=row.delivered_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        reason=row.failure_reason,
        cancelled_by=row.cancelled_by,
        deliveries=int(row.deliveries),
        snapshot_id=None if row.snapshot_id is None else int(row.snapshot_id),
        collectors=tuple(name for name in row.collectors.split(",") if name),
    )


def load_command(connection: Connection, command_id: str) -> CommandRecord:
    row = connection.execute(_ONE, {"command_id": command_id}).first()
    if row is None:
        raise NotFound(f"no command {command_id[:MAX_COMMAND_ID_CHARS]!r}")
    return record_from_row(row)


def lock_command_record(connection: Connection, command_id: str) -> CommandRecord:
    """The command whole, its row locked for the rest of the transaction on PostgreSQL."""
    row = connection.execute(_ONE_LOCKED, {"command_id": command_id}).first()
    if row is None:
        raise NotFound(f"no command {command_id[:MAX_COMMAND_ID_CHARS]!r}")
    return record_from_row(row)


def lock_command(connection: Connection, command_id: str) -> AnyRow:
    """The command's own row, locked for the rest of the transaction on PostgreSQL."""
    row = connection.execute(
        select(commands).where(commands.c.id == command_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no command {command_id[:MAX_COMMAND_ID_CHARS]!r}")
    return row


def finish(
    connection: Connection,
    row: AnyRow | CommandRecord,
    target: CommandState,
    at: datetime,
    wakes: list[Wake],
    *,
    reason: str = "",
    cancelled_by: str = "",
) -> None:
    """Move a locked command row to a final state, inside the caller's transaction."""
    check_transition(row.id, CommandState(row.state), target)
    _FINISH.rows(
        connection,
        {
            "finished_id": row.id,
            "finished_state": target.value,
            "finished_at_": at,
            "finished_reason": reason[:MAX_REASON_CHARS],
            "finished_by": cancelled_by,
        },
    )
    emit(connection, wakes, Wake(WakeKind.FINAL, row.agent_id, row.id))


def finish_record(
    connection: Connection,
    command: CommandRecord,
    target: CommandState,
    at: datetime,
    wakes: list[Wake],
    *,
    reason: str = "",
    cancelled_by: str = "",
) -> CommandRecord:
    """finish() for a command locked whole: returns it as it now is, without reading it back."""
    finish(connection, command, target, at, wakes, reason=reason, cancelled_by=cancelled_by)
    return replace(
        command,
        state=target,
        finished_at=at,
        reason=reason[:MAX_REASON_CHARS],
        cancelled_by=cancelled_by,
    )


def never_connected(expires_at: datetime) -> str:
    return f"the agent did not connect before {expires_at:%Y-%m-%d %H:%M} UTC"


def new_command_id() -> str:
    return uuid.uuid4().hex


def new_command(
    *,
    agent_id: str,
    agent_hostname: str,
    kind: CommandKind,
    ticket_id: int | None,
    requested_by: str,
    now: datetime,
    expires_at: datetime,
    state: CommandState = CommandState.QUEUED,
    collectors: tuple[str, ...] = (),
) -> CommandRecord:
    """A command just asked for, with a new id: not yet delivered, started or finished."""
    return CommandRecord(
        id=new_command_id(),
        agent_id=agent_id,
        agent_hostname=agent_hostname,
        kind=kind,
        state=state,
        ticket_id=ticket_id,
        requested_by=requested_by,
        created_at=now,
        expires_at=expires_at,
        delivered_at=None,
        started_at=None,
        finished_at=None,
        reason="",
        cancelled_by="",
        deliveries=0,
        snapshot_id=None,
        collectors=collectors,
    )


def is_open(state: str) -> bool:
    return CommandState(state) in OPEN_STATES


@dataclass(frozen=True)
class FinishedCommand:
    """What a finishing unit hands to a waiter in the same process, so it need not re-read."""

    command: CommandRecord
    detail: object = None
