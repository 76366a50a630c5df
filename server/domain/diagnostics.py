"""Diagnostic commands and the snapshots they bring back, with their findings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.timeline import append_event
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, commands, findings, snapshots, tickets
from sonde.server.storage.types import AnyRow
from sonde.v1 import diagnostics_pb2

MAX_COMMAND_ID_CHARS = 64


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


@dataclass(frozen=True)
class StoredSnapshotRecord:
    summary: SnapshotSummaryRecord
    snapshot: diagnostics_pb2.Snapshot
    findings: list[diagnostics_pb2.Finding]


@dataclass(frozen=True)
class CommandRecord:
    id: str
    agent_id: str
    kind: str
    ticket_id: int | None
    requested_by: str
    created_at: datetime
    expires_at: datetime
    state: str  # pending, done, failed
    failure_reason: str
    snapshot_id: int | None


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


def summary_from_row(row: AnyRow) -> SnapshotSummaryRecord:
    values = row._mapping
    return SnapshotSummaryRecord(
        **{name: values[name] for name in SnapshotSummaryRecord.__dataclass_fields__}
    )


async def load_summaries(
    session: AsyncSession, snapshot_ids: Iterable[int]
) -> dict[int, SnapshotSummaryRecord]:
    wanted = sorted(set(snapshot_ids))
    if not wanted:
        return {}
    rows = (
        await session.execute(select(*_SUMMARY_COLUMNS).where(snapshots.c.id.in_(wanted)))
    ).all()
    return {int(row.id): summary_from_row(row) for row in rows}


async def load_findings(
    session: AsyncSession, snapshot_ids: Iterable[int]
) -> dict[int, list[diagnostics_pb2.Finding]]:
    """Each snapshot's findings, in the order the checks produced them."""
    wanted = sorted(set(snapshot_ids))
    found: dict[int, list[diagnostics_pb2.Finding]] = {snapshot_id: [] for snapshot_id in wanted}
    if not wanted:
        return found
    rows = (
        await session.execute(
            select(findings.c.snapshot_id, findings.c.payload)
            .where(findings.c.snapshot_id.in_(wanted))
            .order_by(findings.c.snapshot_id, findings.c.position)
        )
    ).all()
    for row in rows:
        found[int(row.snapshot_id)].append(diagnostics_pb2.Finding.FromString(row.payload))
    return found


def worst_severity(found: Sequence[diagnostics_pb2.Finding]) -> int:
    return max((finding.severity for finding in found), default=diagnostics_pb2.SEVERITY_OK)


class Diagnostics:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def create_command(
        self,
        command_id: str,
        agent_id: str,
        *,
        kind: str,
        ticket_id: int | None,
        requested_by: str,
        expires_at: datetime,
    ) -> None:
        """Record a command before it is sent, so its result can be matched and checked."""
        if not command_id or len(command_id) > MAX_COMMAND_ID_CHARS:
            raise InvalidArgument(f"a command id is 1 to {MAX_COMMAND_ID_CHARS} characters")
        expires_at = require_aware(expires_at, "command expiry")
        async with self._db.transaction() as session:
            if (
                await session.execute(select(agents.c.id).where(agents.c.id == agent_id))
            ).first() is None:
                raise NotFound(f"no agent with id {agent_id[:40]!r}")
            if ticket_id is not None:
                found = await session.execute(select(tickets.c.id).where(tickets.c.id == ticket_id))
                if found.first() is None:
                    raise NotFound(f"no ticket {ticket_id}")
            await session.execute(
                commands.insert().values(
                    id=command_id,
                    agent_id=agent_id,
                    kind=kind,
                    ticket_id=ticket_id,
                    requested_by=requested_by,
                    created_at=self._clock(),
                    expires_at=expires_at,
                    state="pending",
                )
            )

    async def store_result(
        self,
        command_id: str,
        agent_id: str,
        snapshot: diagnostics_pb2.Snapshot,
        found: Sequence[diagnostics_pb2.Finding],
        received_at: datetime,
    ) -> int:
        """Store a command's snapshot once; a resent result returns the stored snapshot's id.

        `agent_id` is the one from the agent's certificate: the snapshot is stored under it,
        whatever the message says.
        """
        received_at = require_aware(received_at, "receipt time")
        async with self._db.transaction() as session:
            command = await self._command_row(session, command_id, lock=True)
            if command.agent_id != agent_id:
                raise PermissionDenied(
                    f"command {command_id} was issued to another agent; result refused"
                )
            stored = (
                await session.execute(
                    select(snapshots.c.id).where(snapshots.c.command_id == command_id)
                )
            ).scalar()
            if stored is not None:
                return int(stored)
            payload = diagnostics_pb2.Snapshot()
            payload.CopyFrom(snapshot)
            payload.agent_id = agent_id
            collected_at = (
                payload.collected_at.ToDatetime(tzinfo=UTC)
                if payload.HasField("collected_at")
                else received_at
            )
            snapshot_id = (
                await session.execute(
                    snapshots.insert()
                    .values(
                        agent_id=agent_id,
                        command_id=command_id,
                        collected_at=collected_at,
                        received_at=received_at,
                        worst_severity=worst_severity(found),
                        finding_count=len(found),
                        ticket_id=command.ticket_id,
                        requested_by=command.requested_by,
                        payload=payload.SerializeToString(deterministic=True),
                    )
                    .returning(snapshots.c.id)
                )
            ).scalar_one()
            if found:
                await session.execute(
                    findings.insert(),
                    [
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
                    ],
                )
            await session.execute(
                update(commands)
                .where(commands.c.id == command_id)
                .values(state="done", finished_at=received_at)
            )
            if command.ticket_id is not None:
                await append_event(
                    session,
                    command.ticket_id,
                    TicketEventKind.DIAGNOSTIC,
                    command.requested_by,
                    received_at,
                    snapshot_id=int(snapshot_id),
                )
            return int(snapshot_id)

    async def fail_command(self, command_id: str, agent_id: str, reason: str) -> None:
        """The agent could not run the command; a failed command stays failed."""
        async with self._db.transaction() as session:
            command = await self._command_row(session, command_id, lock=True)
            if command.agent_id != agent_id:
                raise PermissionDenied(
                    f"command {command_id} was issued to another agent; failure report refused"
                )
            if command.state == "done":
                raise Conflict(f"command {command_id} already has its result")
            if command.state == "failed":
                return
            await session.execute(
                update(commands)
                .where(commands.c.id == command_id)
                .values(state="failed", finished_at=self._clock(), failure_reason=reason[:2000])
            )

    async def get_command(self, command_id: str) -> CommandRecord:
        async with self._db.reading() as session:
            row = await self._command_row(session, command_id)
            snapshot_id = (
                await session.execute(
                    select(snapshots.c.id).where(snapshots.c.command_id == command_id)
                )
            ).scalar()
        return CommandRecord(
            id=row.id,
            agent_id=row.agent_id,
            kind=row.kind,
            ticket_id=row.ticket_id,
            requested_by=row.requested_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            state=row.state,
            failure_reason=row.failure_reason,
            snapshot_id=None if snapshot_id is None else int(snapshot_id),
        )

    async def get_snapshot(self, snapshot_id: int) -> StoredSnapshotRecord:
        async with self._db.reading() as session:
            row = (
                await session.execute(
                    select(*_SUMMARY_COLUMNS, snapshots.c.payload).where(
                        snapshots.c.id == snapshot_id
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"no snapshot with id {snapshot_id}")
            found = (await load_findings(session, [snapshot_id]))[snapshot_id]
        return StoredSnapshotRecord(
            summary=summary_from_row(row),
            snapshot=diagnostics_pb2.Snapshot.FromString(row.payload),
            findings=found,
        )

    async def last_snapshot(self, agent_id: str) -> SnapshotSummaryRecord | None:
        async with self._db.reading() as session:
            row = (
                await session.execute(
                    select(*_SUMMARY_COLUMNS)
                    .where(snapshots.c.agent_id == agent_id)
                    .order_by(snapshots.c.received_at.desc(), snapshots.c.id.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else summary_from_row(row)

    @staticmethod
    async def _command_row(session: AsyncSession, command_id: str, *, lock: bool = False) -> AnyRow:
        query = select(commands).where(commands.c.id == command_id)
        if lock:
            query = query.with_for_update()
        row = (await session.execute(query)).first()
        if row is None:
            raise NotFound(f"no command {command_id[:MAX_COMMAND_ID_CHARS]!r}")
        return row
