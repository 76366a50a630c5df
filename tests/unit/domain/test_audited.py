"""A change and its audit row share one transaction; refusals are audited at a bounded rate."""

from __future__ import annotations

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audit import AuditLog
from sonde.server.domain.audited import AuditedUnit, AuditedWrites, AuditEntry, RefusalLimiter
from sonde.server.errors import NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, users
from tests.unit.domain.builders import T0, Clock


class InjectedCrash(Exception):
    """Stands for the process dying between the change and its audit row."""


def _add_user(name: str) -> AuditedUnit[None]:
    def unit(connection: Connection, entry: AuditEntry) -> None:
        connection.execute(
            users.insert().values(name=name, role="l1", created_by="ann", created_at=T0)
        )
        entry.detail["name"] = name

    return unit


async def _count(db: Database, table: Table) -> int:
    return await db.read(
        lambda connection: int(
            connection.execute(select(func.count()).select_from(table)).scalar_one()
        )
    )


async def test_the_change_and_its_audit_row_commit_together(db: Database) -> None:
    writes = AuditedWrites(db, Clock())
    await writes.run("ann", "user.create", _add_user("bob"))
    rows = await db.read(lambda c: c.execute(select(audit_log)).all())
    assert [(r.actor, r.action, r.result) for r in rows] == [("ann", "user.create", "ok")]
    assert '"name":"bob"' in rows[0].detail
    assert (await AuditLog(db).verify()).ok


async def test_a_crash_between_the_change_and_its_audit_row_leaves_neither(db: Database) -> None:
    writes = AuditedWrites(db, Clock())

    def crash(action: str) -> None:
        raise InjectedCrash(action)

    writes.fault_before_audit = crash
    with pytest.raises(InjectedCrash):
        await writes.run("ann", "user.create", _add_user("bob"))
    assert await _count(db, users) == 0
    assert await _count(db, audit_log) == 0


async def test_a_refusal_changes_nothing_and_is_audited(db: Database) -> None:
    writes = AuditedWrites(db, Clock())

    def refused(connection: Connection, entry: AuditEntry) -> None:
        _add_user("bob")(connection, entry)
        raise NotFound("no ticket 99")

    with pytest.raises(NotFound):
        await writes.run("ann", "ticket.comment", refused, ticket_id=99, peer="ipv4:10.0.0.9:1")
    assert await _count(db, users) == 0
    rows = await db.read(lambda c: c.execute(select(audit_log)).all())
    assert [(r.action, r.ticket_id, r.result) for r in rows] == [
        ("ticket.comment", 99, "refused: NotFound: no ticket 99")
    ]


async def test_a_flood_of_refusals_is_recorded_at_a_bounded_rate(db: Database) -> None:
    now = [0.0]
    limiter = RefusalLimiter(per_key=3, in_all=100, window_s=60, monotonic=lambda: now[0])
    writes = AuditedWrites(db, Clock(), limiter)
    for _ in range(50):
        await writes.refused("mallory", "auth.denied", NotFound("x"), peer="ipv4:1.2.3.4:5")
    assert await _count(db, audit_log) == 3
    now[0] = 61.0
    await writes.refused("mallory", "auth.denied", NotFound("x"), peer="ipv4:1.2.3.4:5")
    last = await db.read(
        lambda c: c.execute(select(audit_log).order_by(audit_log.c.id.desc())).first()
    )
    assert last is not None
    assert '"refusals_left_out":47' in last.detail


async def test_refusals_from_many_ports_of_one_address_share_its_rate(db: Database) -> None:
    """A client opens as many connections as it likes: each has its own port, not its own
    budget of audit rows."""
    limiter = RefusalLimiter(per_key=3, in_all=100, window_s=60, monotonic=lambda: 0.0)
    writes = AuditedWrites(db, Clock(), limiter)
    for port in range(1, 41):
        await writes.refused("mallory", "auth.denied", NotFound("x"), peer=f"ipv4:1.2.3.4:{port}")
        await writes.refused(
            "mallory", "auth.denied", NotFound("x"), peer=f"ipv6:[2001:db8::{port:x}]:{port}"
        )
    assert await _count(db, audit_log) == 6, "3 for the IPv4 address, 3 for the IPv6 /64"


def test_the_limiter_caps_every_key_together_and_forgets_old_keys() -> None:
    limiter = RefusalLimiter(per_key=5, in_all=8, window_s=60, max_keys=4, monotonic=lambda: 0.0)
    admitted = [limiter.admit("bot", f"peer-{n}") for n in range(20)]
    assert sum(1 for left_out in admitted if left_out is not None) == 8


async def test_one_unit_is_one_transaction_and_at_most_one_thread_hop(db: Database) -> None:
    writes = AuditedWrites(db, Clock())
    before = db.counters.copy()
    await writes.run("ann", "user.create", _add_user("bob"))
    spent = db.counters - before
    assert spent.transactions == 1
    assert spent.thread_hops == (1 if db.dialect == "sqlite" else 0)
    # The change, then the audit row: on SQLite the chain's head advanced and the row inserted,
    # on PostgreSQL both in one statement. BEGIN is transaction control on both engines, not a
    # statement of the unit.
    assert spent.statements == (3 if db.dialect == "sqlite" else 2)
