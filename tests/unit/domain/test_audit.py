from __future__ import annotations

import asyncio

from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Connection

from sonde.server.domain.audit import AuditLog
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log
from tests.unit.domain.builders import Clock


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
