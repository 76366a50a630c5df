"""The audit log: every technician action, hash-chained so an edit or a deletion shows.

Row n stores hash_n = SHA-256(hash_{n-1} || canonical(row n)), with hash_0 = 64 zeros. Ids are
assigned here, consecutively from 1, under the database's write lock: a gap means a deleted row,
a link that does not match means a deleted, reordered or edited row. A row is appended inside
the transaction of the change it records (append_row), so neither exists without the other.
The chain's head (last id and hash) is also kept in a row of its own, audit_chain: advancing it
is how appends take turns, and verify() checks the log ends where the head says.
(An attacker with write access to the database can still rewrite both; keying the chain and
anchoring the head outside the database is for a later issue.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    String,
    Text,
    Update,
    bindparam,
    cast,
    exists,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CTE

from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.domain.text import sanitized
from sonde.server.storage.db import SQLITE_SHA256_HEX, Database
from sonde.server.storage.driver import DriverStatement
from sonde.server.storage.tables import audit_chain, audit_log
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


def audit_values(
    at: datetime,
    actor: str,
    action: str,
    *,
    agent_id: str | None = None,
    ticket_id: int | None = None,
    detail: Mapping[str, DetailValue] | None = None,
    result: str = "ok",
) -> dict[str, Any]:
    """The values an audit row's statements bind (audit_row_cte's and append_row's)."""
    detail_text = _canonical_detail(detail or {})
    result = sanitized(result, max_chars=2000)
    at = require_aware(at, "audit time")  # UTC, as verify() reads it back
    tail = _row_tail(
        at=at,
        actor=actor,
        action=action,
        agent_id=agent_id,
        ticket_id=ticket_id,
        detail=detail_text,
        result=result,
    )
    return {
        "audit_at": at,
        "audit_actor": actor,
        "audit_action": action,
        "audit_agent_id": agent_id,
        "audit_ticket_id": ticket_id,
        "audit_detail": detail_text,
        "audit_result": result,
        "audit_tail": tail,
    }


def append_row(connection: Connection, values: Mapping[str, Any]) -> int:
    """Append one row inside the caller's transaction (the change it records); returns its id.
    `values` come from audit_values().

    Call it last in a unit of work: advancing the chain's head locks it until commit. The link
    is computed in the database from the head's old hash (chain_hash's formula; verify()
    recomputes it in Python). On PostgreSQL the head's UPDATE and the row's INSERT are one
    statement; on SQLite, where BEGIN IMMEDIATE already excludes other writers, two.
    """
    if connection.dialect.name == "postgresql":
        row_id = connection.execute(_APPEND_ROW, values).scalar()
        if row_id is None:
            raise AuditChainBroken(_NO_HEAD)
        return int(row_id)
    heads = _ADVANCE_CHAIN.rows(connection, {"audit_tail": values["audit_tail"]})
    if not heads:
        raise AuditChainBroken(_NO_HEAD)
    ((row_id, prev_hash, row_hash),) = heads
    _INSERT_ROW.rows(
        connection,
        {
            "id": row_id,
            **{name: values[f"audit_{name}"] for name in _ROW_VALUES},
            "prev_hash": prev_hash,
            "hash": row_hash,
        },
    )
    return int(row_id)


class AuditChainBroken(RuntimeError):
    """The chain's head row is gone: nothing can be appended until an admin looks."""


_NO_HEAD = (
    "the audit chain's head row (table audit_chain) is missing, so no audit row can be "
    "written: the audit tables were changed outside Sonde; run `sonde-server audit verify`"
)
_ROW_VALUES = ("at", "actor", "action", "agent_id", "ticket_id", "detail", "result")


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


def _advance_chain() -> Update:
    """The head moves to the new row: its id, its hash linked to the old head's hash (the old
    values are what SET reads), RETURNING the new row's id, link and hash."""
    next_id = audit_chain.c.last_id + 1
    link = (
        audit_chain.c.hash + "\n[" + cast(next_id, String) + "," + bindparam("audit_tail", Text())
    )
    return (
        update(audit_chain)
        .where(audit_chain.c.id == CHAIN_ROW)
        .values(last_id=next_id, prev_hash=audit_chain.c.hash, hash=sha256_hex(link))
        .returning(audit_chain.c.last_id, audit_chain.c.prev_hash, audit_chain.c.hash)
    )


def audit_row_cte(after: CTE | None = None) -> CTE:
    """PostgreSQL: the audit row as part of the statement that makes its change.

    Two data-modifying CTEs: the head's UPDATE (its row lock orders appends, to commit) and
    the row's INSERT ... RETURNING id. With `after`, both happen only when that CTE (the
    change) returned a row: a change that matched nothing writes no audit row either. Bind
    audit_values(...) with the statement's own values.
    """
    advance = _advance_chain()
    if after is not None:
        advance = advance.where(exists(select(literal(1)).select_from(after)))
    head = advance.cte("audit_head")

    def typed(name: str) -> BindParameter[Any]:
        return bindparam(f"audit_{name}", type_=audit_log.c[name].type)

    row = (
        audit_log.insert()
        .from_select(
            ["id", *_ROW_VALUES, "prev_hash", "hash"],
            select(
                head.c.last_id,
                *(typed(name) for name in _ROW_VALUES),
                head.c.prev_hash,
                head.c.hash,
            ),
        )
        .returning(audit_log.c.id)
    )
    return row.cte("audit_row")


CHAIN_ROW = 1
_AUDIT_ROW = audit_row_cte()
_APPEND_ROW = select(_AUDIT_ROW.c.id)  # PostgreSQL: one statement, one round trip
_ADVANCE_CHAIN = DriverStatement(_advance_chain())  # SQLite, on every audited change
_INSERT_ROW = DriverStatement(audit_log.insert())
_HEAD = select(audit_chain.c.last_id, audit_chain.c.hash).where(audit_chain.c.id == CHAIN_ROW)
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
        values = audit_values(
            self._clock(),
            actor,
            action,
            agent_id=agent_id,
            ticket_id=ticket_id,
            detail=detail,
            result=result,
        )
        await self._db.write(lambda connection: append_row(connection, values))

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
        head = connection.execute(_HEAD).one_or_none()
        problem = self._check_head(head, rows, prev_hash)
        if problem is not None:
            return AuditVerification(False, rows, problem[0], problem[1])
        return AuditVerification(True, rows, None, f"{rows} rows, chain intact")

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
    def _check_row(row: AnyRow, expected_id: int, prev_hash: str) -> tuple[int, str] | None:
        row_id = int(row.id)
        if row_id != expected_id:
            return expected_id, f"row {expected_id} is missing (deleted?); the next row is {row_id}"
        if row.prev_hash != prev_hash:
            return row_id, f"row {row_id} does not link to row {row_id - 1} (deleted or reordered)"
        if _row_hash(prev_hash, row) != row.hash:
            return row_id, f"row {row_id} was modified after it was written"
        return None
