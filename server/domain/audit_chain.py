"""Appending to the audit log: the chain's head advanced and the row inserted, in SQL.

The head (table audit_chain, one row) holds the last row's id and hash. An append advances it
with one UPDATE, whose old values give the new row its id and link and whose row lock, held to
commit, makes appends take turns across transactions and replicas; the link is computed by the
database (SHA-256, or HMAC-SHA256 once the chain is keyed: audit_rows.py). On PostgreSQL the
UPDATE and the row's INSERT are one statement (data-modifying CTEs); on SQLite, where BEGIN
IMMEDIATE already excludes other writers, two.

The head also records whether the chain is keyed (key_check, the key's check value, and
keyed_from, the first keyed row): a keyed writer keys an unkeyed chain from its next row on;
a writer without the key, or with another key, is refused and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BindParameter,
    LargeBinary,
    String,
    Text,
    Update,
    bindparam,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CTE

from sonde.server.storage.db import SQLITE_HMAC_HEX, SQLITE_SHA256_HEX
from sonde.server.storage.driver import DriverStatement
from sonde.server.storage.tables import audit_chain, audit_log

CHAIN_ROW = 1
ROW_VALUES = ("at", "actor", "action", "agent_id", "ticket_id", "detail", "result")


class AuditChainBroken(RuntimeError):
    """No row can be appended: the head is gone, or this process has not the chain's key."""


_NO_HEAD = (
    "the audit chain's head row (table audit_chain) is missing, so no audit row can be "
    "written: the audit tables were changed outside Sonde; run `sonde-server audit verify`"
)
_NEEDS_KEY = (
    "the audit chain is keyed and this program has no audit key, so no audit row can be "
    "written: run it with the data folder whose pki/audit.key keyed the chain"
)
_OTHER_KEY = (
    "this server's audit key (pki/audit.key) is not the one the audit chain is keyed with, so "
    "no audit row can be written: copy pki/audit.key from the first server's data folder"
)


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


class hmac_hex(FunctionElement[str]):
    """HMAC-SHA256 of a text with the audit key, as 64 hex digits: hmac_hex(text). The key
    comes in as the statement's audit_key (SQLite) or audit_ipad/audit_opad (PostgreSQL)."""

    type = String()
    inherit_cache = True


def _key_bind(name: str) -> BindParameter[bytes]:
    return bindparam(name, type_=LargeBinary())


@compiles(hmac_hex, "postgresql")
def _hmac_hex_postgresql(element: hmac_hex, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.clauses, **kw)
    inner = compiler.process(_key_bind("audit_ipad"), **kw)
    outer = compiler.process(_key_bind("audit_opad"), **kw)
    # HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), K' the key padded to the block.
    return f"encode(sha256({outer} || sha256({inner} || convert_to({text}, 'UTF8'))), 'hex')"


@compiles(hmac_hex, "sqlite")
def _hmac_hex_sqlite(element: hmac_hex, compiler: SQLCompiler, **kw: Any) -> str:
    key = compiler.process(_key_bind("audit_key"), **kw)
    return f"{SQLITE_HMAC_HEX}({key}, {compiler.process(element.clauses, **kw)})"


def _advance_chain(keyed: bool) -> Update:
    """The head moves to the new row: its id, its hash linked to the old head's hash (the old
    values are what SET reads), RETURNING the new row's id, link and hash. Keyed: only on an
    unkeyed chain or one keyed with the same key, which it keys from this row if not yet."""
    next_id = audit_chain.c.last_id + 1
    link = (
        audit_chain.c.hash + "\n[" + cast(next_id, String) + "," + bindparam("audit_tail", Text())
    )
    advance = update(audit_chain).where(audit_chain.c.id == CHAIN_ROW)
    if keyed:
        key_check = bindparam("audit_key_check", type_=String())
        advance = advance.where(
            or_(audit_chain.c.key_check.is_(None), audit_chain.c.key_check == key_check)
        ).values(
            last_id=next_id,
            prev_hash=audit_chain.c.hash,
            hash=hmac_hex(link),
            keyed_from=func.coalesce(audit_chain.c.keyed_from, next_id),
            key_check=key_check,
        )
    else:
        advance = advance.where(audit_chain.c.key_check.is_(None)).values(
            last_id=next_id, prev_hash=audit_chain.c.hash, hash=sha256_hex(link)
        )
    return advance.returning(audit_chain.c.last_id, audit_chain.c.prev_hash, audit_chain.c.hash)


def audit_row_cte(after: CTE | None = None, *, keyed: bool = False) -> CTE:
    """PostgreSQL: the audit row as part of the statement that makes its change.

    Two data-modifying CTEs: the head's UPDATE (its row lock orders appends, to commit) and
    the row's INSERT ... RETURNING id. With `after`, both happen only when that CTE (the
    change) returned a row: a change that matched nothing writes no audit row either. Bind
    audit_values(...) with the statement's own values.
    """
    advance = _advance_chain(keyed)
    if after is not None:
        advance = advance.where(exists(select(literal(1)).select_from(after)))
    head = advance.cte("audit_head")

    def typed(name: str) -> BindParameter[Any]:
        return bindparam(f"audit_{name}", type_=audit_log.c[name].type)

    row = (
        audit_log.insert()
        .from_select(
            ["id", *ROW_VALUES, "prev_hash", "hash"],
            select(
                head.c.last_id,
                *(typed(name) for name in ROW_VALUES),
                head.c.prev_hash,
                head.c.hash,
            ),
        )
        .returning(audit_log.c.id)
    )
    return row.cte("audit_row")


def is_keyed(values: Mapping[str, Any]) -> bool:
    """Whether audit_values() were made with a key."""
    return "audit_key_check" in values


# The head row, as it stands (verify() reads it too).
HEAD = select(audit_chain).where(audit_chain.c.id == CHAIN_ROW)
_ADVANCE_VALUES = ("audit_tail", "audit_key", "audit_key_check")  # SQLite's advance binds


def refusal(connection: Connection, values: Mapping[str, Any]) -> AuditChainBroken:
    """Why the head did not advance for these values: gone, keyed, or keyed with another key."""
    head = connection.execute(HEAD).one_or_none()
    if head is None:
        return AuditChainBroken(_NO_HEAD)
    if not is_keyed(values):
        return AuditChainBroken(_NEEDS_KEY)
    return AuditChainBroken(_OTHER_KEY)


def append_row(connection: Connection, values: Mapping[str, Any]) -> int:
    """Append one row inside the caller's transaction (the change it records); returns its id.
    `values` come from audit_rows.audit_values().

    Call it last in a unit of work: advancing the chain's head locks it until commit.
    """
    keyed = is_keyed(values)
    if connection.dialect.name == "postgresql":
        row_id = connection.execute(_APPEND_ROW[keyed], values).scalar()
        if row_id is None:
            raise refusal(connection, values)
        return int(row_id)
    heads = _ADVANCE_CHAIN[keyed].rows(
        connection, {name: values[name] for name in _ADVANCE_VALUES if name in values}
    )
    if not heads:
        raise refusal(connection, values)
    ((row_id, prev_hash, row_hash),) = heads
    _INSERT_ROW.rows(
        connection,
        {
            "id": row_id,
            **{name: values[f"audit_{name}"] for name in ROW_VALUES},
            "prev_hash": prev_hash,
            "hash": row_hash,
        },
    )
    return int(row_id)


# PostgreSQL: one statement, one round trip; by whether the writer holds the key.
_APPEND_ROW = {keyed: select(audit_row_cte(keyed=keyed).c.id) for keyed in (False, True)}
# SQLite, on every audited change.
_ADVANCE_CHAIN = {keyed: DriverStatement(_advance_chain(keyed)) for keyed in (False, True)}
_INSERT_ROW = DriverStatement(audit_log.insert())
