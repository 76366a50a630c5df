from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Connection

from sonde.server.domain.audit import AuditLog
from sonde.server.domain.audit_chain import AuditChainBroken
from sonde.server.domain.audit_rows import AuditKey, chain_hash
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.tickets import Tickets
from sonde.server.errors import NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_chain, audit_log
from tests.unit.domain.builders import Clock, technician


async def _write(log: AuditLog, count: int) -> None:
    for n in range(count):
        await log.record("ann", "ticket.comment", ticket_id=n + 1, detail={"n": n})


async def test_an_untouched_chain_verifies(db: Database) -> None:
    log = AuditLog(db, Clock())
    assert (await log.verify()).ok
    await _write(log, 5)
    verification = await log.verify()
    assert (verification.ok, verification.rows, verification.first_bad_id) == (True, 5, None)


async def test_concurrent_writers_keep_one_chain(db: Database) -> None:
    log = AuditLog(db)
    other = AuditLog(db)  # a second writer object, as a second replica would have
    await asyncio.gather(
        *(
            writer.record("ann", "agent.revoke", agent_id=None, detail={"i": i})
            for i in range(20)
            for writer in (log, other)
        )
    )
    verification = await log.verify()
    assert verification.ok
    assert verification.rows == 40


async def test_editing_a_rows_detail_in_sql_is_detected_with_its_id(db: Database) -> None:
    log = AuditLog(db, Clock())
    await _write(log, 5)

    def change(session: Connection) -> None:
        session.execute(update(audit_log).where(audit_log.c.id == 3).values(detail='{"n":99}'))

    await db.write(change)
    verification = await log.verify()
    assert not verification.ok
    assert verification.first_bad_id == 3
    assert "row 3 was modified" in verification.reason


async def test_deleting_a_row_is_detected(db: Database) -> None:
    log = AuditLog(db, Clock())
    await _write(log, 5)

    def change(session: Connection) -> None:
        session.execute(delete(audit_log).where(audit_log.c.id == 2))

    await db.write(change)
    verification = await log.verify()
    assert not verification.ok
    assert verification.first_bad_id == 2
    assert "row 2 is missing" in verification.reason


async def test_deleting_a_row_and_renumbering_is_detected(db: Database) -> None:
    log = AuditLog(db, Clock())
    await _write(log, 4)

    def change(session: Connection) -> None:
        session.execute(delete(audit_log).where(audit_log.c.id == 2))
        session.execute(update(audit_log).where(audit_log.c.id > 2).values(id=audit_log.c.id - 1))

    await db.write(change)
    verification = await log.verify()
    assert not verification.ok
    assert verification.first_bad_id == 2


async def test_reordering_rows_is_detected(db: Database) -> None:
    log = AuditLog(db, Clock())
    await _write(log, 4)

    def change(session: Connection) -> None:
        # Swap rows 2 and 3 by swapping their ids.
        session.execute(update(audit_log).where(audit_log.c.id == 2).values(id=-2))
        session.execute(update(audit_log).where(audit_log.c.id == 3).values(id=2))
        session.execute(update(audit_log).where(audit_log.c.id == -2).values(id=3))

    await db.write(change)
    verification = await log.verify()
    assert not verification.ok
    assert verification.first_bad_id == 2


async def test_secret_looking_details_are_never_stored(db: Database) -> None:
    log = AuditLog(db, Clock())
    await log.record(
        "admin",
        "enrollment_token.create",
        detail={"token_id": "abc", "secret": "s3", "Password": "p", "api_token": "t", "uses": 1},
    )

    def read(session: Connection) -> tuple[str, str]:
        return (
            session.execute(select(audit_log.c.detail)).scalar_one(),
            session.execute(text("SELECT detail FROM audit_log")).scalar_one(),
        )

    stored, raw = await db.read(read)
    assert stored == raw == '{"token_id":"abc","uses":1}'


async def test_deleting_the_newest_rows_is_detected_from_the_chains_head(db: Database) -> None:
    log = AuditLog(db, Clock())
    await _write(log, 5)

    def change(session: Connection) -> None:
        session.execute(delete(audit_log).where(audit_log.c.id >= 4))

    await db.write(change)
    verification = await log.verify()
    assert (verification.ok, verification.rows, verification.first_bad_id) == (False, 3, 4)
    assert "rows 4-5 missing at the end: the chain's head records 5 rows" in verification.reason


async def test_a_row_added_past_the_head_is_detected(db: Database) -> None:
    log = AuditLog(db, Clock())
    await _write(log, 2)

    def forge(session: Connection) -> None:
        newest = session.execute(select(audit_log).where(audit_log.c.id == 2)).one()
        forged = {**newest._mapping, "id": 3, "prev_hash": newest.hash, "action": "forged"}
        forged["hash"] = chain_hash(
            newest.hash,
            row_id=3,
            at=forged["at"],
            actor=forged["actor"],
            action="forged",
            agent_id=forged["agent_id"],
            ticket_id=forged["ticket_id"],
            detail=forged["detail"],
            result=forged["result"],
        )
        session.execute(audit_log.insert().values(**forged))

    await db.write(forge)
    verification = await log.verify()
    assert not verification.ok
    assert "the log does not end at the chain's head (row 2)" in verification.reason


async def test_without_its_head_the_chain_refuses_to_grow_and_verify_says_why(
    db: Database,
) -> None:
    log = AuditLog(db, Clock())
    await _write(log, 1)
    await db.write(lambda session: session.execute(delete(audit_chain)))
    with pytest.raises(AuditChainBroken, match="head row \\(table audit_chain\\) is missing"):
        await _write(log, 1)
    verification = await log.verify()
    assert (verification.ok, verification.rows) == (False, 1)
    assert "the chain's head (table audit_chain) is missing" in verification.reason


async def test_two_servers_commenting_and_auditing_at_once_keep_one_chain(db_url: str) -> None:
    """Two Database objects on one database, as two replicas: comments (one statement each on
    PostgreSQL) and other audited rows interleave, and the chain stays whole and gapless."""
    first, second = await Database.open(db_url), await Database.open(db_url)
    try:
        ann = await technician(first, "ann")
        tickets = [Tickets(first), Tickets(second)]
        opened = [await tickets[0].open(ann, title=f"ticket {n}") for n in range(4)]
        logs = [AuditLog(first), AuditLog(second)]
        await asyncio.gather(
            *(tickets[n % 2].comment(ann, opened[n % 4].id, f"comment {n}") for n in range(40)),
            *(logs[n % 2].record("ann", "agent.revoke", detail={"n": n}) for n in range(20)),
        )
        verification = await logs[1].verify()
        assert verification.ok, verification.reason
        # The technician's row, the four tickets, the 40 comments, the 20 other rows.
        assert verification.rows == 1 + 4 + 40 + 20
    finally:
        await first.close()
        await second.close()


KEY = AuditKey(bytes(range(32)))
OTHER_KEY = AuditKey(bytes(range(1, 33)))


async def test_a_keyed_chain_verifies_only_with_its_key(db: Database) -> None:
    await _write(AuditLog(db, Clock()), 2)  # written before the server had a key
    keyed = AuditLog(db, Clock(), key=KEY)
    await _write(keyed, 3)
    verification = await keyed.verify()
    assert (verification.ok, verification.rows) == (True, 5), verification.reason
    assert verification.reason == "5 rows, chain intact, keyed from row 3"
    without = await AuditLog(db).verify()
    assert (without.ok, without.first_bad_id) == (False, 3)
    assert "verify it with the audit key" in without.reason
    other = await AuditLog(db, key=OTHER_KEY).verify()
    assert not other.ok
    assert "not the one the chain is keyed with" in other.reason


async def test_rewriting_a_keyed_row_and_rechaining_without_the_key_is_detected(
    db: Database,
) -> None:
    keyed = AuditLog(db, Clock(), key=KEY)
    await _write(keyed, 4)

    def rechain(session: Connection) -> None:
        """What someone with the database and no key can do: edit, relink every row."""
        rows = session.execute(select(audit_log).order_by(audit_log.c.id)).all()
        prev = "0" * 64
        for row in rows:
            detail = '{"n":99}' if row.id == 2 else row.detail
            fields = {**row._mapping, "detail": detail}
            fields.pop("id"), fields.pop("prev_hash"), fields.pop("hash")
            new_hash = chain_hash(prev, row_id=row.id, **fields)
            session.execute(
                update(audit_log)
                .where(audit_log.c.id == row.id)
                .values(detail=detail, prev_hash=prev, hash=new_hash)
            )
            prev = new_hash
        session.execute(update(audit_chain).values(hash=prev))

    await db.write(rechain)
    verification = await keyed.verify()
    assert (verification.ok, verification.first_bad_id) == (False, 1)
    assert "row 1 was modified" in verification.reason


async def test_a_writer_without_the_key_or_with_another_is_refused_and_writes_nothing(
    db: Database,
) -> None:
    await _write(AuditLog(db, Clock(), key=KEY), 1)
    with pytest.raises(AuditChainBroken, match="the audit chain is keyed and this program has no"):
        await _write(AuditLog(db, Clock()), 1)
    with pytest.raises(AuditChainBroken, match="is not the one the audit chain is keyed with"):
        await _write(AuditLog(db, Clock(), key=OTHER_KEY), 1)
    verification = await AuditLog(db, key=KEY).verify()
    assert (verification.ok, verification.rows) == (True, 1)


async def test_keyed_comments_and_changes_keep_one_verifiable_chain(db: Database) -> None:
    """Units of work and (on PostgreSQL) the one-statement comment, all keyed."""
    writes = AuditedWrites(db, Clock(), key=KEY)
    ann = await technician(db, "ann")  # unkeyed: before the key
    tickets = Tickets(db, Clock(), writes=writes)
    ticket = await tickets.open(ann, title="VPN down")
    for n in range(3):
        before = db.counters.copy()
        await tickets.comment(ann, ticket.id, f"comment {n}")
        # PostgreSQL: the keyed comment is still one statement.
        assert (db.counters - before).statements == (4 if db.dialect == "sqlite" else 1)
    with pytest.raises(NotFound):
        await tickets.comment(ann, 10**9, "no such ticket")  # refused, audited, keyed
    verification = await AuditLog(db, key=KEY).verify()
    assert verification.ok, verification.reason
    assert verification.rows == 1 + 1 + 3 + 1
    assert verification.reason.endswith("keyed from row 2")
