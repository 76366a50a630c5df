"""The results agents send for their commands: snapshots with their findings, or failures.

A result is stored in one unit of work with the command's final state, the ticket's timeline
event and its audit row (actor `agent:<id>`, the id from the agent's certificate). A result for
a command that already ended (cancelled, interrupted, or resent after it was stored) changes
nothing and is audited like a refusal, at the refusals' bounded rate: an agent resending it in
a loop cannot fill the log. The agent's session acknowledges both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.domain.commands import (
    MAX_COMMAND_ID_CHARS,
    MAX_REASON_CHARS,
    CommandKind,
    CommandRecord,
    CommandState,
    FinishedCommand,
    finish_record,
    lock_command_record,
)
from sonde.server.domain.text import sanitized
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.timeline import append_event
from sonde.server.domain.wakeups import Wake, Wakeups
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.driver import DriverStatement
from sonde.server.storage.tables import agents, findings, snapshots
from sonde.server.storage.types import AnyRow
from sonde.v1 import agent_pb2, diagnostics_pb2

# What the agent says of a failure -> the command's final state.
FAILURE_STATES = {
    agent_pb2.FAILURE_KIND_UNSPECIFIED: CommandState.FAILED,
    agent_pb2.FAILURE_KIND_FAILED: CommandState.FAILED,
    agent_pb2.FAILURE_KIND_REFUSED: CommandState.REFUSED,
    agent_pb2.FAILURE_KIND_EXPIRED: CommandState.REFUSED,
    agent_pb2.FAILURE_KIND_CANCELLED: CommandState.CANCELLED,
    agent_pb2.FAILURE_KIND_TIMED_OUT: CommandState.TIMED_OUT,
}


# What a command id can be (the server's are uuid4 hex): anything else is refused unread.
_COMMAND_ID = re.compile(rf"[!-~]{{1,{MAX_COMMAND_ID_CHARS}}}")


class AlreadyEnded(Conflict):
    """A result for a command that had already ended: nothing is written."""

    def __init__(self, command: CommandRecord) -> None:
        super().__init__(
            f"command {command.id} had already ended {command.state.value}; "
            "this result was acknowledged and dropped"
        )
        self.command = command


@dataclass(frozen=True)
class SnapshotSummaryRecord:
    id: int
    agent_id: str
    collected_at: datetime
    received_at: datetime
    worst_severity: int  # a sonde.v1.Severity value
    finding_count: int
    ticket_id: int | None
    requested_by: str
    agent_hostname: str = ""  # the name its agent reports, where the query joins it
    agent_removed: bool = False  # its machine was retired, where the query joins it


@dataclass(frozen=True)
class StoredSnapshotRecord:
    summary: SnapshotSummaryRecord
    snapshot: diagnostics_pb2.Snapshot
    findings: list[diagnostics_pb2.Finding]


@dataclass(frozen=True)
class AcceptedResult:
    """What storing a result did: the command as it is now, and its snapshot when stored."""

    command: CommandRecord
    stored: StoredSnapshotRecord | None
    changed: bool  # False: the command had already ended; only a refusal row may be written


_SUMMARY_COLUMNS = (
    snapshots.c.id,
    snapshots.c.agent_id,
    snapshots.c.collected_at,
    snapshots.c.received_at,
    snapshots.c.worst_severity,
    snapshots.c.finding_count,
    snapshots.c.ticket_id,
    snapshots.c.requested_by,
)
# The machine as it is now: the name its agent reports, and whether it was retired.
_AGENT_COLUMNS = (
    func.coalesce(agents.c.hostname, "").label("agent_hostname"),
    agents.c.removed_at.is_not(None).label("agent_removed"),
)


def summary_from_row(row: AnyRow) -> SnapshotSummaryRecord:
    values = row._mapping
    return SnapshotSummaryRecord(
        **{
            name: values[name]
            for name in SnapshotSummaryRecord.__dataclass_fields__
            if name in values
        }
    )


def summaries_of(
    connection: Connection, snapshot_ids: Iterable[int]
) -> dict[int, SnapshotSummaryRecord]:
    wanted = sorted(set(snapshot_ids))
    if not wanted:
        return {}
    # With the name its agent reports: a ticket's timeline names each diagnostic's machine.
    query = (
        select(*_SUMMARY_COLUMNS, *_AGENT_COLUMNS)
        .outerjoin(agents, agents.c.id == snapshots.c.agent_id)
        .where(snapshots.c.id.in_(wanted))
    )
    return {int(row.id): summary_from_row(row) for row in connection.execute(query).all()}


def findings_of(
    connection: Connection, snapshot_ids: Iterable[int]
) -> dict[int, list[diagnostics_pb2.Finding]]:
    """Each snapshot's findings, in the order the checks produced them."""
    wanted = sorted(set(snapshot_ids))
    found: dict[int, list[diagnostics_pb2.Finding]] = {snapshot_id: [] for snapshot_id in wanted}
    if not wanted:
        return found
    rows = connection.execute(
        select(findings.c.snapshot_id, findings.c.payload)
        .where(findings.c.snapshot_id.in_(wanted))
        .order_by(findings.c.snapshot_id, findings.c.position)
    ).all()
    for row in rows:
        found[int(row.snapshot_id)].append(diagnostics_pb2.Finding.FromString(row.payload))
    return found


def worst_severity(found: Sequence[diagnostics_pb2.Finding]) -> int:
    return max((finding.severity for finding in found), default=diagnostics_pb2.SEVERITY_OK)


# Built once and run on SQLite's own cursor: every result an agent sends goes through them.
_INSERT_SNAPSHOT = DriverStatement(snapshots.insert().returning(snapshots.c.id))
_FINDINGS = findings.insert()
_INSERT_FINDING = DriverStatement(_FINDINGS)
_SNAPSHOT_BY_ID = (
    select(*_SUMMARY_COLUMNS, *_AGENT_COLUMNS, snapshots.c.payload)
    .outerjoin(agents, agents.c.id == snapshots.c.agent_id)
    .where(snapshots.c.id == bindparam("snapshot_id"))
)
_LAST_SNAPSHOT = (
    select(*_SUMMARY_COLUMNS, *_AGENT_COLUMNS)
    .outerjoin(agents, agents.c.id == snapshots.c.agent_id)
    .where(snapshots.c.agent_id == bindparam("agent_id"))
    .order_by(snapshots.c.received_at.desc(), snapshots.c.id.desc())
    .limit(1)
)


def store_snapshot(
    connection: Connection,
    command: CommandRecord,
    agent_id: str,
    snapshot: diagnostics_pb2.Snapshot,
    found: Sequence[diagnostics_pb2.Finding],
    *,
    received_at: datetime,
) -> StoredSnapshotRecord:
    """Insert a command's snapshot and findings; the snapshot is stored under `agent_id`."""
    return insert_snapshot(
        connection,
        agent_id,
        snapshot,
        found,
        received_at=received_at,
        command_id=command.id,
        ticket_id=command.ticket_id,
        requested_by=command.requested_by,
        # As get_snapshot reads it back (a machine sending results is not removed).
        agent_hostname=command.agent_hostname if command.agent_id == agent_id else "",
    )


def insert_snapshot(
    connection: Connection,
    agent_id: str,
    snapshot: diagnostics_pb2.Snapshot,
    found: Sequence[diagnostics_pb2.Finding],
    *,
    received_at: datetime,
    command_id: str | None,
    ticket_id: int | None,
    requested_by: str,
    agent_hostname: str,
) -> StoredSnapshotRecord:
    """Insert a snapshot and its findings (`command_id` None: one no command asked for, sent
    with a request for help from the workstation)."""
    payload = snapshot
    if payload.agent_id != agent_id:  # a copy: the caller's message stays as it was
        payload = diagnostics_pb2.Snapshot()
        payload.CopyFrom(snapshot)
        payload.agent_id = agent_id
    collected_at = (
        payload.collected_at.ToDatetime(tzinfo=UTC)
        if payload.HasField("collected_at")
        else received_at
    )
    worst = worst_severity(found)
    snapshot_id = int(
        _INSERT_SNAPSHOT.scalar(
            connection,
            {
                "agent_id": agent_id,
                "command_id": command_id,
                "collected_at": collected_at,
                "received_at": received_at,
                "worst_severity": worst,
                "finding_count": len(found),
                "ticket_id": ticket_id,
                "requested_by": requested_by,
                "payload": payload.SerializeToString(deterministic=True),
            },
        )
    )
    _insert_findings(connection, snapshot_id, found)
    summary = SnapshotSummaryRecord(
        id=snapshot_id,
        agent_id=agent_id,
        collected_at=collected_at,
        received_at=received_at,
        worst_severity=worst,
        finding_count=len(found),
        ticket_id=ticket_id,
        requested_by=requested_by,
        agent_hostname=agent_hostname,
    )
    return StoredSnapshotRecord(summary=summary, snapshot=payload, findings=list(found))


def _insert_findings(
    connection: Connection, snapshot_id: int, found: Sequence[diagnostics_pb2.Finding]
) -> None:
    finding_rows = [
        {
            "snapshot_id": snapshot_id,
            "position": position,
            "check_id": finding.check[:64],
            "severity": int(finding.severity),
            "summary": finding.summary,
            "fix_script_id": finding.fix_script_id[:64],
            "payload": finding.SerializeToString(deterministic=True),
        }
        for position, finding in enumerate(found)
    ]
    if connection.dialect.name != "sqlite" and finding_rows:
        connection.execute(_FINDINGS, finding_rows)  # one round trip for all of them
    else:
        for row in finding_rows:
            _INSERT_FINDING.rows(connection, row)


def replace_findings_in(
    connection: Connection, snapshot_id: int, found: Sequence[diagnostics_pb2.Finding]
) -> None:
    """The stored snapshot's findings as other thresholds judge it (its monitoring group's),
    in the unit of work that stored it: what a technician is shown is what opened a ticket."""
    connection.execute(delete(findings).where(findings.c.snapshot_id == snapshot_id))
    _insert_findings(connection, snapshot_id, found)
    connection.execute(
        update(snapshots)
        .where(snapshots.c.id == snapshot_id)
        .values(worst_severity=worst_severity(found), finding_count=len(found))
    )


VerifyCheck = Callable[
    [Connection, CommandRecord, int, Sequence[diagnostics_pb2.Finding], datetime], bool
]
# Monitoring's tickets for a scheduled collection's snapshot (monitoring.record); how many it
# opened or resolved.
MonitorResult = Callable[[Connection, CommandRecord, StoredSnapshotRecord, datetime], int]
MONITOR_REQUESTER = "monitoring"


class Diagnostics:
    def __init__(
        self, db: Database, audited: AuditedWrites, wakeups: Wakeups, clock: Clock = utc_now
    ) -> None:
        self._db = db
        self._audited = audited
        self._wakeups = wakeups
        self._clock = clock
        # A run's verification (run_verification.record, set by open_services): given a
        # diagnostic that collected only some checks, records the run it verifies; False
        # when it verifies none.
        self.verify_check: VerifyCheck | None = None
        # Monitoring's tickets (monitoring.record_result, set by open_services).
        self.monitor_result: MonitorResult | None = None

    async def accept_result(
        self,
        agent_id: str,
        result: agent_pb2.Result,
        found: Sequence[diagnostics_pb2.Finding],
        received_at: datetime,
        *,
        actor: str = "",
    ) -> AcceptedResult:
        """Store what the agent `agent_id` (its certificate's id) sent for a command (`actor`:
        who reports it when not the agent: the server, for a machine it reached itself).

        Refused (InvalidArgument, NotFound, PermissionDenied, audited) when the command id is
        malformed, the command does not exist or was issued to another agent: nothing changes.
        """
        received_at = require_aware(received_at, "receipt time")
        command_id = result.command_id
        actor = actor or f"agent:{agent_id}"
        if not _COMMAND_ID.fullmatch(command_id):
            malformed = InvalidArgument(
                f"a result names the command {command_id[:MAX_COMMAND_ID_CHARS]!r}, which is "
                "not a command id"
            )
            await self._audited.refused(actor, "command.result", malformed)
            raise malformed
        wakes: list[Wake] = []

        def unit(connection: Connection, entry: AuditEntry) -> AcceptedResult:
            command = lock_command_record(connection, command_id)
            if command.agent_id != agent_id:
                raise PermissionDenied(
                    f"command {command_id} was issued to another agent; its result is refused"
                )
            entry.agent_id, entry.ticket_id = agent_id, command.ticket_id
            entry.detail["command_id"] = command_id
            if command.state.final:
                raise AlreadyEnded(command)
            stored: StoredSnapshotRecord | None = None
            if result.HasField("snapshot") and command.kind is not CommandKind.COLLECT:
                # A hostile or broken agent cannot end a script run with a snapshot.
                raise InvalidArgument(
                    f"command {command_id} is a script run, not a diagnostic: a snapshot "
                    "cannot be its result"
                )
            if result.HasField("snapshot"):
                stored = store_snapshot(
                    connection, command, agent_id, result.snapshot, found, received_at=received_at
                )
                current = replace(
                    finish_record(connection, command, CommandState.SUCCEEDED, received_at, wakes),
                    snapshot_id=stored.summary.id,
                )
                entry.detail["snapshot_id"] = stored.summary.id
                verifies = False
                if command.collectors and self.verify_check is not None:
                    # Only a run's verification collects a few: it says so on the timeline.
                    verifies = self.verify_check(
                        connection, command, stored.summary.id, found, received_at
                    )
                if command.requested_by == MONITOR_REQUESTER and self.monitor_result is not None:
                    tickets_changed = self.monitor_result(connection, command, stored, received_at)
                    entry.detail["monitoring_tickets"] = tickets_changed
                if verifies:
                    entry.detail["verifies"] = "script run"  # its own row says which
                elif command.ticket_id is not None:
                    append_event(
                        connection,
                        command.ticket_id,
                        TicketEventKind.DIAGNOSTIC,
                        command.requested_by,
                        received_at,
                        snapshot_id=stored.summary.id,
                    )
            else:
                state = FAILURE_STATES.get(result.failure.kind, CommandState.FAILED)
                reason = sanitized(result.failure.reason, max_chars=MAX_REASON_CHARS)
                reason = reason or "the agent gave no reason"
                refusal = sanitized(result.failure.refusal, max_chars=40)
                if refusal:  # a run order the agent refused: its reason code first
                    reason = f"the agent refused the order ({refusal}): {reason}"
                current = finish_record(
                    connection, command, state, received_at, wakes, reason=reason
                )
            entry.detail["state"] = current.state.value
            return AcceptedResult(current, stored, True)

        try:
            accepted = await self._audited.run(actor, "command.result", unit)
        except AlreadyEnded as ended:
            return AcceptedResult(ended.command, None, False)
        self._wakeups.publish(wakes, FinishedCommand(accepted.command, accepted.stored))
        return accepted

    async def get_snapshot(self, snapshot_id: int) -> StoredSnapshotRecord:
        def unit(connection: Connection) -> StoredSnapshotRecord:
            row = connection.execute(_SNAPSHOT_BY_ID, {"snapshot_id": snapshot_id}).first()
            if row is None:
                raise NotFound(f"no snapshot with id {snapshot_id}")
            return StoredSnapshotRecord(
                summary=summary_from_row(row),
                snapshot=diagnostics_pb2.Snapshot.FromString(row.payload),
                findings=findings_of(connection, [snapshot_id])[snapshot_id],
            )

        return await self._db.read(unit)

    async def last_snapshot(self, agent_id: str) -> SnapshotSummaryRecord | None:
        row = await self._db.read(
            lambda connection: connection.execute(_LAST_SNAPSHOT, {"agent_id": agent_id}).first()
        )
        return None if row is None else summary_from_row(row)
