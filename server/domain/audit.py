"""The audit log: every technician action, hash-chained so an edit or a deletion shows.

Rows are appended inside the transaction of the change they record (audit_chain.append_row),
so neither exists without the other; ids are consecutive from 1, so a gap means a deleted row,
and each row's hash links it to the one before (audit_rows.py), so a link that does not match
means a deleted, reordered or edited row. Once the chain is keyed (the server's audit key, in
its data folder), rewriting rows and recomputing their links needs that key too. verify()
walks the chain and checks it ends where its head says, and, given a checkpoint of the head
kept outside the database (audit_checkpoint.py), that the chain still reaches it: someone who
can write to the database could otherwise delete the newest rows and move the head back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audit_chain import HEAD, append_row
from sonde.server.domain.audit_checkpoint import AuditCheckpoint
from sonde.server.domain.audit_rows import (
    GENESIS_HASH,
    AuditKey,
    DetailValue,
    audit_values,
    chain_hash,
)
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log
from sonde.server.storage.types import AnyRow

__all__ = [
    "GENESIS_HASH",
    "AuditCheckpoint",
    "AuditHead",
    "AuditKey",
    "AuditLog",
    "AuditVerification",
    "DetailValue",
]

_VERIFY_BATCH = 1000


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str


@dataclass(frozen=True)
class AuditHead:
    """Where the chain ends and how it is keyed, as its head row says."""

    rows: int
    head_hash: str
    keyed_from: int | None
    key_check: str | None

    def checkpoint(self, at: datetime) -> AuditCheckpoint:
        return AuditCheckpoint(rows=self.rows, head_hash=self.head_hash, at=at)


def _row_hash(prev_hash: str, row: AnyRow, key: AuditKey | None) -> str:
    return chain_hash(
        prev_hash,
        row_id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        agent_id=row.agent_id,
        ticket_id=row.ticket_id,
        detail=row.detail,
        result=row.result,
        key=key,
    )


_ROWS_FROM = (
    select(audit_log)
    .where(audit_log.c.id >= bindparam("from_id"))
    .order_by(audit_log.c.id)
    .limit(_VERIFY_BATCH)
)

_HASH_OF = select(audit_log.c.hash).where(audit_log.c.id == bindparam("row_id"))


class AuditLog:
    def __init__(
        self, db: Database, clock: Clock = utc_now, *, key: AuditKey | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._key = key

    async def record(
        self,
        actor: str,
        action: str,
        *,
        agent_id: str | None = None,
        ticket_id: int | None = None,
        detail: Mapping[str, DetailValue] | None = None,
        result: str = "ok",
    ) -> None:
        """A row in a transaction of its own: for events that change nothing else (refusals)."""
        values = audit_values(
            self._clock(),
            actor,
            action,
            agent_id=agent_id,
            ticket_id=ticket_id,
            detail=detail,
            result=result,
            key=self._key,
        )
        await self._db.write(lambda connection: append_row(connection, values))

    async def head(self) -> AuditHead | None:
        """The chain's head row; None when it is missing (the tables were changed by hand)."""

        def read(connection: Connection) -> AuditHead | None:
            row = connection.execute(HEAD).one_or_none()
            if row is None:
                return None
            keyed_from = None if row.keyed_from is None else int(row.keyed_from)
            return AuditHead(int(row.last_id), row.hash, keyed_from, row.key_check)

        return await self._db.read(read)

    async def hash_of(self, row_id: int) -> str | None:
        """Row `row_id`'s hash (the genesis hash for row 0); None when there is no such row."""
        if row_id == 0:
            return GENESIS_HASH

        def read(connection: Connection) -> str | None:
            found = connection.execute(_HASH_OF, {"row_id": row_id}).scalar_one_or_none()
            return None if found is None else str(found)

        return await self._db.read(read)

    async def verify(self, checkpoint: AuditCheckpoint | None = None) -> AuditVerification:
        """Walk the chain from the first row; report the first row that does not hold, or
        where the chain falls short of `checkpoint` (one taken earlier, outside the database).
        """
        return await self._db.read(lambda connection: self._verify(connection, checkpoint))

    def _verify(
        self, connection: Connection, checkpoint: AuditCheckpoint | None
    ) -> AuditVerification:
        head = connection.execute(HEAD).one_or_none()
        keyed_from = head.keyed_from if head is not None else None
        if keyed_from is not None:
            if self._key is None:
                return AuditVerification(
                    False,
                    0,
                    int(keyed_from),
                    f"the chain is keyed from row {keyed_from}: "
                    "verify it with the audit key (the data folder's pki/audit.key)",
                )
            if head is not None and head.key_check != self._key.check:
                return AuditVerification(
                    False,
                    0,
                    int(keyed_from),
                    "this audit key is not the one the chain is "
                    "keyed with (or the head row was changed outside Sonde)",
                )
        prev_hash, expected_id, rows = GENESIS_HASH, 1, 0
        checkpointed_hash = (
            GENESIS_HASH if checkpoint is not None and checkpoint.rows == 0 else None
        )
        while True:
            batch = connection.execute(_ROWS_FROM, {"from_id": expected_id}).all()
            if not batch:
                break
            for row in batch:
                key = self._key if keyed_from is not None and row.id >= keyed_from else None
                problem = self._check_row(row, expected_id, prev_hash, key)
                if problem is not None:
                    return AuditVerification(False, rows, problem[0], problem[1])
                prev_hash, expected_id, rows = row.hash, expected_id + 1, rows + 1
                if checkpoint is not None and row.id == checkpoint.rows:
                    checkpointed_hash = row.hash
        problem = self._check_head(head, rows, prev_hash)
        if problem is None and checkpoint is not None:
            problem = self._check_checkpoint(checkpoint, rows, checkpointed_hash)
        if problem is not None:
            return AuditVerification(False, rows, problem[0], problem[1])
        keyed = f", keyed from row {keyed_from}" if keyed_from is not None else ", not keyed"
        reached = (
            f", reaches {checkpoint.taken} ({checkpoint.rows} rows)"
            if checkpoint is not None
            else ""
        )
        return AuditVerification(True, rows, None, f"{rows} rows, chain intact{keyed}{reached}")

    @staticmethod
    def _check_checkpoint(
        checkpoint: AuditCheckpoint, rows: int, reached_hash: str | None
    ) -> tuple[int, str] | None:
        """The chain must still hold the row the checkpoint recorded, unchanged."""
        taken = checkpoint.taken
        if rows == 0 and checkpoint.rows > 0:
            return 1, (
                f"the audit log is empty, but {taken} records {checkpoint.rows} rows: "
                "every row was deleted"
            )
        if rows < checkpoint.rows:
            first, last = rows + 1, checkpoint.rows
            which = f"row {first}" if first == last else f"rows {first}-{last}"
            return first, (
                f"{which} missing at the end: {taken} records {last} rows, the log holds "
                f"{rows} (the newest rows were deleted, and the chain's head moved back)"
            )
        if reached_hash != checkpoint.head_hash:
            return checkpoint.rows, (
                f"row {checkpoint.rows} is not the row {taken} recorded (hash "
                f"{checkpoint.head_hash[:12]}): the chain was rewritten up to there"
            )
        return None

    @staticmethod
    def _check_head(head: AnyRow | None, rows: int, last_hash: str) -> tuple[int, str] | None:
        """The log must end where the chain's head says it does."""
        if head is None:
            return rows + 1, "the chain's head (table audit_chain) is missing"
        if head.last_id > rows:
            first, last = rows + 1, int(head.last_id)
            which = f"row {first}" if first == last else f"rows {first}-{last}"
            return first, (
                f"{which} missing at the end: the chain's head records {last} rows, the log "
                f"holds {rows} (the newest rows were deleted?)"
            )
        if head.last_id < rows or head.hash != last_hash:
            return head.last_id, (
                f"the log does not end at the chain's head (row {head.last_id}): rows were "
                "written or changed outside Sonde"
            )
        return None

    @staticmethod
    def _check_row(
        row: AnyRow, expected_id: int, prev_hash: str, key: AuditKey | None
    ) -> tuple[int, str] | None:
        row_id = int(row.id)
        if row_id != expected_id:
            return expected_id, f"row {expected_id} is missing (deleted?); the next row is {row_id}"
        if row.prev_hash != prev_hash:
            return row_id, f"row {row_id} does not link to row {row_id - 1} (deleted or reordered)"
        if _row_hash(prev_hash, row, key) != row.hash:
            return row_id, f"row {row_id} was modified after it was written"
        return None
