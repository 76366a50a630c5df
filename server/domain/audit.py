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
from typing import Any

from sqlalchemy import BindParameter, Insert, String, Text, bindparam, cast, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.domain.text import sanitized
from sonde.server.storage.db import SQLITE_SHA256_HEX, Database
from sonde.server.storage.driver import DriverStatement
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


def _row_tail(
    *,
    at: datetime,
    actor: str,
    action: str,
    agent_id: str | None,
    ticket_id: int | None,
    detail: str,
    result: str,
) -> str:
    """The canonical encoding of a row after its id: `[id,` + this is the whole encoding."""
    encoded = json.dumps(
        [at.isoformat(), actor, action, agent_id, ticket_id, detail, result],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return encoded[1:]


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
    tail = _row_tail(
        at=at,
        actor=actor,
        action=action,
        agent_id=agent_id,
        ticket_id=ticket_id,
        detail=detail,
        result=result,
    )
    return hashlib.sha256(f"{prev_hash}\n[{row_id},{tail}".encode()).hexdigest()


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
    The row is one INSERT ... SELECT that reads the chain's head and computes the link in the
    database (chain_hash's formula; verify() recomputes it in Python).
    """
    detail_text = _canonical_detail(detail or {})
    result = sanitized(result, max_chars=2000)
    at = require_aware(at, "audit time")  # UTC, as verify() reads it back
    if connection.dialect.name == "postgresql":
        # Replicas share the chain: one writer at a time across processes. SQLite's
        # BEGIN IMMEDIATE already excludes other writers.
        connection.execute(_LOCK_CHAIN)
    tail = _row_tail(
        at=at,
        actor=actor,
        action=action,
        agent_id=agent_id,
        ticket_id=ticket_id,
        detail=detail_text,
        result=result,
    )
    row_id = _APPEND_ROW.scalar(
        connection,
        {
            "audit_at": at,
            "audit_actor": actor,
            "audit_action": action,
            "audit_agent_id": agent_id,
            "audit_ticket_id": ticket_id,
            "audit_detail": detail_text,
            "audit_result": result,
            "audit_tail": tail,
        },
    )
    return int(row_id)


class sha256_hex(FunctionElement[str]):
    """SHA-256 of a text's UTF-8 bytes, as 64 hex digits, computed by the database."""

    type = String()
    inherit_cache = True


@compiles(sha256_hex, "postgresql")
def _sha256_hex_postgresql(element: sha256_hex, compiler: SQLCompiler, **kw: Any) -> str:
    return f"encode(sha256(convert_to({compiler.process(element.clauses, **kw)}, 'UTF8')), 'hex')"


@compiles(sha256_hex, "sqlite")
def _sha256_hex_sqlite(element: sha256_hex, compiler: SQLCompiler, **kw: Any) -> str:
    # Registered on every connection by server.storage.db (SQLite has no SHA-256 of its own).
    return f"{SQLITE_SHA256_HEX}({compiler.process(element.clauses, **kw)})"


def _append_row_statement() -> Insert:
    head_id = select(func.max(audit_log.c.id)).scalar_subquery()
    head = select(
        func.coalesce(head_id, 0).label("id"),
        func.coalesce(
            select(audit_log.c.hash).where(audit_log.c.id == head_id).scalar_subquery(),
            GENESIS_HASH,
        ).label("hash"),
    ).subquery("head")
    row_id = head.c.id + 1
    link = head.c.hash + "\n[" + cast(row_id, String) + "," + bindparam("audit_tail", type_=Text())

    def typed(name: str) -> BindParameter[Any]:
        return bindparam(f"audit_{name}", type_=audit_log.c[name].type)

    return (
        audit_log.insert()
        .from_select(
            [
                "id",
                "at",
                "actor",
                "action",
                "agent_id",
                "ticket_id",
                "detail",
                "result",
                "prev_hash",
                "hash",
            ],
            select(
                row_id,
                typed("at"),
                typed("actor"),
                typed("action"),
                typed("agent_id"),
                typed("ticket_id"),
                typed("detail"),
                typed("result"),
                head.c.hash,
                sha256_hex(link),
            ),
        )
        .returning(audit_log.c.id)
    )


_LOCK_CHAIN = text("LOCK TABLE audit_log IN EXCLUSIVE MODE")
_APPEND_ROW = DriverStatement(_append_row_statement())  # on every audited change
_ROWS_FROM = (
    select(audit_log)
    .where(audit_log.c.id >= bindparam("from_id"))
    .order_by(audit_log.c.id)
    .limit(_VERIFY_BATCH)
)


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
        return await self._db.read(self._verify)

    def _verify(self, connection: Connection) -> AuditVerification:
        prev_hash, expected_id, rows = GENESIS_HASH, 1, 0
        while True:
            batch = connection.execute(_ROWS_FROM, {"from_id": expected_id}).all()
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
