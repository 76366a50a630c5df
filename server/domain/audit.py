"""The audit log: every technician action, hash-chained so an edit or a deletion shows.

Row n stores hash_n = SHA-256(hash_{n-1} || canonical(row n)), with hash_0 = 64 zeros. Ids are
assigned here, consecutively from 1, under the database's write lock: a gap means a deleted row,
a link that does not match means a deleted, reordered or edited row. A row is appended inside
the transaction of the change it records (append_row), so neither exists without the other.
(Deleting the newest rows leaves a shorter valid chain; anchoring the head outside the database
is for a later issue.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.domain.text import sanitized
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log
from sonde.server.storage.types import AnyRow

GENESIS_HASH = "0" * 64
# Detail keys that could carry a secret (token, api_token, secret, ...) are dropped, whatever
# the caller passed; a token's public id ("token_id") is kept.
_SECRET_KEYS = ("token", "secret", "password")
_VERIFY_BATCH = 1000

DetailValue = str | int | None


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str


def _canonical_detail(detail: Mapping[str, DetailValue]) -> str:
    kept = {
        str(key): value
        for key, value in detail.items()
        if not str(key).lower().endswith(_SECRET_KEYS)
    }
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(
    prev_hash: str,
    *,
    row_id: int,
    at: datetime,
    actor: str,
    action: str,
    agent_id: str | None,
    ticket_id: int | None,
    detail: str,
    result: str,
) -> str:
    """The hash of one row, linked to the row before it."""
    encoded = json.dumps(
        [row_id, at.isoformat(), actor, action, agent_id, ticket_id, detail, result],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{encoded}".encode()).hexdigest()


def _row_hash(prev_hash: str, row: AnyRow) -> str:
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
    )


def append_row(
    connection: Connection,
    at: datetime,
    actor: str,
    action: str,
    *,
    agent_id: str | None = None,
    ticket_id: int | None = None,
    detail: Mapping[str, DetailValue] | None = None,
    result: str = "ok",
) -> int:
    """Append one row inside the caller's transaction (the change it records); returns its id.

    Call it last in a unit of work: on PostgreSQL it takes the chain's lock, held to commit.
    """
    detail_text = _canonical_detail(detail or {})
    result = sanitized(result, max_chars=2000)
    at = require_aware(at, "audit time")  # UTC, as verify() reads it back
    if connection.dialect.name == "postgresql":
        # Replicas share the chain: one writer at a time across processes. SQLite's
        # BEGIN IMMEDIATE already excludes other writers.
        connection.execute(_LOCK_CHAIN)
    last = connection.execute(_CHAIN_HEAD).first()
    row_id = 1 if last is None else int(last.id) + 1
    prev_hash = GENESIS_HASH if last is None else str(last.hash)
    row_hash = chain_hash(
        prev_hash,
        row_id=row_id,
        at=at,
        actor=actor,
        action=action,
        agent_id=agent_id,
        ticket_id=ticket_id,
        detail=detail_text,
        result=result,
    )
    connection.execute(
        _INSERT_ROW,
        {
            "id": row_id,
            "at": at,
            "actor": actor,
            "action": action,
            "agent_id": agent_id,
            "ticket_id": ticket_id,
            "detail": detail_text,
            "result": result,
            "prev_hash": prev_hash,
            "hash": row_hash,
        },
    )
    return row_id


_LOCK_CHAIN = text("LOCK TABLE audit_log IN EXCLUSIVE MODE")
_CHAIN_HEAD = select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
_INSERT_ROW = audit_log.insert()


class AuditLog:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

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
        at = self._clock()
        await self._db.write(
            lambda connection: append_row(
                connection,
                at,
                actor,
                action,
                agent_id=agent_id,
                ticket_id=ticket_id,
                detail=detail,
                result=result,
            )
        )

    async def verify(self) -> AuditVerification:
        """Walk the chain from the first row; report the first row that does not hold."""
        prev_hash, expected_id, rows = GENESIS_HASH, 1, 0
        async with self._db.reading() as session:
            while True:
                batch = (
                    await session.execute(
                        select(audit_log)
                        .where(audit_log.c.id >= expected_id)
                        .order_by(audit_log.c.id)
                        .limit(_VERIFY_BATCH)
                    )
                ).all()
                if not batch:
                    break
                for row in batch:
                    problem = self._check_row(row, expected_id, prev_hash)
                    if problem is not None:
                        return AuditVerification(False, rows, problem[0], problem[1])
                    prev_hash, expected_id, rows = row.hash, expected_id + 1, rows + 1
        return AuditVerification(True, rows, None, f"{rows} rows, chain intact")

    @staticmethod
    def _check_row(row: AnyRow, expected_id: int, prev_hash: str) -> tuple[int, str] | None:
        row_id = int(row.id)
        if row_id != expected_id:
            return expected_id, f"row {expected_id} is missing (deleted?); the next row is {row_id}"
        if row.prev_hash != prev_hash:
            return row_id, f"row {row_id} does not link to row {row_id - 1} (deleted or reordered)"
        if _row_hash(prev_hash, row) != row.hash:
            return row_id, f"row {row_id} was modified after it was written"
        return None
