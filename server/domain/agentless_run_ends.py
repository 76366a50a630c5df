"""How an agentless run's server reads its signed entry, and ends a run that has no script
result (expired, refused before or at the login, interrupted), in the caller's transaction:
its state and reason, its secret values erased, the ticket's `run ended` line and a
`command.result` row (actor `server`)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sonde.catalog.bundle import SignedEntry
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.commands import (
    CommandRecord,
    CommandState,
    finish_record,
    lock_command_record,
)
from sonde.server.domain.replicas import LEASE
from sonde.server.domain.run_records import NO_SECRETS, runs_with_entry
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.timeline import append_event
from sonde.server.domain.wakeups import Wake
from sonde.server.remote.reached_runs import PreparedRun, ScriptOutcome
from sonde.server.storage.tables import (
    agentless_runs,
    commands,
    replicas,
    script_runs,
)
from sonde.v1 import agent_pb2

SERVER = "server"


def signed_entry(
    connection: Connection, command_id: str
) -> tuple[SignedEntry, dict[str, str], bool]:
    row = connection.execute(runs_with_entry().where(script_runs.c.command_id == command_id)).one()
    signed = SignedEntry(
        row.script_id,
        row.version,
        bytes(row.manifest),
        bytes(row.script),
        row.key_id,
        bytes(row.signature),
    )
    return signed, dict(json.loads(row.parameters)), bool(row.dry_run)


def end_without_result(
    audited: AuditedWrites,
    connection: Connection,
    command: CommandRecord,
    state: CommandState,
    *,
    reason: str,
    now: datetime,
    wakes: list[Wake],
    audit: bool = True,
) -> CommandRecord:
    """End a run that has no script result: its state and reason, its secret values erased,
    the ticket's `run ended` line and a `command.result` row, in the caller's transaction."""
    ended = finish_record(connection, command, state, now, wakes, reason=reason)
    connection.execute(
        update(script_runs)
        .where(script_runs.c.command_id == command.id)
        .values(parameters=NO_SECRETS)
    )
    if command.ticket_id is not None:
        append_event(
            connection,
            command.ticket_id,
            TicketEventKind.RUN_ENDED,
            SERVER,
            now,
            body=f"run {command.id[:8]} {state.value}: {reason}",
            command_id=command.id,
        )
    entry = AuditEntry(
        command.agent_id,
        command.ticket_id,
        {"command_id": command.id, "state": state.value, "reason": reason[:500]},
    )
    if audit:  # else the caller's audited unit writes it
        audited.append_in(connection, SERVER, "command.result", entry)
    return ended


def lost_and_due(
    audited: AuditedWrites,
    connection: Connection,
    replica_id: str,
    now: datetime,
    wakes: list[Wake],
) -> tuple[int, list[str]]:
    """End `interrupted` the runs claimed by a replica whose lease lapsed (never this one's):
    whether they ran is unknown and they never run again. Returns how many ended, and the
    queued runs nobody has started (the caller starts them; the claim decides who runs)."""
    live = select(replicas.c.id).where(replicas.c.lease_expires_at > now)
    open_runs = (
        select(commands.c.id, commands.c.state, agentless_runs.c.claimed_by)
        .join(agentless_runs, agentless_runs.c.command_id == commands.c.id)
        .where(
            commands.c.state.in_(
                [
                    CommandState.QUEUED.value,
                    CommandState.DELIVERED.value,
                    CommandState.RUNNING.value,
                ]
            )
        )
    )
    ended = 0
    due: list[str] = []
    for row in connection.execute(open_runs).all():
        if row.state == CommandState.QUEUED.value:
            due.append(row.id)
            continue
        claimed_by = row.claimed_by or ""
        alive = connection.execute(live.where(replicas.c.id == claimed_by)).first()
        if claimed_by == replica_id or alive is not None:
            continue
        command = lock_command_record(connection, row.id)
        if command.state not in (CommandState.DELIVERED, CommandState.RUNNING):
            continue  # another replica's upkeep got there first
        how = "before it started" if command.state is CommandState.DELIVERED else ("while it ran")
        reason = (
            f"the server that ran it (replica {claimed_by[:8]}) stopped {how} and its "
            f"lease lapsed ({LEASE.total_seconds():.0f} s); whether the script ran on "
            "the machine, or to its end, is unknown: it is not run again; check the "
            "machine, then ask again if it is still needed"
        )
        end_without_result(
            audited,
            connection,
            command,
            CommandState.INTERRUPTED,
            reason=reason,
            now=now,
            wakes=wakes,
        )
        ended += 1
    return ended, due


def script_result(
    command_id: str, prepared: PreparedRun, outcome: ScriptOutcome
) -> agent_pb2.Result:
    """What the server saw of a script it ran, as the agent reports a run (Result.script_run):
    a script past its time limit stopped as by SIGTERM."""
    result = outcome.result
    script_run = agent_pb2.ScriptRun(
        script_id=prepared.manifest.id,
        script_version=prepared.manifest.version,
        exit_code=-15 if outcome.timed_out else result.exit_code,
        timed_out=outcome.timed_out,
        stdout=result.stdout,
        stderr=result.stderr,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        stdout_bytes=len(result.stdout),
        stderr_bytes=len(result.stderr),
        duration_ms=result.duration_ms,
    )
    return agent_pb2.Result(command_id=command_id, script_run=script_run)
