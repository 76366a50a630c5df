"""What the agent sends back about a run: its Result (the final state, the output kept, the
timeline line, and the verification it starts) and its live output chunks. Mixed into
ScriptRuns (server/domain/script_runs.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.engine import Connection

from sonde.server.domain import run_verification
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import utc_now
from sonde.server.domain.commands import (
    CommandState,
    FinishedCommand,
    check_transition,
    finish_record,
    load_command,
    lock_command_record,
)
from sonde.server.domain.diagnostics import AlreadyEnded
from sonde.server.domain.run_closing import result_text, session_text
from sonde.server.domain.run_records import (
    MAX_LIVE_OUTPUT,
    MAX_STORED_OUTPUT,
    NO_SECRETS,
    RunRecord,
    load_run,
    lock_run_row,
)
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.timeline import append_event
from sonde.server.domain.wakeups import Wake, Wakeups
from sonde.server.errors import NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import commands, script_runs
from sonde.v1 import agent_pb2

# A 64-bit column's largest value: an agent's uint64 beyond it would fail the bind (and the
# result, resent at every connect, would never be stored).
_MAX_COUNT = 2**63 - 1


def _counted(said: int, kept: bytes) -> int:
    """How many bytes the script printed: the agent's word, at least what it sent."""
    return min(max(said, len(kept)), _MAX_COUNT)


class RunResults:
    """ScriptRuns' result handling; `_db`, `_audited` and `_wakeups` are ScriptRuns'."""

    _db: Database
    _audited: AuditedWrites
    _wakeups: Wakeups

    # -- results ---------------------------------------------------------------------------

    async def accept_result(
        self,
        agent_id: str,
        result: agent_pb2.Result,
        received_at: datetime,
        *,
        actor: str = "",
    ) -> tuple[RunRecord, bool]:
        """Store a Result.script_run from the agent `agent_id` (its certificate's id): the
        run ends succeeded (exit 0), failed, timed_out or cancelled. Returns the run and
        whether anything changed (False: it had already ended; the result is dropped and
        audited as a refused command.result, so the audit holds one result per run).
        `actor`: who reports it, when not the agent (the server, for a machine it reached)."""
        outcome = result.script_run
        wakes: list[Wake] = []

        def unit(connection: Connection, entry: AuditEntry) -> RunRecord:
            command = lock_command_record(connection, result.command_id)
            if command.agent_id != agent_id:
                raise PermissionDenied(
                    f"command {command.id} was issued to another agent; its result is refused"
                )
            entry.agent_id, entry.ticket_id = agent_id, command.ticket_id
            entry.detail["command_id"] = command.id
            row = lock_run_row(connection, command.id)
            if command.state.final:
                raise AlreadyEnded(command)  # resent after a lost ack (a server crash)
            if outcome.timed_out:
                state, reason = CommandState.TIMED_OUT, "stopped by its time limit"
            elif outcome.cancelled:
                state, reason = CommandState.CANCELLED, "stopped by a cancel"
            elif outcome.exit_code == 0:
                state, reason = CommandState.SUCCEEDED, ""
            else:
                state, reason = CommandState.FAILED, f"the script exited {outcome.exit_code}"
            ended = finish_record(connection, command, state, received_at, wakes, reason=reason)
            stdout, stderr = bytes(outcome.stdout), bytes(outcome.stderr)
            connection.execute(
                update(script_runs)
                .where(script_runs.c.command_id == command.id)
                .values(
                    parameters=NO_SECRETS,
                    exit_code=outcome.exit_code,
                    timed_out=outcome.timed_out,
                    cancelled=outcome.cancelled,
                    stdout=stdout[:MAX_STORED_OUTPUT],
                    stderr=stderr[:MAX_STORED_OUTPUT],
                    stdout_truncated=outcome.stdout_truncated or len(stdout) > MAX_STORED_OUTPUT,
                    stderr_truncated=outcome.stderr_truncated or len(stderr) > MAX_STORED_OUTPUT,
                    stdout_bytes=_counted(outcome.stdout_bytes, stdout),
                    stderr_bytes=_counted(outcome.stderr_bytes, stderr),
                    duration_ms=outcome.duration_ms,
                    user_session=(
                        session_text(outcome.session)[:200] if outcome.HasField("session") else ""
                    ),
                )
            )
            entry.detail |= {"state": state.value, "exit_code": outcome.exit_code}
            if command.ticket_id is not None:
                append_event(
                    connection,
                    command.ticket_id,
                    TicketEventKind.RUN_ENDED,
                    command.requested_by,
                    received_at,
                    body=result_text(command.id, state, outcome),
                    command_id=command.id,
                )
            run_verification.begin(
                self._audited, connection, ended, row, now=received_at, wakes=wakes
            )
            return load_run(connection, command.id)

        try:
            run = await self._audited.run(actor or f"agent:{agent_id}", "command.result", unit)
        except AlreadyEnded as ended:
            run_id = ended.command.id
            return await self._db.read(lambda connection: load_run(connection, run_id)), False
        self._wakeups.publish(wakes, FinishedCommand(run.command))
        return run, True

    async def append_output(self, agent_id: str, chunk: agent_pb2.ScriptOutput) -> bool:
        """A running script's output chunk, kept for --follow up to MAX_LIVE_OUTPUT bytes;
        False when refused (not this agent's run, or not running any more)."""

        def unit(connection: Connection) -> bool:
            command = load_command(connection, chunk.command_id)
            if command.agent_id != agent_id or command.state.final:
                return False
            row = lock_run_row(connection, command.id)
            kept = bytes(row.live_output)
            room = max(0, MAX_LIVE_OUTPUT - len(kept))
            data = bytes(chunk.data)
            values: dict[str, object] = {
                "live_output": kept + data[:room],
                "live_dropped": int(row.live_dropped) + max(0, len(data) - room),
            }
            if command.state is CommandState.DELIVERED:
                check_transition(command.id, command.state, CommandState.RUNNING)
                connection.execute(
                    update(commands)
                    .where(commands.c.id == command.id)
                    .values(state=CommandState.RUNNING.value, started_at=utc_now())
                )
            connection.execute(
                update(script_runs).where(script_runs.c.command_id == command.id).values(values)
            )
            return True

        try:
            return await self._db.write(unit)
        except NotFound:
            return False
